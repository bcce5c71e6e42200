"""Channel misclassifications (SPEC 6) and the recorded-channel view of the touches (SPEC 3.3).

`core.touches` already corrects the commonest misclassification: a session a push open started
is folded into the open's push click whatever channel it was recorded as. This module looks at
the sessions as they were recorded, to show the team where their tracking goes wrong:

- `push_opened_not_push`: a session folded into a push open, recorded as another channel
  (Direct, Unassigned, ...): the app or the deep link lost the push's utm tags;
- `push_medium_unclassified`: a session whose utm_medium looks like push (push, notification,
  notif, fcm, apns, in any case, with any separator) that the rules did not classify as Mobile
  Push Notifications: the rules file is missing a medium the team uses;
- `campaign_opens_without_sessions`: a campaign with opens in a day (at least
  `checks.min_campaign_opens`) and no push session at all: opens are not followed by tracked
  sessions, so that campaign's tracking is broken.

It also builds the *recorded* view of the touches, what a tool without the open-to-session link
reports: the folded session is its own session touch with its recorded channel, and the open
stays a push click. `marts.channel_correction_daily` compares the attribution of both views, and
`attribution.use_corrected_channels: false` makes core.conversion_paths use the recorded one.

A session's recorded channel is recomputed with the same rules and the same inputs as
pipeline.touches (core.touches keeps only the first folded session's channel).
"""

from __future__ import annotations

import datetime as dt

import duckdb

from pipeline.attribution import path_roles
from pipeline.channels import classify_sql, load_rules, register_source_categories
from pipeline.settings import Settings
from pipeline.tables import (
    CHANNEL_CORRECTION_DAILY,
    CHANNEL_MISCLASSIFICATIONS,
    PUSH_CHANNEL,
    TOUCHES,
)
from pipeline.touches import current_touches

PUSH_OPENED_NOT_PUSH = "push_opened_not_push"
PUSH_MEDIUM_UNCLASSIFIED = "push_medium_unclassified"
CAMPAIGN_OPENS_WITHOUT_SESSIONS = "campaign_opens_without_sessions"
KINDS = (PUSH_OPENED_NOT_PUSH, PUSH_MEDIUM_UNCLASSIFIED, CAMPAIGN_OPENS_WITHOUT_SESSIONS)

# Tested on the medium lower-cased with every separator removed, so `Push-Notification`,
# `push_notif`, `FCM` and `web push` all match; `notification` contains `notif`.
PUSH_LOOKING_REGEX = "push|notif|fcm|apns"
SESSION_EVENTS = "('session_start', 'page_view', 'screen_view')"

SESSIONS_TABLE = "_mc_sessions"


def push_looking_sql(medium: str) -> str:
    """SQL: whether the medium expression looks like push."""
    return (
        f"regexp_matches(regexp_replace(lower(coalesce({medium}, '')), '[^a-z0-9]', '', 'g'), "
        f"'{PUSH_LOOKING_REGEX}')"
    )


def _folded_sessions_sql(tz: str) -> str:
    """Sessions folded into push clicks, as (click touch, session event) pairs, with the
    session's own event: the push click's event_ids hold its folded sessions' events."""
    return f"""
        with clicks as (
            select
                touch_id,
                person_id,
                touch_time,
                campaign_id,
                message_id,
                identity_rule,
                unnest(event_ids) as event_id
            from core.touches
            where touch_type = 'push_click'
                and touch_date between $first - 1 and $last
        ),
        session_events as (
            select *
            from staging.events
            where event_name in {SESSION_EVENTS}
                and event_date between $first - 1 and $last + 1
            qualify row_number() over (partition by event_id order by source) = 1
        )
        select
            e.event_id as session_event_id,
            e.event_time as session_time,
            (e.event_time at time zone '{tz}')::date as session_date,
            coalesce(e.session_id, e.event_id) as session_id,
            c.person_id,
            c.identity_rule,
            c.touch_id as click_touch_id,
            c.touch_time as open_time,
            c.campaign_id as open_campaign_id,
            e.platform,
            e.utm_source,
            e.utm_medium,
            e.utm_campaign,
            e.utm_content,
            e.utm_term,
            e.referrer,
            e.landing_url,
            e.click_id
        from clicks as c
        join session_events as e
            using (event_id)
    """


def count_push_opened_sessions(
    con: duckdb.DuckDBPyConnection, settings: Settings, start: dt.date, end: dt.date
) -> int:
    """Sessions started by a push open (folded into its click) on the days start..end."""
    sql = f"""
        with folded as ({_folded_sessions_sql(settings.reporting_timezone)})
        select count(*)
        from folded
        where session_date between $first and $last
    """
    return int(con.execute(sql, {"first": start, "last": end}).fetchall()[0][0])


def detected_push_as_direct_rate(
    con: duckdb.DuckDBPyConnection, settings: Settings, start: dt.date, end: dt.date
) -> float:
    """Share of the push-opened sessions of start..end that lost the push's tags (from the table).

    A session is counted when it was recorded as another channel than push with neither
    utm_source nor utm_medium: the push's tags never reached it. GA4's rules call such a
    session Direct, unless a referrer from another site happens to name a channel (a social
    session starting just after an open); that session is still counted, as the tags were lost.
    """
    opened = count_push_opened_sessions(con, settings, start, end)
    direct = con.execute(
        f"""
        select count(*)
        from {CHANNEL_MISCLASSIFICATIONS.qualified_name}
        where kind = '{PUSH_OPENED_NOT_PUSH}'
            and coalesce(utm_source, '') = ''
            and coalesce(utm_medium, '') = ''
            and date between ? and ?
        """,
        [start, end],
    ).fetchall()[0][0]
    return direct / opened if opened else 0.0


def build_session_channels(
    con: duckdb.DuckDBPyConnection, settings: Settings, first: dt.date, last: dt.date
) -> None:
    """Temp table _mc_sessions: every session of the days first..last with its recorded channel.

    A session is either its own touch in core.touches or folded into a push click
    (click_touch_id set). recorded_channel and recorded_rule are what the rules say of the
    session as it was recorded.
    """
    tz = settings.reporting_timezone
    register_source_categories(con)
    con.execute(
        f"""
        create or replace temp table _mc_session_inputs as
        with own_sessions as (
            select
                t.touch_id as session_event_id,
                t.touch_time as session_time,
                t.touch_date as session_date,
                t.session_id,
                t.person_id,
                t.identity_rule,
                null::varchar as click_touch_id,
                null::timestamptz as open_time,
                null::varchar as open_campaign_id
            from core.touches as t
            where t.touch_type = 'session'
                and t.touch_date between $first and $last
        ),
        own_session_events as (
            select
                s.*,
                e.platform,
                e.utm_source,
                e.utm_medium,
                e.utm_campaign,
                e.utm_content,
                e.utm_term,
                e.referrer,
                e.landing_url,
                e.click_id
            from own_sessions as s
            join staging.events as e
                on e.event_id = s.session_event_id
                and e.event_name in {SESSION_EVENTS}
            qualify row_number() over (partition by s.session_event_id order by e.source) = 1
        ),
        folded as ({_folded_sessions_sql(tz)})
        select *
        from own_session_events
        union all by name
        select *
        from folded
        where session_date between $first and $last
        """,
        {"first": first, "last": last},
    )
    classified = classify_sql(load_rules(settings.channel_rules_file), "_mc_session_inputs")
    con.execute(
        f"""
        create or replace temp table {SESSIONS_TABLE} as
        with classified as ({classified})
        select
            * exclude (channel, channel_rule),
            channel as recorded_channel,
            channel_rule as recorded_rule,
            {push_looking_sql("utm_medium")} as push_looking_medium
        from classified
        """
    )
    con.execute("drop table if exists _mc_session_inputs")


def build_misclassifications(
    con: duckdb.DuckDBPyConnection, settings: Settings, start: dt.date, end: dt.date
) -> dict[str, int]:
    """Replace start..end of quality.channel_misclassifications.

    Returns the populations the rates are taken over: push_opened_sessions,
    push_looking_sessions and campaign_days (campaign-days with at least min_campaign_opens
    opens), and the number of cases of each kind.
    """
    build_session_channels(con, settings, start, end)
    table = CHANNEL_MISCLASSIFICATIONS
    window_minutes = settings.attribution.push_open_session_window_minutes
    min_opens = settings.checks.min_campaign_opens
    con.execute(f"create schema if not exists {table.schema}")
    con.execute(table.create_sql())
    con.execute(f"delete from {table.qualified_name} where date between ? and ?", [start, end])
    columns = ", ".join(table.column_names)
    con.execute(
        f"""
        insert into {table.qualified_name} ({columns})
        with opened_not_push as (
            select
                session_date as date,
                '{PUSH_OPENED_NOT_PUSH}' as kind,
                session_event_id as case_id,
                click_touch_id as touch_id,
                session_id,
                person_id,
                open_campaign_id as campaign_id,
                recorded_channel,
                recorded_rule,
                '{PUSH_CHANNEL}' as suggested_channel,
                utm_source,
                utm_medium,
                (epoch_ms(session_time) - epoch_ms(open_time)) / 1000 as seconds_after_open,
                null::bigint as opens,
                [session_event_id, click_touch_id] as event_ids
            from {SESSIONS_TABLE}
            where click_touch_id is not null
                and recorded_channel <> '{PUSH_CHANNEL}'
        ),
        medium_unclassified as (
            select
                session_date as date,
                '{PUSH_MEDIUM_UNCLASSIFIED}' as kind,
                session_event_id as case_id,
                coalesce(click_touch_id, session_event_id) as touch_id,
                session_id,
                person_id,
                utm_campaign as campaign_id,
                recorded_channel,
                recorded_rule,
                '{PUSH_CHANNEL}' as suggested_channel,
                utm_source,
                utm_medium,
                null::double as seconds_after_open,
                null::bigint as opens,
                list_filter([session_event_id, click_touch_id], lambda x: x is not null)
                    as event_ids
            from {SESSIONS_TABLE}
            where push_looking_medium
                and recorded_channel <> '{PUSH_CHANNEL}'
        ),
        campaign_opens as (
            select
                touch_date as date,
                campaign_id,
                count(*) as opens,
                count(session_id) as opens_with_session,
                list(touch_id order by touch_time, touch_id) as open_event_ids
            from core.touches
            where touch_type = 'push_click'
                and campaign_id is not null
                and touch_date between $start and $end
            group by all
        ),
        tagged_push_sessions as (
            select
                touch_date as date,
                campaign_id,
                count(*) as push_sessions
            from core.touches
            where touch_type = 'session'
                and channel = '{PUSH_CHANNEL}'
                and touch_date between $start and $end
            group by all
        ),
        campaigns_without_sessions as (
            select
                o.date,
                '{CAMPAIGN_OPENS_WITHOUT_SESSIONS}' as kind,
                o.campaign_id as case_id,
                null as touch_id,
                null as session_id,
                null as person_id,
                o.campaign_id,
                null as recorded_channel,
                null as recorded_rule,
                '{PUSH_CHANNEL}' as suggested_channel,
                null as utm_source,
                null as utm_medium,
                null::double as seconds_after_open,
                o.opens,
                o.open_event_ids as event_ids
            from campaign_opens as o
            left join tagged_push_sessions as p
                using (date, campaign_id)
            where o.opens >= {min_opens}
                and o.opens_with_session = 0
                and coalesce(p.push_sessions, 0) = 0
        ),
        cases as (
            select *
            from opened_not_push
            union all by name
            select *
            from medium_unclassified
            union all by name
            select *
            from campaigns_without_sessions
        )
        select
            date,
            kind,
            case_id,
            touch_id,
            session_id,
            person_id,
            campaign_id,
            recorded_channel,
            recorded_rule,
            suggested_channel,
            utm_source,
            utm_medium,
            seconds_after_open,
            opens,
            case kind
                when '{PUSH_OPENED_NOT_PUSH}' then printf(
                    'session %s started %.0f s after push open %s of campaign %s, but was '
                    || 'recorded as %s (rule %s)',
                    case_id, seconds_after_open, touch_id, coalesce(campaign_id, '(none)'),
                    recorded_channel, recorded_rule
                )
                when '{PUSH_MEDIUM_UNCLASSIFIED}' then printf(
                    'session %s has utm_medium ''%s'' (utm_source ''%s''), which looks like '
                    || 'push, but rule %s classified it as %s',
                    case_id, utm_medium, coalesce(utm_source, ''), recorded_rule,
                    recorded_channel
                )
                else printf(
                    'campaign %s had %d push opens on %s (first open %s) and no session: none '
                    || 'started within %s min of an open, and no session tagged as push',
                    campaign_id, opens, date::varchar, event_ids[1], '{window_minutes:g}'
                )
            end as evidence,
            event_ids
        from cases
        order by date, kind, case_id
        """,
        {"start": start, "end": end},
    )
    populations = con.execute(
        f"""
        select
            count(*) filter (where click_touch_id is not null) as push_opened_sessions,
            count(*) filter (where push_looking_medium) as push_looking_sessions
        from {SESSIONS_TABLE}
        """
    ).fetchall()[0]
    campaign_days = con.execute(
        f"""
        with campaign_opens as (
            select touch_date, campaign_id
            from core.touches
            where touch_type = 'push_click'
                and campaign_id is not null
                and touch_date between ? and ?
            group by all
            having count(*) >= {min_opens}
        )
        select count(*)
        from campaign_opens
        """,
        [start, end],
    ).fetchall()[0][0]
    cases = dict(
        con.execute(
            f"""
            select kind, count(*)
            from {table.qualified_name}
            where date between ? and ?
            group by kind
            """,
            [start, end],
        ).fetchall()
    )
    return {
        "push_opened_sessions": int(populations[0]),
        "push_looking_sessions": int(populations[1]),
        "campaign_days": int(campaign_days),
        **{kind: int(cases.get(kind, 0)) for kind in KINDS},
    }


def build_recorded_touches(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    first: dt.date,
    last: dt.date,
    into: str = "_recorded_touches",
) -> str:
    """Temp table `into`: core.touches of first..last as recorded, without the correction.

    Every folded session is its own session touch with its recorded channel; the push click it
    was folded into stays, without that session. Returns the table's name.
    """
    build_session_channels(con, settings, first, last)
    columns = ", ".join(TOUCHES.column_names)
    con.execute(
        f"""
        create or replace temp table {into} as
        with folded as (
            select *
            from {SESSIONS_TABLE}
            where click_touch_id is not null
        ),
        folded_ids as (
            select
                click_touch_id,
                list(session_event_id) as session_event_ids
            from folded
            group by click_touch_id
        ),
        kept_touches as (
            select
                t.* exclude (event_ids, session_id, recorded_channel),
                list_filter(
                    t.event_ids,
                    lambda x: not list_contains(coalesce(f.session_event_ids, []), x)
                ) as event_ids,
                case when f.click_touch_id is null then t.session_id end as session_id,
                case
                    when f.click_touch_id is null then t.recorded_channel
                end as recorded_channel
            from core.touches as t
            left join folded_ids as f
                on f.click_touch_id = t.touch_id
            where t.touch_date between $first and $last
        ),
        session_touches as (
            select
                session_event_id as touch_id,
                person_id,
                session_time as touch_time,
                session_date as touch_date,
                'session' as touch_type,
                recorded_channel as channel,
                recorded_rule as channel_rule,
                null as recorded_channel,
                recorded_channel = '{PUSH_CHANNEL}' as is_push,
                case
                    when recorded_channel = '{PUSH_CHANNEL}'
                        then case when platform = 'web' then 'web' else 'app' end
                end as push_kind,
                coalesce(platform, 'unknown') as platform,
                utm_campaign as campaign_id,
                null as message_id,
                session_id,
                [session_event_id] as event_ids,
                identity_rule
            from folded
        )
        select {columns}
        from kept_touches
        union all by name
        select {columns}
        from session_touches
        """,
        {"first": first, "last": last},
    )
    return into


def build_channel_correction_daily(
    con: duckdb.DuckDBPyConnection, settings: Settings, start: dt.date, end: dt.date
) -> int:
    """Replace start..end of marts.channel_correction_daily: push's figures in both views."""
    # The recorded view must hold every touch the days' lookback windows reach.
    first = start - dt.timedelta(days=settings.max_lookback_days + 1)
    recorded = build_recorded_touches(con, settings, first, end)
    path_roles(con, settings.attribution, start, end, "core.touches", "_mc_paths_corrected")
    path_roles(con, settings.attribution, start, end, recorded, "_mc_paths_recorded")
    view = "corrected" if settings.attribution.use_corrected_channels else "recorded"
    table = CHANNEL_CORRECTION_DAILY
    con.execute(f"create schema if not exists {table.schema}")
    con.execute(table.create_sql())
    con.execute(f"delete from {table.qualified_name} where date between ? and ?", [start, end])
    con.execute(
        f"""
        insert into {table.qualified_name} ({", ".join(table.column_names)})
        select
            c.conversion_date as date,
            c.conversion_type,
            count(*) as conversions,
            count(*) filter (where c.push_role = 'last_touch') as push_last_touch_corrected,
            count(*) filter (where r.push_role = 'last_touch') as push_last_touch_recorded,
            count(*) filter (where c.is_push_assisted) as push_assisted_corrected,
            count(*) filter (where r.is_push_assisted) as push_assisted_recorded,
            count(*) filter (
                where c.push_role <> r.push_role
                    or c.last_touch_channel is distinct from r.last_touch_channel
            ) as changed_conversions,
            '{view}' as attribution_view
        from _mc_paths_corrected as c
        join _mc_paths_recorded as r
            using (conversion_id)
        group by all
        order by all
        """
    )
    for name in ("_mc_paths_corrected", "_mc_paths_recorded", recorded, SESSIONS_TABLE):
        con.execute(f"drop table if exists {name}")
    return con.execute(
        f"select count(*) from {table.qualified_name} where date between ? and ?", [start, end]
    ).fetchall()[0][0]


def attribution_touches(
    con: duckdb.DuckDBPyConnection, settings: Settings, first: dt.date, last: dt.date
) -> str:
    """The touches attribution reads for conversions of days up to `last` whose windows start
    on `first`: corrected (core.touches with today's persons) or, when the setting
    attribution.use_corrected_channels is off, as recorded. Returns the relation's name."""
    if settings.attribution.use_corrected_channels:
        return current_touches(con)
    # The recorded view: sessions a push open started keep their recorded channel.
    return build_recorded_touches(con, settings, first, last)
