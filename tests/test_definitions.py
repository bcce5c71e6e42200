"""The asset graph as a data team sees it in the UI: groups, descriptions, partitions, checks."""

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from pipeline.definitions import JOB_NAME, build_definitions
from pipeline.settings import parse_settings
from pipeline.tables import ALL_TABLES

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def graph():
    defs = build_definitions(parse_settings({}), "pushassist.yaml")
    return defs, defs.resolve_asset_graph()


def test_every_table_is_an_asset_named_after_it(graph):
    _, asset_graph = graph
    keys = {key.to_user_string() for key in asset_graph.get_all_asset_keys()}
    assert keys == {f"{t.schema}/{t.name}" for t in ALL_TABLES}


def test_every_asset_is_documented_grouped_partitioned_and_checked(graph):
    defs, asset_graph = graph
    partitions = set()
    checked = {check.asset_key for check in asset_graph.asset_check_keys}
    for key in asset_graph.get_all_asset_keys():
        node = asset_graph.get(key)
        assert node.description and "Grain:" in node.description, key
        assert node.group_name in {
            "ingest",
            "identity",
            "touches",
            "conversions",
            "attribution",
            "marts",
            "quality",
        }, key
        assert node.metadata["dagster/column_schema"].columns, key
        assert node.owners, key
        assert node.backfill_policy == dg.BackfillPolicy.single_run(), key
        partitions.add(node.partitions_def)
        assert node.partitions_def is not None, key
    # One shared daily definition for every partitioned asset.
    assert len(partitions) == 1
    # Every stage has checks; the quality-log tables are checked through staging.events.
    for stage_key in (
        "staging/events",
        "core/identity_map",
        "core/event_persons",
        "core/touches",
        "core/conversions",
        "core/conversion_paths",
        "core/attribution_credits",
        "marts/push_assisted_conversions_daily",
        "marts/push_campaign_daily",
    ):
        assert dg.AssetKey.from_user_string(stage_key) in checked, stage_key


def test_attribution_reads_the_lookback_window_of_touches(graph):
    _, asset_graph = graph
    paths = dg.AssetKey(["core", "conversion_paths"])
    touches = dg.AssetKey(["core", "touches"])
    mapping = asset_graph.get_partition_mapping(paths, touches)
    assert isinstance(mapping, dg.TimeWindowPartitionMapping)
    assert mapping.start_offset == -30  # the longest default lookback (subscriptions)


def test_job_schedule_and_sensor(graph):
    defs, _ = graph
    assert defs.resolve_job_def(JOB_NAME)
    schedule = defs.resolve_schedule_def("daily_trailing_window")
    assert schedule.cron_schedule == "0 3 * * *"
    assert defs.resolve_sensor_def("new_landing_files")


def test_trailing_window_run_request():
    import datetime as dt

    from pipeline.schedules import trailing_window

    settings = parse_settings({"trailing_window_days": 3})
    assert trailing_window(settings, dt.date(2024, 3, 10)) == (
        dt.date(2024, 3, 7),
        dt.date(2024, 3, 9),
    )
    # Never before the first partition.
    assert trailing_window(settings, dt.date(2024, 1, 2)) == (
        dt.date(2024, 1, 1),
        dt.date(2024, 1, 1),
    )


def test_dagster_definitions_validate_passes(tmp_path):
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path)}
    env.pop("PUSHASSIST_SETTINGS", None)
    done = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-m", "pipeline.definitions"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "passed validation" in done.stdout + done.stderr


def test_data_dictionary_is_up_to_date():
    from pipeline.dictionary import DICTIONARY_FILE, render

    assert DICTIONARY_FILE.read_text() == render(), "run python -m pipeline.dictionary"
