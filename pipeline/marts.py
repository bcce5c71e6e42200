"""Metric tables for analysts (SPEC 5): push-assisted conversions and campaign funnels."""

from __future__ import annotations

import datetime as dt

import duckdb

from pipeline.settings import Settings
from pipeline.tables import PUSH_ASSISTED_CONVERSIONS_DAILY, PUSH_CAMPAIGN_DAILY


def _replace_range(
    con: duckdb.DuckDBPyConnection, table, select_sql: str, start: dt.date, end: dt.date
) -> int:
    con.execute(f"create schema if not exists {table.schema}")
    con.execute(table.create_sql())
    # Delete then insert: a re-run of a day replaces exactly that day's rows.
    con.execute(f"delete from {table.qualified_name} where date between ? and ?", [start, end])
    con.execute(
        f"insert into {table.qualified_name} ({', '.join(table.column_names)}) {select_sql}",
        [start, end],
    )
    return con.execute(
        f"select count(*) from {table.qualified_name} where date between ? and ?", [start, end]
    ).fetchall()[0][0]


def build_push_assisted_daily(con: duckdb.DuckDBPyConnection, start: dt.date, end: dt.date) -> int:
    """Replace [start, end] of marts.push_assisted_conversions_daily from core.conversion_paths."""
    select_sql = """
        select
            conversion_date as date,
            push_kind,
            platform,
            conversion_type,
            count(*) as conversions,
            count(*) filter (where push_role = 'last_touch') as push_last_touch_conversions,
            count(*) filter (where is_push_assisted) as push_assisted_conversions,
            count(*) filter (where push_role = 'assist' and assist_kind = 'click')
                as click_assisted_conversions,
            count(*) filter (where push_role = 'assist' and assist_kind = 'influenced')
                as influenced_assisted_conversions,
            count(*) filter (where push_role = 'assist' and assist_kind = 'impression')
                as impression_assisted_conversions,
            count(*) filter (where is_push_assisted and push_touch_count = 1)
                as single_assist_conversions,
            count(*) filter (where is_push_assisted and push_touch_count > 1)
                as multi_assist_conversions,
            coalesce(sum(value) filter (where is_push_assisted), 0) as assisted_revenue,
            coalesce(sum(value) filter (where push_role = 'last_touch'), 0)
                as last_touch_revenue,
            count(*) filter (where is_push_assisted)
                / nullif(count(*) filter (where push_role = 'last_touch'), 0)
                as assisted_to_last_touch_ratio,
            median(hours_from_last_push) filter (where is_push_assisted)
                as median_hours_push_to_conversion,
            count(*) filter (where ga_assist) as ga_assisted_conversions,
            count(*) filter (where is_push_assisted and len(stitch_rules) > 0)
                as stitched_assisted_conversions,
            count(*) filter (
                where is_push_assisted and list_contains(stitch_rules, 'anonymous_stitch')
            ) as anonymous_stitch_assisted_conversions,
            count(*) filter (
                where is_push_assisted and list_contains(stitch_rules, 'cross_device')
            ) as cross_device_assisted_conversions
        from core.conversion_paths
        where conversion_date between $1 and $2
        group by all
        order by all
    """
    return _replace_range(con, PUSH_ASSISTED_CONVERSIONS_DAILY, select_sql, start, end)


def build_push_campaign_daily(
    con: duckdb.DuckDBPyConnection, settings: Settings, start: dt.date, end: dt.date
) -> int:
    """Replace [start, end] of marts.push_campaign_daily.

    The funnel follows each message from its send day (so open and delivery rates stay within 0
    and 1 even when a message is opened the next day); conversions count on their own day.
    """
    tz = settings.reporting_timezone
    select_sql = f"""
        with messages as (
            select
                campaign_id,
                coalesce(message_id, event_id) as message_key,
                any_value(push_kind) filter (where push_kind is not null) as push_kind,
                (min(event_time) filter (where event_name = 'push_sent')
                    at time zone '{tz}')::date as send_day,
                bool_or(event_name = 'push_sent') as sent,
                bool_or(event_name = 'push_delivered') as delivered_event,
                bool_or(event_name = 'push_bounced') as bounced,
                bool_or(event_name = 'push_opened') as opened,
                bool_or(event_name = 'push_influenced_open') as influenced
            from staging.events
            where campaign_id is not null
                and event_name in (
                    'push_sent', 'push_delivered', 'push_bounced', 'push_opened',
                    'push_influenced_open'
                )
            group by all
        ),
        funnel as (
            select
                send_day as date,
                campaign_id,
                case
                    when count(distinct push_kind) > 1 then 'both'
                    else any_value(push_kind)
                end as push_kind,
                count(*) as sends,
                count(*) filter (where delivered_event or not bounced) as deliveries,
                count(*) filter (where (delivered_event or not bounced) and opened) as opens,
                count(*) filter (where (delivered_event or not bounced) and influenced)
                    as influenced_opens
            from messages
            where sent
                and send_day between $1 and $2
            group by all
        ),
        opt_outs as (
            select event_date as date, campaign_id, count(*) as opt_outs
            from staging.events
            where event_name = 'push_opt_out'
                and campaign_id is not null
                and event_date between $1 and $2
            group by all
        ),
        assisted as (
            select
                p.conversion_date as date,
                unnest(p.campaign_ids) as campaign_id,
                p.value,
                p.is_push_assisted
            from core.conversion_paths as p
            where p.conversion_date between $1 and $2
        ),
        assisted_by_campaign as (
            select
                date,
                campaign_id,
                count(*) filter (where is_push_assisted) as assisted_conversions,
                coalesce(sum(value) filter (where is_push_assisted), 0) as assisted_revenue
            from assisted
            group by all
        ),
        last_touch as (
            select
                p.conversion_date as date,
                t.campaign_id,
                count(*) as last_touch_conversions
            from core.conversion_paths as p
            join core.touches as t
                on t.touch_id = p.last_touch_id
            where p.conversion_date between $1 and $2
                and p.push_role = 'last_touch'
                and t.campaign_id is not null
            group by all
        ),
        keys as (
            select date, campaign_id from funnel
            union
            select date, campaign_id from opt_outs
            union
            select date, campaign_id from assisted_by_campaign
            union
            select date, campaign_id from last_touch
        )
        select
            k.date,
            k.campaign_id,
            f.push_kind,
            coalesce(f.sends, 0) as sends,
            coalesce(f.deliveries, 0) as deliveries,
            f.deliveries / nullif(f.sends, 0) as delivery_rate,
            coalesce(f.opens, 0) as opens,
            f.opens / nullif(f.deliveries, 0) as open_rate,
            coalesce(f.influenced_opens, 0) as influenced_opens,
            coalesce(o.opt_outs, 0) as opt_outs,
            coalesce(a.assisted_conversions, 0) as assisted_conversions,
            coalesce(a.assisted_revenue, 0) as assisted_revenue,
            coalesce(l.last_touch_conversions, 0) as last_touch_conversions,
            a.assisted_revenue / nullif(f.sends, 0) as revenue_per_notification_sent
        from keys as k
        left join funnel as f
            using (date, campaign_id)
        left join opt_outs as o
            using (date, campaign_id)
        left join assisted_by_campaign as a
            using (date, campaign_id)
        left join last_touch as l
            using (date, campaign_id)
        order by k.date, k.campaign_id
    """
    return _replace_range(con, PUSH_CAMPAIGN_DAILY, select_sql, start, end)
