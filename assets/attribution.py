"""Attribution: each conversion's path, push's role in it, and credits per model (SPEC 4)."""

import datetime as dt

import dagster as dg

from assets.common import asset_key, daily_run_args, materialized, spec
from checks.common import CheckDef, count_check
from pipeline.attribution import build_paths
from pipeline.misclassification import attribution_touches
from pipeline.partitions import lookback_mapping, partition_days
from pipeline.settings import Settings
from pipeline.tables import ATTRIBUTION_CREDITS, CONVERSION_PATHS, CONVERSIONS, TOUCHES
from resources import SettingsResource, Warehouse

PATHS = asset_key(CONVERSION_PATHS)
CREDITS = asset_key(ATTRIBUTION_CREDITS)

CREDITS_SUM_TO_ONE = CheckDef(
    "credits_sum_to_one", "Every model's credits sum to 1 for every conversion."
)
ATTRIBUTED_ONCE = CheckDef(
    "every_conversion_attributed_once",
    "Every conversion of the days has exactly one path, and credits under every model.",
)
VALUE_RECONCILES = CheckDef(
    "value_reconciles",
    "Under every model, the value credited to a conversion's touches equals its value.",
)


def build(settings: Settings, partitions: dg.PartitionsDefinition) -> list:
    touches_dep = dg.AssetDep(asset_key(TOUCHES), partition_mapping=lookback_mapping(settings))

    @dg.multi_asset(
        name="attribute_conversions",
        specs=[
            spec(CONVERSION_PATHS, "attribution", deps=[touches_dep, asset_key(CONVERSIONS)]),
            spec(ATTRIBUTION_CREDITS, "attribution", deps=[PATHS]),
        ],
        check_specs=[
            ATTRIBUTED_ONCE.spec(PATHS),
            CREDITS_SUM_TO_ONE.spec(CREDITS),
            VALUE_RECONCILES.spec(CREDITS),
        ],
        **daily_run_args(partitions),
    )
    def attribute_conversions(
        context: dg.AssetExecutionContext, warehouse: Warehouse, settings: SettingsResource
    ):
        """Build the paths of the days' conversions from the touches of their lookback windows."""
        config = settings.get()
        start, end = partition_days(context)
        with warehouse.get_connection() as con:
            first = start - dt.timedelta(days=config.max_lookback_days + 1)
            touches = attribution_touches(con, config, first, end)
            counts = build_paths(con, config.attribution, start, end, touches)
            context.log.info(f"paths {start} to {end}: {counts}")
            yield materialized(
                con,
                CONVERSION_PATHS,
                "conversion_date",
                start,
                end,
                "conversion_time",
                **{k: v for k, v in counts.items() if isinstance(v, int | float)},
            )
            yield materialized(
                con, ATTRIBUTION_CREDITS, "conversion_date", start, end, "conversion_id, model"
            )
            days = [start, end]
            yield count_check(
                con,
                ATTRIBUTED_ONCE,
                PATHS,
                """
                with paths as (
                    select conversion_id, count(*) as paths
                    from core.conversion_paths
                    where conversion_date between $1 and $2
                    group by all
                ),
                models as (
                    select conversion_id, count(distinct model) as models
                    from core.attribution_credits
                    where conversion_date between $1 and $2
                    group by all
                )
                select c.conversion_id, coalesce(p.paths, 0) as paths,
                    coalesce(m.models, 0) as models
                from core.conversions as c
                left join paths as p
                    using (conversion_id)
                left join models as m
                    using (conversion_id)
                where c.conversion_date between $1 and $2
                    and (coalesce(p.paths, 0) <> 1
                        or coalesce(m.models, 0) <> (
                            select count(distinct model) from core.attribution_credits
                        ))
                """,
                days,
                start,
                end,
            )
            yield count_check(
                con,
                CREDITS_SUM_TO_ONE,
                CREDITS,
                """
                select conversion_id, model, sum(credit) as total_credit
                from core.attribution_credits
                where conversion_date between ? and ?
                group by all
                having abs(sum(credit) - 1) > 1e-9
                """,
                days,
                start,
                end,
            )
            yield count_check(
                con,
                VALUE_RECONCILES,
                CREDITS,
                """
                select c.conversion_id, c.model, sum(c.value_credit) as credited,
                    any_value(p.value) as value
                from core.attribution_credits as c
                join core.conversion_paths as p
                    using (conversion_id)
                where c.conversion_date between ? and ?
                group by all
                having abs(sum(c.value_credit) - any_value(p.value)) > 0.005
                """,
                days,
                start,
                end,
            )

    return [attribute_conversions]
