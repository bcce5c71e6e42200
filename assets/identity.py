"""Identity: who is who across user ids, anonymous ids and devices (SPEC 3.2)."""

import dagster as dg

from assets.common import asset_key, daily_run_args, materialized, spec
from checks.common import CheckDef, count_check, result, threshold_severity
from pipeline.identity import resolve_identity
from pipeline.partitions import partition_days
from pipeline.settings import Settings
from pipeline.tables import EVENT_PERSONS, IDENTITY_MAP, STAGING_EVENTS
from resources import SettingsResource, Warehouse

IDENTITY = asset_key(IDENTITY_MAP)
PERSONS = asset_key(EVENT_PERSONS)

OVERSIZED = CheckDef(
    "no_oversized_persons",
    "No person joins more identifiers than identity.max_component_size: a larger one is a sign "
    "of over-merging (a junk id or a shared device that slipped through).",
    dg.AssetCheckSeverity.WARN,
)
SHARED = CheckDef(
    "shared_devices",
    "Devices or anonymous ids seen with several users: their events follow the most recent "
    "login instead of joining people. Reported so on-call can see them; fails as WARN.",
    dg.AssetCheckSeverity.WARN,
)
ANONYMOUS_SHARE = CheckDef(
    "anonymous_event_share",
    "Share of the days' events that no known user could be found for, against the thresholds "
    "of checks.anonymous_event_share.",
    thresholded=True,
)
EVERY_EVENT = CheckDef(
    "every_event_has_a_person", "Every staged event of the days is mapped to exactly one person."
)


def build(settings: Settings, partitions: dg.PartitionsDefinition) -> list:
    @dg.multi_asset(
        name="resolve_identity",
        specs=[
            spec(IDENTITY_MAP, "identity", deps=[asset_key(STAGING_EVENTS)]),
            spec(EVENT_PERSONS, "identity", deps=[asset_key(STAGING_EVENTS)]),
        ],
        check_specs=[OVERSIZED.spec(IDENTITY), SHARED.spec(IDENTITY)]
        + [ANONYMOUS_SHARE.spec(PERSONS), EVERY_EVENT.spec(PERSONS)],
        **daily_run_args(partitions),
    )
    def resolve_identity_asset(
        context: dg.AssetExecutionContext, warehouse: Warehouse, settings: SettingsResource
    ):
        """Rebuild the identity graph from every staged event (identity is not a daily slice:
        a login today can stitch last week's anonymous visits)."""
        config = settings.get()
        start, end = partition_days(context)
        with warehouse.get_connection() as con:
            counts = resolve_identity(con, config.identity)
            context.log.info(f"identity graph: {counts}")
            yield dg.MaterializeResult(
                asset_key=IDENTITY,
                metadata={
                    "dagster/row_count": counts["identifiers"],
                    **{k: v for k, v in counts.items() if isinstance(v, int | float)},
                },
            )
            yield materialized(con, EVENT_PERSONS, "event_date", start, end, "event_id")
            largest = counts.get("largest_component", 0)
            limit = config.identity.max_component_size
            yield count_check(
                con,
                OVERSIZED,
                IDENTITY,
                """
                select person_id, count(*) as identifiers,
                    list(identifier order by identifier)[1:5] as some_identifiers
                from core.identity_map
                where person_id is not null
                group by person_id
                having count(*) > ?
                order by identifiers desc
                """,
                [limit],
                start,
                end,
            )
            shared = con.execute(
                "select count(*) from core.identity_map where rule in "
                "('shared_device', 'public_device')"
            ).fetchall()[0][0]
            yield result(
                SHARED,
                IDENTITY,
                passed=shared == 0,
                start=start,
                end=end,
                samples=con.execute(
                    """
                    select identifier_type, identifier, rule, user_count, first_seen, last_seen
                    from core.identity_map
                    where rule in ('shared_device', 'public_device')
                    order by user_count desc, identifier
                    limit 5
                    """
                )
                .df()
                .astype(str)
                .to_markdown(index=False)
                if shared
                else "",
                shared_identifiers=int(shared),
                largest_person=int(largest),
            )
            total, anonymous = con.execute(
                """
                select count(*), count(*) filter (where identity_rule = 'unlinked')
                from core.event_persons
                where event_date between ? and ?
                """,
                [start, end],
            ).fetchall()[0]
            share = anonymous / total if total else 0.0
            limits = config.checks.anonymous_event_share
            severity = threshold_severity(share, limits.warn, limits.error)
            yield result(
                ANONYMOUS_SHARE,
                PERSONS,
                passed=severity is None,
                severity=severity,
                start=start,
                end=end,
                anonymous_event_share=float(share),
                events=int(total),
                warn_above=limits.warn,
                error_above=limits.error,
            )
            yield count_check(
                con,
                EVERY_EVENT,
                PERSONS,
                """
                select e.source, e.event_id, count(p.person_id) as persons
                from staging.events as e
                left join core.event_persons as p
                    using (source, event_id)
                where e.event_date between ? and ?
                group by all
                having count(p.person_id) <> 1
                """,
                [start, end],
                start,
                end,
            )

    return [resolve_identity_asset]
