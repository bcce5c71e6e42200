"""Touches and conversions: what reached each person, and what each person did (SPEC 3.3-3.6)."""

import dagster as dg

from assets.common import asset_key, daily_run_args, materialized, table_asset_args
from checks.common import CheckDef, count_check
from pipeline.conversions import build_conversions
from pipeline.partitions import partition_days
from pipeline.settings import Settings
from pipeline.tables import CONVERSIONS, EVENT_PERSONS, STAGING_EVENTS, TOUCHES
from pipeline.touches import build_touches
from resources import SettingsResource, Warehouse

TOUCH_KEY = asset_key(TOUCHES)
CONVERSION_KEY = asset_key(CONVERSIONS)

UNIQUE_TOUCHES = CheckDef("unique_touch_ids", "No touch id appears twice.")
ONE_TOUCH_PER_MESSAGE = CheckDef(
    "one_touch_per_message",
    "A push message makes one touch at most (click, influenced or impression), never two.",
)
UNIQUE_CONVERSIONS = CheckDef(
    "unique_conversions",
    "No conversion id appears twice, and no order id counts twice within a conversion type.",
)
NON_NEGATIVE_VALUE = CheckDef(
    "non_negative_value", "No conversion has a negative value.", dg.AssetCheckSeverity.WARN
)

UPSTREAM = [asset_key(STAGING_EVENTS), asset_key(EVENT_PERSONS)]


def build(settings: Settings, partitions: dg.PartitionsDefinition) -> list:
    @dg.asset(
        key=TOUCH_KEY,
        deps=UPSTREAM,
        **table_asset_args(TOUCHES, "touches"),
        check_specs=[UNIQUE_TOUCHES.spec(TOUCH_KEY), ONE_TOUCH_PER_MESSAGE.spec(TOUCH_KEY)],
        **daily_run_args(partitions),
    )
    def touches(
        context: dg.AssetExecutionContext, warehouse: Warehouse, settings: SettingsResource
    ):
        config = settings.get()
        start, end = partition_days(context)
        with warehouse.get_connection() as con:
            counts = build_touches(con, config, start, end)
            context.log.info(f"touches {start} to {end}: {counts}")
            yield materialized(con, TOUCHES, "touch_date", start, end, "touch_time", **counts)
            yield count_check(
                con,
                UNIQUE_TOUCHES,
                TOUCH_KEY,
                """
                select touch_id, count(*) as copies
                from core.touches
                where touch_id in (
                    select touch_id from core.touches where touch_date between ? and ?
                )
                group by touch_id
                having count(*) > 1
                """,
                [start, end],
                start,
                end,
            )
            yield count_check(
                con,
                ONE_TOUCH_PER_MESSAGE,
                TOUCH_KEY,
                """
                select person_id, message_id, count(*) as touches, list(touch_type) as types,
                    list(touch_date) as days
                from core.touches
                where (person_id, message_id) in (
                    select (person_id, message_id)
                    from core.touches
                    where touch_date between ? and ?
                        and message_id is not null
                )
                group by person_id, message_id
                having count(*) > 1
                """,
                [start, end],
                start,
                end,
            )

    @dg.asset(
        key=CONVERSION_KEY,
        deps=UPSTREAM,
        **table_asset_args(CONVERSIONS, "conversions"),
        check_specs=[
            UNIQUE_CONVERSIONS.spec(CONVERSION_KEY),
            NON_NEGATIVE_VALUE.spec(CONVERSION_KEY),
        ],
        **daily_run_args(partitions),
    )
    def conversions(
        context: dg.AssetExecutionContext, warehouse: Warehouse, settings: SettingsResource
    ):
        config = settings.get()
        start, end = partition_days(context)
        with warehouse.get_connection() as con:
            counts = build_conversions(con, config, start, end)
            context.log.info(f"conversions {start} to {end}: {counts}")
            yield materialized(
                con, CONVERSIONS, "conversion_date", start, end, "conversion_time", **counts
            )
            deduped = (
                ", ".join(
                    f"'{name}'" for name, d in config.conversions.items() if d.dedupe_by_order_id
                )
                or "null"
            )
            yield count_check(
                con,
                UNIQUE_CONVERSIONS,
                CONVERSION_KEY,
                f"""
                with days as (
                    select conversion_id, conversion_type, order_id
                    from core.conversions
                    where conversion_date between $1 and $2
                )
                select 'conversion_id' as key, conversion_id as value, count(*) as copies
                from core.conversions
                where conversion_id in (select conversion_id from days)
                group by conversion_id
                having count(*) > 1
                union all
                select 'order_id', c.conversion_type || ':' || c.order_id, count(*)
                from core.conversions as c
                join (select distinct conversion_type, order_id from days) as d
                    using (conversion_type, order_id)
                where c.conversion_type in ({deduped})
                group by c.conversion_type, c.order_id
                having count(*) > 1
                """,
                [start, end],
                start,
                end,
            )
            yield count_check(
                con,
                NON_NEGATIVE_VALUE,
                CONVERSION_KEY,
                """
                select conversion_id, value, currency
                from core.conversions
                where conversion_date between ? and ?
                    and value < 0
                """,
                [start, end],
                start,
                end,
            )

    return [touches, conversions]
