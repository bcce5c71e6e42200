"""Touches: sessions with their channel, and one push touch per message (SPEC 3.3).

Sessions are the `session_start` events; for exports without them, the first view of each
session id starts it, and views with no session id at all are cut into sessions by inactivity.

A message that was opened is a click touch at its first open; one with an influenced open and no
open is an influenced touch; one delivered (or sent and not bounced: Braze reports sends, not
deliveries) and never opened is an impression at delivery. A session that starts within the
push-open window after an open of the same person is the session that open started: it is folded
into the click touch (its recorded channel is kept beside it), not counted a second time.
"""

from __future__ import annotations

import datetime as dt

import duckdb

from pipeline.channels import classify_sql, load_rules, register_source_categories
from pipeline.settings import Settings
from pipeline.tables import PUSH_CHANNEL, TOUCHES

# Push events of a message can be days apart (sent on Monday, opened on Tuesday); a message is
# judged on all its events within this margin around the days being built.
MESSAGE_MARGIN_DAYS = 7

# The usual web-analytics rule for exports that carry no session: 30 minutes of inactivity.
SESSION_TIMEOUT_MINUTES = 30

PUSH_EVENTS = (
    "push_sent",
    "push_delivered",
    "push_bounced",
    "push_opened",
    "push_influenced_open",
)


def message_key_sql(settings: Settings, event: str = "e", person: str = "p") -> str:
    """SQL for the key of the push message an event belongs to: one send to one person.

    Message ids are shared by a whole broadcast in some exports, and junk ids ('0', 'null') by
    everything, so the person is part of the key. Without a message id, a person's pushes of
    one campaign on one day are taken as one message.
    """
    junk = ", ".join(
        "'" + v.lower().replace("'", "''") + "'" for v in settings.identity.junk_values
    )
    return f"""concat_ws(
        '|',
        {person}.person_id,
        coalesce(
            case when lower(trim({event}.message_id)) not in ({junk}) then {event}.message_id end,
            'campaign:' || {event}.campaign_id || ':' || {event}.event_date::varchar,
            'event:' || {event}.event_id
        )
    )"""


def build_touches(
    con: duckdb.DuckDBPyConnection, settings: Settings, start: dt.date, end: dt.date
) -> dict[str, int]:
    """Replace the [start, end] days of `core.touches` from staging events and their persons."""
    rules = load_rules(settings.channel_rules_file)
    register_source_categories(con)
    window_seconds = settings.attribution.push_open_session_window_minutes * 60
    tz = settings.reporting_timezone
    margin = {
        "margin_start": start - dt.timedelta(days=MESSAGE_MARGIN_DAYS),
        "margin_end": end + dt.timedelta(days=MESSAGE_MARGIN_DAYS),
    }
    # Sessions from the day before are read too: an open late on one day can start a session
    # just after midnight.
    con.execute(
        f"""
        create or replace temp table session_events as
        with activity as (
            select
                e.*,
                p.person_id,
                p.identity_rule
            from staging.events as e
            join core.event_persons as p
                using (source, event_id)
            where e.event_name in ('session_start', 'page_view', 'screen_view')
                and e.event_date between $start - 1 and $end
        ),
        recorded_sessions as (
            select distinct source, session_id
            from activity
            where event_name = 'session_start'
                and session_id is not null
        ),
        -- Exports without session_start events (Snowplow) still carry a session id: the first
        -- view of each such session starts it.
        sessions_from_ids as (
            select a.*
            from activity as a
            anti join recorded_sessions as r
                using (source, session_id)
            where a.session_id is not null
            qualify row_number() over (
                partition by a.source, a.session_id
                order by a.event_time, a.event_id
            ) = 1
        ),
        -- Exports with no session at all (Segment): a view starts a session after
        -- {SESSION_TIMEOUT_MINUTES} minutes of inactivity, or when it brings a new campaign.
        unsessioned as (
            select
                *,
                lag(event_time) over by_person as previous_time,
                lag(concat_ws('/', utm_source, utm_medium, utm_campaign)) over by_person
                    as previous_campaign
            from activity
            where session_id is null
                and event_name <> 'session_start'
            window by_person as (partition by person_id, source order by event_time, event_id)
        ),
        sessions_from_gaps as (
            select * exclude (previous_time, previous_campaign)
            from unsessioned
            where previous_time is null
                or event_time > previous_time + interval {SESSION_TIMEOUT_MINUTES} minute
                or (
                    coalesce(utm_source, utm_medium, utm_campaign) is not null
                    and concat_ws('/', utm_source, utm_medium, utm_campaign)
                        <> previous_campaign
                )
        ),
        starts as (
            select * from activity where event_name = 'session_start'
            union all by name
            select * from sessions_from_ids
            union all by name
            select * from sessions_from_gaps
        )
        select
            event_id,
            event_time,
            coalesce(session_id, event_id) as session_id,
            platform,
            utm_source,
            utm_medium,
            utm_campaign,
            utm_content,
            utm_term,
            referrer,
            landing_url,
            click_id,
            person_id,
            identity_rule
        from starts
        """,
        {"start": start, "end": end},
    )
    classified = classify_sql(rules, "session_events")
    con.execute(f"create or replace temp table classified_sessions as {classified}")
    con.execute(
        f"""
        create or replace temp table push_messages as
        with message_events as (
            select
                {message_key_sql(settings)} as message_key,
                e.*,
                p.person_id,
                p.identity_rule
            from staging.events as e
            join core.event_persons as p
                using (source, event_id)
            where e.event_name in ({", ".join(f"'{n}'" for n in PUSH_EVENTS)})
                and e.event_date between $margin_start and $margin_end
        ),
        firsts as (
            select
                message_key,
                arg_min(event_id, event_time) filter (where event_name = 'push_opened')
                    as open_event_id,
                min(event_time) filter (where event_name = 'push_opened') as open_time,
                arg_min(event_id, event_time) filter (where event_name = 'push_influenced_open')
                    as influenced_event_id,
                min(event_time) filter (where event_name = 'push_influenced_open')
                    as influenced_time,
                arg_min(event_id, event_time) filter (where event_name = 'push_delivered')
                    as delivered_event_id,
                min(event_time) filter (where event_name = 'push_delivered') as delivered_time,
                arg_min(event_id, event_time) filter (where event_name = 'push_sent')
                    as sent_event_id,
                min(event_time) filter (where event_name = 'push_sent') as sent_time,
                bool_or(event_name = 'push_bounced') as bounced,
                list(event_id order by event_time, event_id) as event_ids,
                any_value(campaign_id) filter (where campaign_id is not null) as campaign_id,
                any_value(message_id) as message_id,
                any_value(push_kind) filter (where push_kind is not null) as push_kind,
                any_value(platform) filter (where platform is not null) as platform
            from message_events
            group by message_key
        ),
        typed as (
            select
                *,
                case
                    when open_time is not null then 'push_click'
                    when influenced_time is not null then 'push_influenced'
                    when delivered_time is not null or (sent_time is not null and not bounced)
                        then 'push_impression'
                end as touch_type
            from firsts
        )
        select
            t.*,
            case t.touch_type
                when 'push_click' then t.open_event_id
                when 'push_influenced' then t.influenced_event_id
                else coalesce(t.delivered_event_id, t.sent_event_id)
            end as touch_id,
            case t.touch_type
                when 'push_click' then t.open_time
                when 'push_influenced' then t.influenced_time
                else coalesce(t.delivered_time, t.sent_time)
            end as touch_time
        from typed as t
        where t.touch_type is not null
        """,
        margin,
    )
    con.execute(
        f"""
        create or replace temp table built_touches as
        with push_touches as (
            select
                m.touch_id,
                p.person_id,
                p.identity_rule,
                m.touch_time,
                m.touch_type,
                m.campaign_id,
                m.message_id,
                coalesce(m.push_kind, case when m.platform = 'web' then 'web' else 'app' end)
                    as push_kind,
                coalesce(m.platform, 'unknown') as platform,
                m.event_ids
            from push_messages as m
            join core.event_persons as p
                on p.event_id = m.touch_id
        ),
        session_links as (
            -- The open that started each session: the latest open of the same person at most
            -- the window before it.
            select
                s.event_id as session_event_id,
                arg_max(c.touch_id, c.touch_time) as click_touch_id
            from classified_sessions as s
            join push_touches as c
                on c.person_id = s.person_id
                and c.touch_type = 'push_click'
                and s.event_time >= c.touch_time
                and s.event_time <= c.touch_time + to_seconds({window_seconds})
            group by s.event_id
        ),
        first_linked_session as (
            select
                l.click_touch_id,
                arg_min(s.event_id, s.event_time) as session_event_id,
                arg_min(s.session_id, s.event_time) as session_id,
                arg_min(s.channel, s.event_time) as recorded_channel
            from session_links as l
            join classified_sessions as s
                on s.event_id = l.session_event_id
            group by l.click_touch_id
        ),
        linked_session_ids as (
            select click_touch_id, list(session_event_id order by session_event_id) as ids
            from session_links
            group by click_touch_id
        )
        select
            s.event_id as touch_id,
            s.person_id,
            s.event_time as touch_time,
            'session' as touch_type,
            s.channel,
            s.channel_rule,
            null as recorded_channel,
            s.channel = '{PUSH_CHANNEL}' as is_push,
            case
                when s.channel = '{PUSH_CHANNEL}'
                    then case when s.platform = 'web' then 'web' else 'app' end
            end as push_kind,
            coalesce(s.platform, 'unknown') as platform,
            s.utm_campaign as campaign_id,
            null as message_id,
            s.session_id,
            [s.event_id] as event_ids,
            s.identity_rule
        from classified_sessions as s
        anti join session_links as l
            on l.session_event_id = s.event_id
        union all
        select
            c.touch_id,
            c.person_id,
            c.touch_time,
            c.touch_type,
            '{PUSH_CHANNEL}' as channel,
            'push_event' as channel_rule,
            f.recorded_channel,
            true as is_push,
            c.push_kind,
            c.platform,
            c.campaign_id,
            c.message_id,
            f.session_id,
            list_concat(c.event_ids, coalesce(l.ids, [])) as event_ids,
            c.identity_rule
        from push_touches as c
        left join first_linked_session as f
            on f.click_touch_id = c.touch_id
        left join linked_session_ids as l
            on l.click_touch_id = c.touch_id
        """
    )
    con.execute("create schema if not exists core")
    con.execute(TOUCHES.create_sql())
    columns = ", ".join(TOUCHES.column_names)
    select_columns = ", ".join(
        f"(touch_time at time zone '{tz}')::date as touch_date" if c == "touch_date" else c
        for c in TOUCHES.column_names
    )
    # Delete then insert: re-running a day replaces that day's touches. A message's touch can
    # move to another day when a late open arrives (an impression on Monday becomes a click on
    # Thursday): its stale touch on the other day is removed too, so a message is never counted
    # twice.
    con.execute("delete from core.touches where touch_date between ? and ?", [start, end])
    con.execute(
        """
        delete from core.touches as t
        using built_touches as b
        where t.message_id = b.message_id
            and t.person_id = b.person_id
            and t.touch_id <> b.touch_id
            and b.message_id is not null
        """
    )
    con.execute(
        f"""
        insert into core.touches ({columns})
        select {select_columns}
        from built_touches
        where (touch_time at time zone '{tz}')::date between ? and ?
        order by touch_time, touch_id
        """,
        [start, end],
    )
    rows = con.execute(
        """
        select touch_type, count(*)
        from core.touches
        where touch_date between ? and ?
        group by 1
        """,
        [start, end],
    ).fetchall()
    return {touch_type: int(n) for touch_type, n in rows}


def current_touches(con: duckdb.DuckDBPyConnection, name: str = "current_touches") -> str:
    """A temp view of core.touches with each touch's person as the identity graph has it now.

    Identity is rebuilt on every run, so a login today can move last week's push open to
    another person; that week's touches are not rebuilt by today's run. Reading touches through
    this view lets a conversion's path find them anyway. Returns the view's name.
    """
    con.execute(
        f"""
        create or replace temp view {name} as
        with persons_now as (
            select
                event_id,
                any_value(person_id) as person_id,
                any_value(identity_rule) as identity_rule
            from core.event_persons
            group by event_id
            -- An id two sources share cannot say which event it is: keep the stored person.
            having count(distinct person_id) = 1
        )
        select
            t.* replace (
                coalesce(p.person_id, t.person_id) as person_id,
                coalesce(p.identity_rule, t.identity_rule) as identity_rule
            )
        from core.touches as t
        left join persons_now as p
            on p.event_id = t.touch_id
        """
    )
    return name
