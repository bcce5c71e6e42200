"""Marts: the documented metric tables analysts query (SPEC 5)."""

import datetime as dt

import dagster as dg
import duckdb
import pandas as pd

from assets.common import asset_key, daily_run_args, materialized, table_asset_args
from checks import expectations
from checks.common import CheckDef, count_check, result
from pipeline.marts import (
    SENSITIVITY_WINDOWS,
    build_channel_attribution_daily,
    build_conversion_paths_top,
    build_lookback_sensitivity,
    build_push_assisted_daily,
    build_push_campaign_daily,
)
from pipeline.misclassification import attribution_touches
from pipeline.partitions import partition_days
from pipeline.settings import Settings
from pipeline.tables import (
    ATTRIBUTION_CREDITS,
    CHANNEL_ATTRIBUTION_DAILY,
    CONVERSION_PATHS,
    CONVERSION_PATHS_TOP,
    CONVERSIONS,
    LOOKBACK_SENSITIVITY,
    PUSH_ASSISTED_CONVERSIONS_DAILY,
    PUSH_CAMPAIGN_DAILY,
    STAGING_EVENTS,
    TOUCHES,
    Table,
)
from resources import SettingsResource, Warehouse

ASSISTED = asset_key(PUSH_ASSISTED_CONVERSIONS_DAILY)
CAMPAIGNS = asset_key(PUSH_CAMPAIGN_DAILY)
CHANNELS = asset_key(CHANNEL_ATTRIBUTION_DAILY)
PATHS_TOP = asset_key(CONVERSION_PATHS_TOP)
SENSITIVITY = asset_key(LOOKBACK_SENSITIVITY)

ASSISTED_WITHIN_TOTAL = CheckDef(
    "assisted_within_total",
    "Push-assisted, last-touch and GA-style assisted conversions never exceed all conversions.",
)
RECONCILES = CheckDef(
    "totals_reconcile_with_core",
    "Per day, conversions and their value in the mart equal those in core.conversion_paths.",
)
GE_SUITE = CheckDef(
    "great_expectations_suite",
    "The mart's great-expectations suite passes (value ranges, uniqueness of the grain).",
)
CHANNEL_CREDITS_RECONCILE = CheckDef(
    "credits_reconcile_with_conversions",
    "For every day and model, the conversions credited to channels add up to the day's "
    "conversions.",
)
PATHS_RECONCILE = CheckDef(
    "paths_reconcile_with_conversions",
    "For every day, the conversions over all paths add up to the day's conversions.",
)
SENSITIVITY_MATCHES = CheckDef(
    "configured_window_matches_headline",
    "At each conversion type's own lookback, the push-assisted and push last-touch counts equal "
    "those of marts.push_assisted_conversions_daily.",
)
RATES_IN_RANGE = CheckDef("rates_within_0_and_1", "Delivery and open rates lie in [0, 1].")


def _expectation_check(
    con: duckdb.DuckDBPyConnection, table: Table, key: dg.AssetKey, start: dt.date, end: dt.date
) -> dg.AssetCheckResult:
    frame = con.execute(
        f"select * from {table.qualified_name} where date between ? and ?", [start, end]
    ).df()
    success, rows = expectations.validate(table.qualified_name, frame)
    failed = [r for r in rows if not r["success"]]
    return result(
        GE_SUITE,
        key,
        passed=success,
        start=start,
        end=end,
        samples=pd.DataFrame(failed).to_markdown(index=False) if failed else "",
        expectations=len(rows),
        failed_expectations=len(failed),
    )


def build(settings: Settings, partitions: dg.PartitionsDefinition) -> list:
    @dg.asset(
        key=ASSISTED,
        deps=[asset_key(CONVERSION_PATHS)],
        check_specs=[
            ASSISTED_WITHIN_TOTAL.spec(ASSISTED),
            RECONCILES.spec(ASSISTED),
            GE_SUITE.spec(ASSISTED),
        ],
        **daily_run_args(partitions),
        **table_asset_args(PUSH_ASSISTED_CONVERSIONS_DAILY, "marts"),
    )
    def push_assisted_conversions_daily(
        context: dg.AssetExecutionContext, warehouse: Warehouse, settings: SettingsResource
    ):
        start, end = partition_days(context)
        with warehouse.get_connection() as con:
            build_push_assisted_daily(con, start, end)
            totals = con.execute(
                """
                select coalesce(sum(conversions), 0), coalesce(sum(push_assisted_conversions), 0),
                    coalesce(sum(push_last_touch_conversions), 0)
                from marts.push_assisted_conversions_daily
                where date between ? and ?
                """,
                [start, end],
            ).fetchall()[0]
            yield materialized(
                con,
                PUSH_ASSISTED_CONVERSIONS_DAILY,
                "date",
                start,
                end,
                "date, conversions desc",
                conversions=int(totals[0]),
                push_assisted_conversions=int(totals[1]),
                push_last_touch_conversions=int(totals[2]),
            )
            days = [start, end]
            yield count_check(
                con,
                ASSISTED_WITHIN_TOTAL,
                ASSISTED,
                """
                select *
                from marts.push_assisted_conversions_daily
                where date between ? and ?
                    and (push_assisted_conversions > conversions
                        or push_last_touch_conversions > conversions
                        or ga_assisted_conversions > conversions
                        or push_assisted_conversions + push_last_touch_conversions
                            > conversions)
                """,
                days,
                start,
                end,
            )
            yield count_check(
                con,
                RECONCILES,
                ASSISTED,
                """
                with mart as (
                    select date, sum(conversions) as conversions,
                        sum(assisted_revenue) as assisted_revenue
                    from marts.push_assisted_conversions_daily
                    where date between $1 and $2
                    group by date
                ),
                core as (
                    select conversion_date as date, count(*) as conversions,
                        coalesce(sum(value) filter (where is_push_assisted), 0)
                            as assisted_revenue
                    from core.conversion_paths
                    where conversion_date between $1 and $2
                    group by conversion_date
                )
                select date, m.conversions as mart_conversions, c.conversions as core_conversions,
                    m.assisted_revenue as mart_revenue, c.assisted_revenue as core_revenue
                from mart as m
                full join core as c
                    using (date)
                where m.conversions is distinct from c.conversions
                    or m.assisted_revenue is distinct from c.assisted_revenue
                """,
                days,
                start,
                end,
            )
            yield _expectation_check(con, PUSH_ASSISTED_CONVERSIONS_DAILY, ASSISTED, start, end)

    @dg.asset(
        key=CAMPAIGNS,
        deps=[asset_key(CONVERSION_PATHS), asset_key(TOUCHES), asset_key(STAGING_EVENTS)],
        check_specs=[RATES_IN_RANGE.spec(CAMPAIGNS), GE_SUITE.spec(CAMPAIGNS)],
        **daily_run_args(partitions),
        **table_asset_args(PUSH_CAMPAIGN_DAILY, "marts"),
    )
    def push_campaign_daily(
        context: dg.AssetExecutionContext, warehouse: Warehouse, settings: SettingsResource
    ):
        config = settings.get()
        start, end = partition_days(context)
        with warehouse.get_connection() as con:
            build_push_campaign_daily(con, config, start, end)
            yield materialized(con, PUSH_CAMPAIGN_DAILY, "date", start, end, "date, sends desc")
            yield count_check(
                con,
                RATES_IN_RANGE,
                CAMPAIGNS,
                """
                select date, campaign_id, delivery_rate, open_rate
                from marts.push_campaign_daily
                where date between ? and ?
                    and (delivery_rate not between 0 and 1 or open_rate not between 0 and 1)
                """,
                [start, end],
                start,
                end,
            )
            yield _expectation_check(con, PUSH_CAMPAIGN_DAILY, CAMPAIGNS, start, end)

    @dg.asset(
        key=CHANNELS,
        deps=[asset_key(ATTRIBUTION_CREDITS)],
        check_specs=[CHANNEL_CREDITS_RECONCILE.spec(CHANNELS)],
        **daily_run_args(partitions),
        **table_asset_args(CHANNEL_ATTRIBUTION_DAILY, "marts"),
    )
    def channel_attribution_daily(context: dg.AssetExecutionContext, warehouse: Warehouse):
        start, end = partition_days(context)
        with warehouse.get_connection() as con:
            build_channel_attribution_daily(con, start, end)
            yield materialized(
                con, CHANNEL_ATTRIBUTION_DAILY, "date", start, end, "date, model, channel"
            )
            yield count_check(
                con,
                CHANNEL_CREDITS_RECONCILE,
                CHANNELS,
                """
                with credited as (
                    select date, model, sum(credited_conversions) as credited
                    from marts.channel_attribution_daily
                    where date between $1 and $2
                    group by all
                ),
                counted as (
                    select conversion_date as date, count(*) as conversions
                    from core.conversion_paths
                    where conversion_date between $1 and $2
                    group by all
                )
                select c.date, c.model, c.credited, n.conversions
                from credited as c
                left join counted as n
                    using (date)
                where abs(c.credited - coalesce(n.conversions, 0)) > 1e-6
                """,
                [start, end],
                start,
                end,
            )

    @dg.asset(
        key=PATHS_TOP,
        deps=[asset_key(CONVERSION_PATHS)],
        check_specs=[PATHS_RECONCILE.spec(PATHS_TOP)],
        **daily_run_args(partitions),
        **table_asset_args(CONVERSION_PATHS_TOP, "marts"),
    )
    def conversion_paths_top(context: dg.AssetExecutionContext, warehouse: Warehouse):
        start, end = partition_days(context)
        with warehouse.get_connection() as con:
            build_conversion_paths_top(con, start, end)
            yield materialized(con, CONVERSION_PATHS_TOP, "date", start, end, "date, path_rank")
            yield count_check(
                con,
                PATHS_RECONCILE,
                PATHS_TOP,
                """
                with core as (
                    select conversion_date as date, count(*) as core_conversions
                    from core.conversion_paths
                    where conversion_date between $1 and $2
                    group by all
                ),
                mart as (
                    select date, sum(conversions) as mart_conversions
                    from marts.conversion_paths_top
                    where date between $1 and $2
                    group by all
                )
                select *
                from core
                full join mart
                    using (date)
                where core_conversions is distinct from mart_conversions
                """,
                [start, end],
                start,
                end,
            )

    @dg.asset(
        key=SENSITIVITY,
        deps=[asset_key(CONVERSIONS), asset_key(TOUCHES), ASSISTED],
        check_specs=[SENSITIVITY_MATCHES.spec(SENSITIVITY)],
        **daily_run_args(partitions),
        **table_asset_args(LOOKBACK_SENSITIVITY, "marts"),
    )
    def lookback_sensitivity(
        context: dg.AssetExecutionContext, warehouse: Warehouse, settings: SettingsResource
    ):
        config = settings.get()
        start, end = partition_days(context)
        with warehouse.get_connection() as con:
            first = start - dt.timedelta(hours=max(SENSITIVITY_WINDOWS.values()) + 24)
            touches = attribution_touches(con, config, first, end)
            build_lookback_sensitivity(con, config, start, end, touches)
            yield materialized(
                con,
                LOOKBACK_SENSITIVITY,
                "date",
                start,
                end,
                "date, conversion_type, window_hours",
            )
            yield count_check(
                con,
                SENSITIVITY_MATCHES,
                SENSITIVITY,
                """
                with headline as (
                    select date, conversion_type,
                        sum(push_assisted_conversions) as assisted,
                        sum(push_last_touch_conversions) as last_touch
                    from marts.push_assisted_conversions_daily
                    where date between $1 and $2
                    group by all
                )
                select s.date, s.conversion_type, s.lookback_window, s.push_assisted_conversions,
                    h.assisted as headline_assisted, s.push_last_touch_conversions,
                    h.last_touch as headline_last_touch
                from marts.lookback_sensitivity as s
                join headline as h
                    using (date, conversion_type)
                where s.date between $1 and $2
                    and s.is_configured_window
                    and (s.push_assisted_conversions <> h.assisted
                        or s.push_last_touch_conversions <> h.last_touch)
                """,
                [start, end],
                start,
                end,
            )

    return [
        push_assisted_conversions_daily,
        push_campaign_daily,
        channel_attribution_daily,
        conversion_paths_top,
        lookback_sensitivity,
    ]
