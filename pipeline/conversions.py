"""Conversions: the events that count as purchases, subscriptions or leads (SPEC 3.6).

Each conversion definition in the settings names its events and its own lookback window. When a
definition dedupes by order id, only the first event of an order counts, whichever day it is
on, so a re-sent purchase never doubles revenue.
"""

from __future__ import annotations

import datetime as dt

import duckdb

from pipeline.settings import Settings
from pipeline.tables import CONVERSIONS


def _definitions_sql(settings: Settings) -> str:
    rows = [
        f"('{event}', '{name}', {definition.lookback_days}, {str(definition.dedupe_by_order_id)})"
        for name, definition in settings.conversions.items()
        for event in definition.events
    ]
    return (
        "select * from (values "
        + ", ".join(rows)
        + ") as d(event_name, conversion_type, lookback_days, dedupe_by_order_id)"
    )


def build_conversions(
    con: duckdb.DuckDBPyConnection, settings: Settings, start: dt.date, end: dt.date
) -> dict[str, int]:
    """Replace the [start, end] days of `core.conversions`."""
    con.execute("create schema if not exists core")
    con.execute(CONVERSIONS.create_sql())
    columns = ", ".join(CONVERSIONS.column_names)
    junk = ", ".join(
        "'" + v.lower().replace("'", "''") + "'" for v in settings.identity.junk_values
    )
    con.execute("delete from core.conversions where conversion_date between ? and ?", [start, end])
    con.execute(
        f"""
        insert into core.conversions ({columns})
        with definitions as (
            {_definitions_sql(settings)}
        ),
        candidates as (
            select
                e.event_id,
                e.source,
                -- A junk order id ('0', 'null') is no order id: it must not merge the
                -- purchases of different people.
                case when lower(trim(e.order_id)) not in ({junk}) then e.order_id end as order_id,
                e.event_name,
                e.event_time,
                e.event_date,
                e.revenue,
                e.currency,
                e.platform,
                d.conversion_type,
                d.lookback_days,
                d.dedupe_by_order_id
            from staging.events as e
            join definitions as d
                using (event_name)
        ),
        ranked as (
            -- The first event of an order counts; later copies of it are resends, not sales.
            select
                *,
                case
                    when dedupe_by_order_id and order_id is not null then row_number() over (
                        partition by conversion_type, order_id
                        order by event_time, event_id
                    )
                    else 1
                end as order_copy
            from candidates
        )
        select
            r.event_id as conversion_id,
            r.event_id as conversion_event_id,
            r.order_id,
            p.person_id,
            r.conversion_type,
            r.event_name,
            r.event_time as conversion_time,
            r.event_date as conversion_date,
            coalesce(r.revenue, 0) as value,
            r.currency,
            coalesce(r.platform, 'unknown') as platform,
            r.lookback_days,
            p.identity_rule
        from ranked as r
        join core.event_persons as p
            using (source, event_id)
        where r.order_copy = 1
            and r.event_date between ? and ?
        order by r.event_time, r.event_id
        """,
        [start, end],
    )
    rows = con.execute(
        """
        select conversion_type, count(*)
        from core.conversions
        where conversion_date between ? and ?
        group by 1
        """,
        [start, end],
    ).fetchall()
    return {conversion_type: int(n) for conversion_type, n in rows}
