"""The whole pushassist graph in one place: assets, job, schedule, sensor and resources.

Definitions are built when Dagster loads the code location, from the settings file named by
`PUSHASSIST_SETTINGS` (default `pushassist.yaml` at the project root, all defaults when absent):
the first partition date and the lookback windows shape the graph itself.
"""

from __future__ import annotations

import dagster as dg

from assets import attribution, identity, ingest, marts, quality, touches
from pipeline.alerts import build_alert_sensors
from pipeline.partitions import daily_partitions
from pipeline.schedules import build_schedule, build_sensor
from pipeline.settings import Settings, load_settings, settings_path
from resources import build_resources

JOB_NAME = "pushassist_job"
STAGES = (ingest, identity, touches, attribution, marts, quality)


def build_definitions(settings: Settings, settings_file: str) -> dg.Definitions:
    partitions = daily_partitions(settings)
    assets = [a for stage in STAGES for a in stage.build(settings, partitions)]
    job = dg.define_asset_job(
        JOB_NAME,
        selection=dg.AssetSelection.all(),
        partitions_def=partitions,
        description="Every stage, from raw landing files to the marts, for a range of days.",
    )
    return dg.Definitions(
        assets=assets,
        jobs=[job],
        schedules=[build_schedule(job, settings)],
        sensors=[build_sensor(job, settings), *build_alert_sensors(settings)],
        resources=build_resources(settings, settings_file),
        # One process runs a run's steps in order: they all write one DuckDB file, which allows
        # a single writing process (the warehouse pool guards against other runs).
        executor=dg.in_process_executor,
    )


@dg.definitions
def defs() -> dg.Definitions:
    path = settings_path()
    return build_definitions(load_settings(path), str(path))
