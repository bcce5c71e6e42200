"""Channel quality: suspected misclassifications with their evidence and alerts (SPEC 6), and
the size of the push-open correction (marts.channel_correction_daily)."""

import datetime as dt

import dagster as dg
import duckdb

from assets.common import asset_key, daily_run_args, materialized, table_asset_args
from checks.common import CheckDef, count_check, result, sample_markdown, threshold_severity
from pipeline.misclassification import (
    CAMPAIGN_OPENS_WITHOUT_SESSIONS,
    PUSH_MEDIUM_UNCLASSIFIED,
    PUSH_OPENED_NOT_PUSH,
    build_channel_correction_daily,
    build_misclassifications,
)
from pipeline.partitions import lookback_mapping, partition_days
from pipeline.settings import Settings, Threshold
from pipeline.tables import (
    CHANNEL_CORRECTION_DAILY,
    CHANNEL_MISCLASSIFICATIONS,
    CONVERSION_PATHS,
    CONVERSIONS,
    STAGING_EVENTS,
    TOUCHES,
)
from resources import SettingsResource, Warehouse

MISCLASSIFICATIONS = asset_key(CHANNEL_MISCLASSIFICATIONS)
CORRECTION = asset_key(CHANNEL_CORRECTION_DAILY)

PUSH_OPENED_SESSIONS_NOT_PUSH = CheckDef(
    "push_opened_sessions_not_push",
    "Share of push-opened sessions (started within the push-open window after an open) that "
    "were recorded as another channel (Direct, Unassigned ...) stays under the thresholds "
    "checks.push_as_direct_rate.",
    thresholded=True,
)
PUSH_MEDIUMS_UNCLASSIFIED = CheckDef(
    "push_mediums_unclassified",
    "Share of sessions with a push-looking utm_medium (push, notif, fcm, apns ...) that the "
    "channel rules did not classify as Mobile Push Notifications stays under the thresholds "
    "checks.push_medium_unclassified_rate.",
    thresholded=True,
)
CAMPAIGNS_WITHOUT_SESSIONS = CheckDef(
    "campaigns_with_opens_without_sessions",
    "Share of campaign-days with opens (at least checks.min_campaign_opens) but no push "
    "session at all stays under the thresholds checks.campaigns_without_push_sessions_rate.",
    thresholded=True,
)
CORRECTION_MATCHES_CORE = CheckDef(
    "correction_matches_core",
    "The view core.conversion_paths uses (attribution.use_corrected_channels) gives the same "
    "push last-touch and push-assisted counts in this mart as in core.conversion_paths.",
)


def _non_blocking(check: CheckDef, key: dg.AssetKey) -> dg.AssetCheckSpec:
    # Misclassifications describe the tracking, not this table's integrity, and nothing is built
    # from the table: an ERROR must alert on-call, never fail the run.
    return dg.AssetCheckSpec(check.name, asset=key, description=check.description, blocking=False)


def _rate_check(
    con: duckdb.DuckDBPyConnection,
    check: CheckDef,
    kind: str,
    threshold: Threshold,
    affected: int,
    population: int,
    population_name: str,
    start: dt.date,
    end: dt.date,
    **figures,
) -> dg.AssetCheckResult:
    rate = affected / population if population else 0.0
    severity = threshold_severity(rate, threshold.warn, threshold.error)
    examples = sample_markdown(
        con,
        f"""
        select date, case_id, person_id, campaign_id, recorded_channel, utm_medium, evidence
        from {CHANNEL_MISCLASSIFICATIONS.qualified_name}
        where kind = ?
            and date between ? and ?
        order by date, case_id
        """,
        [kind, start, end],
    )
    return result(
        check,
        MISCLASSIFICATIONS,
        passed=severity is None,
        severity=severity or dg.AssetCheckSeverity.WARN,
        start=start,
        end=end,
        samples=examples,
        rate=float(rate),
        warn_threshold=float(threshold.warn),
        error_threshold=float(threshold.error),
        affected=int(affected),
        **{population_name: int(population)},
        **figures,
    )


def _breakdown(con: duckdb.DuckDBPyConnection, column: str, kind: str, start, end) -> str:
    rows = con.execute(
        f"""
        select coalesce({column}, '(none)') as value, count(*) as cases
        from {CHANNEL_MISCLASSIFICATIONS.qualified_name}
        where kind = ?
            and date between ? and ?
        group by all
        order by cases desc, value
        limit 10
        """,
        [kind, start, end],
    ).fetchall()
    return ", ".join(f"{value}: {cases}" for value, cases in rows) or "none"


def build(settings: Settings, partitions: dg.PartitionsDefinition) -> list:
    @dg.asset(
        key=MISCLASSIFICATIONS,
        deps=[asset_key(TOUCHES), asset_key(STAGING_EVENTS)],
        check_specs=[
            _non_blocking(PUSH_OPENED_SESSIONS_NOT_PUSH, MISCLASSIFICATIONS),
            _non_blocking(PUSH_MEDIUMS_UNCLASSIFIED, MISCLASSIFICATIONS),
            _non_blocking(CAMPAIGNS_WITHOUT_SESSIONS, MISCLASSIFICATIONS),
        ],
        **daily_run_args(partitions),
        **table_asset_args(CHANNEL_MISCLASSIFICATIONS, "quality"),
    )
    def channel_misclassifications(
        context: dg.AssetExecutionContext, warehouse: Warehouse, settings: SettingsResource
    ):
        """Lists every suspected channel misclassification of the days, with its evidence, and
        alerts when their rates pass the WARN and ERROR thresholds of the settings."""
        config = settings.get()
        thresholds = config.checks
        start, end = partition_days(context)
        with warehouse.get_connection() as con:
            counts = build_misclassifications(con, config, start, end)
            context.log.info(f"misclassifications {start} to {end}: {counts}")
            yield materialized(
                con, CHANNEL_MISCLASSIFICATIONS, "date", start, end, "date, kind", **counts
            )
            direct = con.execute(
                f"""
                select count(*)
                from {CHANNEL_MISCLASSIFICATIONS.qualified_name}
                where kind = '{PUSH_OPENED_NOT_PUSH}'
                    and recorded_channel = 'Direct'
                    and date between ? and ?
                """,
                [start, end],
            ).fetchall()[0][0]
            opened = counts["push_opened_sessions"]
            yield _rate_check(
                con,
                PUSH_OPENED_SESSIONS_NOT_PUSH,
                PUSH_OPENED_NOT_PUSH,
                thresholds.push_as_direct_rate,
                counts[PUSH_OPENED_NOT_PUSH],
                opened,
                "push_opened_sessions",
                start,
                end,
                recorded_as_direct=int(direct),
                direct_rate=float(direct / opened if opened else 0.0),
                recorded_channels=_breakdown(
                    con, "recorded_channel", PUSH_OPENED_NOT_PUSH, start, end
                ),
            )
            yield _rate_check(
                con,
                PUSH_MEDIUMS_UNCLASSIFIED,
                PUSH_MEDIUM_UNCLASSIFIED,
                thresholds.push_medium_unclassified_rate,
                counts[PUSH_MEDIUM_UNCLASSIFIED],
                counts["push_looking_sessions"],
                "push_looking_sessions",
                start,
                end,
                mediums=_breakdown(con, "utm_medium", PUSH_MEDIUM_UNCLASSIFIED, start, end),
            )
            yield _rate_check(
                con,
                CAMPAIGNS_WITHOUT_SESSIONS,
                CAMPAIGN_OPENS_WITHOUT_SESSIONS,
                thresholds.campaigns_without_push_sessions_rate,
                counts[CAMPAIGN_OPENS_WITHOUT_SESSIONS],
                counts["campaign_days"],
                "campaign_days_with_opens",
                start,
                end,
                campaigns=_breakdown(
                    con, "campaign_id", CAMPAIGN_OPENS_WITHOUT_SESSIONS, start, end
                ),
                min_campaign_opens=int(thresholds.min_campaign_opens),
            )

    @dg.asset(
        key=CORRECTION,
        deps=[
            asset_key(CONVERSION_PATHS),
            asset_key(CONVERSIONS),
            dg.AssetDep(asset_key(TOUCHES), partition_mapping=lookback_mapping(settings)),
        ],
        check_specs=[CORRECTION_MATCHES_CORE.spec(CORRECTION)],
        **daily_run_args(partitions),
        **table_asset_args(CHANNEL_CORRECTION_DAILY, "marts"),
    )
    def channel_correction_daily(
        context: dg.AssetExecutionContext, warehouse: Warehouse, settings: SettingsResource
    ):
        """Push's last-touch and assisted conversions under the corrected and the recorded
        channels, side by side: how much the push-open correction changes the figures."""
        config = settings.get()
        start, end = partition_days(context)
        view = "corrected" if config.attribution.use_corrected_channels else "recorded"
        with warehouse.get_connection() as con:
            build_channel_correction_daily(con, config, start, end)
            totals = con.execute(
                f"""
                select
                    coalesce(sum(push_last_touch_corrected), 0),
                    coalesce(sum(push_last_touch_recorded), 0),
                    coalesce(sum(push_assisted_corrected), 0),
                    coalesce(sum(push_assisted_recorded), 0)
                from {CHANNEL_CORRECTION_DAILY.qualified_name}
                where date between ? and ?
                """,
                [start, end],
            ).fetchall()[0]
            yield materialized(
                con,
                CHANNEL_CORRECTION_DAILY,
                "date",
                start,
                end,
                "date, conversion_type",
                push_last_touch_corrected=int(totals[0]),
                push_last_touch_recorded=int(totals[1]),
                push_assisted_corrected=int(totals[2]),
                push_assisted_recorded=int(totals[3]),
                attribution_view=view,
            )
            yield count_check(
                con,
                CORRECTION_MATCHES_CORE,
                CORRECTION,
                f"""
                with core_counts as (
                    select
                        conversion_date as date,
                        conversion_type,
                        count(*) filter (where push_role = 'last_touch') as push_last_touch,
                        count(*) filter (where is_push_assisted) as push_assisted
                    from core.conversion_paths
                    where conversion_date between $1 and $2
                    group by all
                ),
                mart_counts as (
                    select
                        date,
                        conversion_type,
                        push_last_touch_{view} as push_last_touch,
                        push_assisted_{view} as push_assisted
                    from {CHANNEL_CORRECTION_DAILY.qualified_name}
                    where date between $1 and $2
                )
                select
                    date,
                    conversion_type,
                    c.push_last_touch as core_last_touch,
                    m.push_last_touch as mart_last_touch,
                    c.push_assisted as core_assisted,
                    m.push_assisted as mart_assisted
                from core_counts as c
                full join mart_counts as m
                    using (date, conversion_type)
                where c.push_last_touch is distinct from m.push_last_touch
                    or c.push_assisted is distinct from m.push_assisted
                """,
                [start, end],
                start,
                end,
            )

    return [channel_misclassifications, channel_correction_daily]
