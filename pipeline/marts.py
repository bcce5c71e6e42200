"""Metric tables for analysts (SPEC 5): push assists, campaign funnels, channel credit, paths."""

from __future__ import annotations

import datetime as dt

import duckdb

from pipeline.settings import Settings
from pipeline.tables import (
    CHANNEL_ATTRIBUTION_DAILY,
    CONVERSION_PATHS_TOP,
    LOOKBACK_SENSITIVITY,
    PUSH_ASSISTED_CONVERSIONS_DAILY,
    PUSH_CAMPAIGN_DAILY,
)
from pipeline.touches import message_key_sql


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
    and 1 even when a message is opened the next day); conversions count on their own day. A
    message reported without a send (FCM logs none) counts as sent on its first event's day.
    """
    tz = settings.reporting_timezone
    select_sql = f"""
        with messages as (
            -- An open that does not repeat its campaign still belongs to its message's.
            select
                any_value(e.campaign_id) filter (where e.campaign_id is not null) as campaign_id,
                {message_key_sql(settings)} as message_key,
                any_value(e.push_kind) filter (where e.push_kind is not null) as push_kind,
                -- FCM, read from the GA4 export, logs no send: a message it reports delivered or
                -- opened was sent all the same, on the day of its first event.
                (coalesce(min(e.event_time) filter (where e.event_name = 'push_sent'),
                    min(e.event_time)) at time zone '{tz}')::date as send_day,
                bool_or(e.event_name = 'push_delivered') as delivered_event,
                bool_or(e.event_name = 'push_bounced') as bounced,
                bool_or(e.event_name = 'push_opened') as opened,
                bool_or(e.event_name = 'push_influenced_open') as influenced
            from staging.events as e
            join core.event_persons as p
                using (source, event_id)
            where e.event_name in (
                'push_sent', 'push_delivered', 'push_bounced', 'push_opened',
                'push_influenced_open'
            )
            group by message_key
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
            where send_day between $1 and $2
                and campaign_id is not null
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


def build_channel_attribution_daily(
    con: duckdb.DuckDBPyConnection, start: dt.date, end: dt.date
) -> int:
    """Replace [start, end] of marts.channel_attribution_daily from core.attribution_credits."""
    select_sql = """
        select
            conversion_date as date,
            model,
            channel,
            bool_or(is_push) as is_push,
            sum(credit) as credited_conversions,
            sum(value_credit) as credited_revenue
        from core.attribution_credits
        where conversion_date between $1 and $2
        group by all
        order by date, model, credited_conversions desc, channel
    """
    return _replace_range(con, CHANNEL_ATTRIBUTION_DAILY, select_sql, start, end)


def build_conversion_paths_top(con: duckdb.DuckDBPyConnection, start: dt.date, end: dt.date) -> int:
    """Replace [start, end] of marts.conversion_paths_top from core.conversion_paths."""
    select_sql = """
        select
            conversion_date as date,
            path,
            count(*) as conversions,
            sum(value) as value,
            bool_or(push_touch_count > 0) as contains_push,
            row_number() over (
                partition by conversion_date
                order by count(*) desc, sum(value) desc, path
            ) as path_rank
        from core.conversion_paths
        where conversion_date between $1 and $2
        group by conversion_date, path
        order by date, path_rank
    """
    return _replace_range(con, CONVERSION_PATHS_TOP, select_sql, start, end)


# Windows of marts.lookback_sensitivity, in hours.
SENSITIVITY_WINDOWS = {"1h": 1, "6h": 6, "1d": 24, "3d": 72, "7d": 168, "14d": 336, "30d": 720}


def build_lookback_sensitivity(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    start: dt.date,
    end: dt.date,
    touches: str = "core.touches",
) -> int:
    """Replace [start, end] of marts.lookback_sensitivity.

    One pass over each conversion's touches of the longest window keeps, per kind of touch, the
    age of the latest one; whether push is the last touch or an assist at a window then follows
    from comparing those ages with the window (SPEC 4.2's rules, with the window for lookback).
    `touches` is the touches relation attribution used (the recorded view when corrections are
    off), so the configured window agrees with the headline either way.
    """
    rule = settings.attribution.last_touch_rule
    impressions = "true" if settings.attribution.count_impression_assists else "false"
    longest = max(SENSITIVITY_WINDOWS.values())
    windows = ", ".join(f"('{name}', {hours})" for name, hours in SENSITIVITY_WINDOWS.items())
    lookbacks = ", ".join(
        f"('{name}', {d.lookback_days * 24})" for name, d in settings.conversions.items()
    )
    # The credited last touch: under last_non_direct, the latest non-Direct session or click
    # when the window holds one, else the latest Direct one (never push).
    if rule == "last_non_direct":
        push_last = "last_non_direct_age <= w.seconds and last_non_direct_is_push"
    else:
        push_last = "last_creditable_age <= w.seconds and last_creditable_is_push"
    select_sql = f"""
        with conversions as (
            select conversion_id, person_id, conversion_time, conversion_date, conversion_type
            from core.conversions
            where conversion_date between $1 and $2
        ),
        windowed as (
            select
                c.conversion_id,
                t.touch_id,
                t.touch_time,
                t.touch_type,
                t.is_push,
                t.channel,
                t.touch_type in ('session', 'push_click') as creditable,
                epoch(c.conversion_time) - epoch(t.touch_time) as age
            from conversions as c
            join {touches} as t
                on t.person_id = c.person_id
                and t.touch_time <= c.conversion_time
                and t.touch_time >= c.conversion_time - interval {longest} hour
        ),
        ages as (
            select
                conversion_id,
                min(age) filter (where is_push) as push_age,
                min(age) filter (where is_push and creditable) as click_age,
                min(age) filter (where touch_type = 'push_influenced') as influenced_age,
                min(age) filter (where touch_type = 'push_impression') as impression_age,
                min(age) filter (where creditable) as last_creditable_age,
                arg_max(is_push, (touch_time, touch_id)) filter (where creditable)
                    as last_creditable_is_push,
                min(age) filter (where creditable and channel <> 'Direct')
                    as last_non_direct_age,
                arg_max(is_push, (touch_time, touch_id))
                    filter (where creditable and channel <> 'Direct')
                    as last_non_direct_is_push
            from windowed
            group by conversion_id
        ),
        windows as (
            select name, hours, hours * 3600 as seconds
            from (values {windows}) as w(name, hours)
        ),
        lookbacks as (
            select * from (values {lookbacks}) as l(conversion_type, hours)
        ),
        judged as (
            select
                c.conversion_date,
                c.conversion_type,
                w.name,
                w.hours,
                coalesce({push_last}, false) as push_last,
                coalesce(a.push_age <= w.seconds, false) as push_in_window,
                coalesce(
                    a.click_age <= w.seconds
                    or a.influenced_age <= w.seconds
                    or ({impressions} and a.impression_age <= w.seconds),
                    false
                ) as headline_kind
            from conversions as c
            cross join windows as w
            left join ages as a
                using (conversion_id)
        )
        select
            j.conversion_date as date,
            j.conversion_type,
            j.name as lookback_window,
            j.hours as window_hours,
            j.hours = any_value(l.hours) as is_configured_window,
            count(*) as conversions,
            count(*) filter (where j.push_last) as push_last_touch_conversions,
            count(*) filter (where j.push_in_window and not j.push_last and j.headline_kind)
                as push_assisted_conversions
        from judged as j
        left join lookbacks as l
            using (conversion_type)
        group by j.conversion_date, j.conversion_type, j.name, j.hours
        order by date, conversion_type, window_hours
    """
    return _replace_range(con, LOOKBACK_SENSITIVITY, select_sql, start, end)
