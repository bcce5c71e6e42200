"""The daily schedule (re-running the trailing window for late data) and the landing sensor."""

from __future__ import annotations

import datetime as dt
import hashlib

import dagster as dg
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from pipeline.ingest import list_files, open_landing
from pipeline.settings import Settings


def range_tags(start: dt.date, end: dt.date) -> dict[str, str]:
    """Tags that make one run materialize a whole range of daily partitions."""
    return {
        ASSET_PARTITION_RANGE_START_TAG: start.isoformat(),
        ASSET_PARTITION_RANGE_END_TAG: end.isoformat(),
    }


def trailing_window(settings: Settings, today: dt.date) -> tuple[dt.date, dt.date]:
    """The last `trailing_window_days` complete days, never before the first partition."""
    end = today - dt.timedelta(days=1)
    start = max(
        end - dt.timedelta(days=settings.trailing_window_days - 1), settings.first_partition_date
    )
    return start, end


def build_schedule(job, settings: Settings) -> dg.ScheduleDefinition:
    @dg.schedule(
        job=job,
        cron_schedule="0 3 * * *",
        execution_timezone=settings.reporting_timezone,
        description=(
            "Every night, re-runs the trailing window of days (trailing_window_days) in one run, "
            "so late events, late logins and late opens are picked up."
        ),
        default_status=dg.DefaultScheduleStatus.STOPPED,
    )
    def daily_trailing_window(context: dg.ScheduleEvaluationContext):
        start, end = trailing_window(settings, context.scheduled_execution_time.date())
        return dg.RunRequest(run_key=f"{start}..{end}", tags=range_tags(start, end))

    return daily_trailing_window


def build_sensor(job, settings: Settings) -> dg.SensorDefinition:
    @dg.sensor(
        job=job,
        minimum_interval_seconds=300,
        description=(
            "Watches the landing root for new or changed files and re-runs the trailing window "
            "when any arrive."
        ),
        default_status=dg.DefaultSensorStatus.STOPPED,
    )
    def new_landing_files(context: dg.SensorEvaluationContext):
        fs, base = open_landing(settings.landing_root)
        files = list_files(fs, base)
        listing = "\n".join(f"{f.path}\t{f.size}" for f in files)
        fingerprint = hashlib.sha256(listing.encode()).hexdigest()[:16]
        if fingerprint == context.cursor:
            return dg.SkipReason(f"no new files among {len(files)} under {settings.landing_root}")
        context.update_cursor(fingerprint)
        start, end = trailing_window(settings, dt.date.today())
        return dg.RunRequest(run_key=f"files-{fingerprint}", tags=range_tags(start, end))

    return new_landing_files
