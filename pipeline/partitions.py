"""The one daily partitions definition every partitioned asset shares, and range helpers."""

from __future__ import annotations

import datetime as dt

import dagster as dg

from pipeline.settings import Settings


def daily_partitions(settings: Settings) -> dg.DailyPartitionsDefinition:
    """Days in the reporting time zone, from the configured first date up to today."""
    return dg.DailyPartitionsDefinition(
        start_date=settings.first_partition_date.isoformat(),
        timezone=settings.reporting_timezone,
        end_offset=1,
    )


def lookback_mapping(settings: Settings) -> dg.TimeWindowPartitionMapping:
    """A conversion day reads the touches of the longest lookback window before it."""
    return dg.TimeWindowPartitionMapping(
        start_offset=-settings.max_lookback_days, allow_nonexistent_upstream_partitions=True
    )


def partition_days(context: dg.AssetExecutionContext) -> tuple[dt.date, dt.date]:
    """First and last day (inclusive) of the partitions this run materializes."""
    window = context.partition_time_window
    return window.start.date(), (window.end - dt.timedelta(days=1)).date()
