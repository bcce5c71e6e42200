"""Metric tables built straight from small core and staging tables, without the whole job."""

import datetime as dt

import duckdb

from pipeline.marts import build_push_campaign_daily
from pipeline.settings import Settings
from pipeline.tables import CONVERSION_PATHS, EVENT_PERSONS, STAGING_EVENTS, TOUCHES

DAY = dt.date(2024, 1, 5)


def _warehouse(push_events: list[tuple]) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("set TimeZone = 'UTC'")
    for table in (STAGING_EVENTS, EVENT_PERSONS, CONVERSION_PATHS, TOUCHES):
        con.execute(f"create schema if not exists {table.schema}")
        con.execute(table.create_sql())
    con.executemany(
        """
        insert into staging.events (
            event_id, source, event_time, event_date, event_name, campaign_id, message_id,
            push_kind
        )
        values (?, ?, ?::timestamptz, ?::timestamptz::date, ?, ?, ?, 'app')
        """,
        [(eid, source, ts, ts, *rest) for eid, source, ts, *rest in push_events],
    )
    # One person per message here: the funnel counts a message per person.
    con.execute(
        """
        insert into core.event_persons
        select event_id, source, event_date, 'p-' || coalesce(message_id, event_id), 'known_user'
        from staging.events
        """
    )
    return con


def test_campaign_funnel_counts_fcm_messages_that_report_no_send():
    """FCM, read from the GA4 export, logs deliveries and opens but no send: its messages are
    sent all the same, on the day of their first event, next to Braze's send-based funnel."""
    con = _warehouse(
        [
            # Braze: a send (no bounce, so delivered) opened an hour later; a bounced send.
            ("b1", "braze", "2024-01-05 09:00:00+00", "push_sent", "cmp_braze", "d1:u1"),
            ("b2", "braze", "2024-01-05 10:00:00+00", "push_opened", "cmp_braze", "d1:u1"),
            ("b3", "braze", "2024-01-05 09:00:00+00", "push_sent", "cmp_braze", "d1:u2"),
            ("b4", "braze", "2024-01-05 09:00:05+00", "push_bounced", "cmp_braze", "d1:u2"),
            # FCM: one message received and opened, one received only, and one received late
            # on the day before and opened on this day (its funnel day is the day before).
            ("f1", "ga4", "2024-01-05 12:00:01+00", "push_delivered", "fcm_deals", "m7:a1"),
            ("f2", "ga4", "2024-01-05 12:30:00+00", "push_opened", "fcm_deals", "m7:a1"),
            ("f3", "ga4", "2024-01-05 12:00:03+00", "push_delivered", "fcm_deals", "m7:a2"),
            ("f4", "ga4", "2024-01-04 23:59:00+00", "push_delivered", "fcm_deals", "m6:a3"),
            ("f5", "ga4", "2024-01-05 08:00:00+00", "push_opened", "fcm_deals", "m6:a3"),
        ]
    )
    build_push_campaign_daily(con, Settings(), DAY - dt.timedelta(days=1), DAY)
    rows = con.execute(
        """
        select date, campaign_id, sends, deliveries, delivery_rate, opens, open_rate
        from marts.push_campaign_daily
        order by date, campaign_id
        """
    ).fetchall()
    assert rows == [
        (DAY - dt.timedelta(days=1), "fcm_deals", 1, 1, 1.0, 1, 1.0),
        (DAY, "cmp_braze", 2, 1, 0.5, 1, 1.0),
        (DAY, "fcm_deals", 2, 2, 1.0, 1, 0.5),
    ]
