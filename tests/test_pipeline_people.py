"""The whole job on hand-built people, each answer worked out by hand from SPEC 4.1 and 4.2.

Defaults apply: purchase lookback 7 days, last-touch rule last_non_direct, a session within 2
minutes after a push open is the open's own session, impression-only assists outside the
headline.
"""

import datetime as dt
import json

import pytest
from conftest import run_job

from pipeline.tables import ALL_TABLES

PUSH = "Mobile Push Notifications"
_counter = iter(range(1, 10_000))


def ev(name, time, **fields):
    return {
        "event_id": f"ev{next(_counter):04d}",
        "event_name": name,
        "event_time": f"2024-01-{time}Z",
        **fields,
    }


def message(
    mid,
    campaign,
    sent,
    *,
    user=None,
    device=None,
    opened=None,
    kind="app",
    platform="ios",
    delivered=True,
):
    ids = {k: v for k, v in (("user_id", user), ("device_id", device)) if v}
    common = {
        "message_id": mid,
        "campaign_id": campaign,
        "push_kind": kind,
        "platform": platform,
        **ids,
    }
    rows = [ev("push_sent", sent, **common)]
    if delivered:
        rows.append(ev("push_delivered", sent[:-2] + "05", **common))
    if opened:
        rows.append(ev("push_opened", opened, **common))
    return rows


def session(time, *, source=None, medium=None, **ids):
    utm = {k: v for k, v in (("utm_source", source), ("utm_medium", medium)) if v}
    return ev("session_start", time, session_id=f"s-{time}", platform="web", **utm, **ids)


def purchase(time, order, revenue, **ids):
    return ev("purchase", time, order_id=order, revenue=revenue, currency="USD", **ids)


PEOPLE = {
    # A push opened on day 8, then an email session and a purchase on day 9.
    "click_assist": [
        *message("m1", "cmp_a", "08T10:00:00", user="u1", device="d1", opened="08T10:05:00"),
        session("08T10:05:30", user_id="u1", device_id="d1"),  # the open's session, no utm
        session("09T12:00:00", source="newsletter", medium="email", user_id="u1"),
        purchase("09T12:10:00", "o1", 50, user_id="u1"),
    ],
    # Delivered, never opened; the person buys from organic search.
    "impression_only": [
        *message("m2", "cmp_a", "09T09:00:00", user="u2"),
        session("09T20:00:00", source="google", medium="organic", user_id="u2"),
        purchase("09T20:05:00", "o2", 30, user_id="u2"),
    ],
    # The open starts an app session recorded as Direct: one push touch, the last.
    "push_opened_direct": [
        *message("m3", "cmp_b", "10T07:59:00", user="u3", opened="10T08:00:00"),
        session("10T08:00:40", user_id="u3"),
        purchase("10T08:03:00", "o3", 20, user_id="u3"),
    ],
    # Open exactly 7 days before the purchase: inside the window.
    "just_inside": [
        *message("m4", "cmp_a", "03T11:00:00", user="u4", opened="03T12:00:00"),
        session("10T11:00:00", source="newsletter", medium="email", user_id="u4"),
        purchase("10T12:00:00", "o4", 10, user_id="u4"),
    ],
    # Open one second earlier than that: outside.
    "just_outside": [
        *message("m5", "cmp_a", "03T11:00:00", user="u5", opened="03T11:59:59"),
        session("10T11:00:00", source="newsletter", medium="email", user_id="u5"),
        purchase("10T12:00:00", "o5", 10, user_id="u5"),
    ],
    # Two users on one device: each device-only open belongs to whoever logged in last.
    "shared_device": [
        ev("identify", "05T09:00:00", user_id="u6a", device_id="dS"),
        *message("m6", "cmp_a", "05T09:59:00", device="dS", opened="05T10:00:00"),
        ev("identify", "06T09:00:00", user_id="u6b", device_id="dS"),
        *message("m7", "cmp_c", "06T09:59:00", device="dS", opened="06T10:00:00"),
        session("06T14:50:00", source="newsletter", medium="email", user_id="u6b"),
        purchase("06T15:00:00", "o6b", 40, user_id="u6b"),
        session("06T15:50:00", user_id="u6a"),  # Direct
        purchase("06T16:00:00", "o6a", 60, user_id="u6a"),
    ],
    # An anonymous web visitor buys, and logs in the next day: the purchase joins the person
    # whose phone opened a push that morning.
    "stitched_anonymous": [
        *message("m8", "cmp_a", "07T09:59:00", user="u7", device="d7", opened="07T10:00:00"),
        session("07T18:00:00", source="google", medium="cpc", anonymous_id="a7"),
        purchase("07T18:10:00", "o7", 70, anonymous_id="a7"),
        ev("identify", "08T09:00:00", user_id="u7", anonymous_id="a7"),
    ],
    # Two campaigns on one conversion: a click and a later impression.
    "two_campaigns": [
        *message("m9", "cmp_a", "08T09:59:00", user="u8", opened="08T10:00:00"),
        *message("m10", "cmp_b", "09T10:00:00", user="u8"),
        session("09T11:00:00", source="newsletter", medium="email", user_id="u8"),
        purchase("09T11:30:00", "o8", 80, user_id="u8"),
    ],
    # No session_start and no session id (as Segment exports): views 30 minutes apart are two
    # sessions; the first brought the newsletter.
    "sessionless_views": [
        ev("page_view", "10T08:00:00", utm_source="newsletter", utm_medium="email", user_id="u9"),
        ev("page_view", "10T08:10:00", user_id="u9"),
        ev("page_view", "10T09:00:00", user_id="u9"),
        purchase("10T09:05:00", "o9", 15, user_id="u9"),
    ],
    # A session id but no session_start (as Snowplow exports): its first view starts it.
    "session_id_without_start": [
        ev(
            "page_view",
            "10T13:00:00",
            session_id="sp1",
            utm_source="google",
            utm_medium="cpc",
            anonymous_id="a10",
        ),
        ev("page_view", "10T13:02:00", session_id="sp1", anonymous_id="a10"),
        purchase("10T13:03:00", "o10", 25, anonymous_id="a10"),
    ],
}


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("people")
    folder = tmp / "landing" / "canonical" / "people"
    folder.mkdir(parents=True)
    # Someone reads a page every day: a day with no event at all fails the run, as it should.
    daily = [ev("page_view", f"{day:02d}T06:00:00", user_id="reader") for day in range(1, 11)]
    rows = [row for person in PEOPLE.values() for row in person] + daily
    (folder / "events.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    con, failed = run_job(tmp, dt.date(2024, 1, 1), dt.date(2024, 1, 10))
    return con, failed


def path_of(con, order):
    cols = [
        "path",
        "push_role",
        "assist_kind",
        "is_push_assisted",
        "ga_assist",
        "last_touch_channel",
        "push_touch_count",
        "campaign_ids",
        "stitch_rules",
        "value",
        "hours_from_first_push",
        "hours_from_last_push",
        "push_kind",
    ]
    row = con.execute(
        f"select {', '.join(cols)} from core.conversion_paths where order_id = ?", [order]
    ).fetchall()
    assert len(row) == 1, f"{order}: {len(row)} paths"
    return dict(zip(cols, row[0], strict=True))


def test_only_the_shared_device_warning_fails(warehouse):
    _, failed = warehouse
    # dS is shared by u6a and u6b: the WARN check reports it. Both push-opened sessions (u1's
    # and u3's) carry no utm, so were recorded as Direct: the misclassification alert fires.
    assert failed == ["shared_devices", "push_opened_sessions_not_push"]


def test_click_assist(warehouse):
    con, _ = warehouse
    p = path_of(con, "o1")
    assert p["path"] == f"{PUSH} > Email"
    assert (p["push_role"], p["assist_kind"], p["is_push_assisted"]) == ("assist", "click", True)
    assert p["last_touch_channel"] == "Email"
    assert p["ga_assist"] is True
    assert p["push_touch_count"] == 1
    assert p["campaign_ids"] == ["cmp_a"]
    # Open at 08T10:05, purchase at 09T12:10: 26 h 5 min.
    assert p["hours_from_last_push"] == pytest.approx(26 + 5 / 60)
    assert p["push_kind"] == "app"
    # The open's own session is not a second touch; its recorded channel is kept.
    recorded = con.execute(
        "select recorded_channel, touch_type from core.touches where message_id = 'm1'"
    ).fetchall()
    assert recorded == [("Direct", "push_click")]


def test_impression_only_assist_is_reported_apart(warehouse):
    con, _ = warehouse
    p = path_of(con, "o2")
    assert p["path"] == f"{PUSH} (impression) > Organic Search"
    assert (p["push_role"], p["assist_kind"]) == ("assist", "impression")
    assert p["is_push_assisted"] is False
    assert p["ga_assist"] is False


def test_push_opened_session_recorded_as_direct(warehouse):
    con, _ = warehouse
    p = path_of(con, "o3")
    assert p["path"] == PUSH
    assert p["push_role"] == "last_touch"
    assert p["last_touch_channel"] == PUSH
    assert p["assist_kind"] is None


def test_lookback_edges(warehouse):
    con, _ = warehouse
    inside, outside = path_of(con, "o4"), path_of(con, "o5")
    assert (inside["path"], inside["push_role"]) == (f"{PUSH} > Email", "assist")
    assert inside["hours_from_first_push"] == pytest.approx(7 * 24)
    assert (outside["path"], outside["push_role"]) == ("Email", "none")


def test_shared_device_follows_the_latest_login(warehouse):
    con, _ = warehouse
    b, a = path_of(con, "o6b"), path_of(con, "o6a")
    assert b["campaign_ids"] == ["cmp_c"]
    assert (b["push_role"], b["assist_kind"]) == ("assist", "click")
    assert "shared_device" in b["stitch_rules"]
    # u6a: the open on day 5 and a Direct session; last_non_direct passes Direct over.
    assert a["path"] == f"{PUSH} > Direct"
    assert a["campaign_ids"] == ["cmp_a"]
    assert (a["push_role"], a["last_touch_channel"]) == ("last_touch", PUSH)


def test_stitched_anonymous_visitor(warehouse):
    con, _ = warehouse
    p = path_of(con, "o7")
    assert p["path"] == f"{PUSH} > Paid Search"
    assert (p["push_role"], p["assist_kind"]) == ("assist", "click")
    assert p["stitch_rules"] == ["anonymous_stitch"]


def test_two_campaigns_on_one_conversion(warehouse):
    con, _ = warehouse
    p = path_of(con, "o8")
    assert p["path"] == f"{PUSH} > {PUSH} (impression) > Email"
    assert p["campaign_ids"] == ["cmp_a", "cmp_b"]
    assert p["push_touch_count"] == 2
    assert p["assist_kind"] == "click"
    # Counted once in the daily total, once in each campaign's row.
    (day9,) = con.execute(
        "select sum(conversions) from marts.push_assisted_conversions_daily "
        "where date = '2024-01-09'"
    ).fetchall()[0]
    assert day9 == 3  # o1, o2, o8
    per_campaign = dict(
        con.execute(
            "select campaign_id, assisted_conversions from marts.push_campaign_daily "
            "where date = '2024-01-09' and assisted_conversions > 0"
        ).fetchall()
    )
    assert per_campaign == {"cmp_a": 2, "cmp_b": 1}  # o1 and o8; o8


def test_sessions_without_session_start(warehouse):
    con, _ = warehouse
    sessionless, with_id = path_of(con, "o9"), path_of(con, "o10")
    assert sessionless["path"] == "Email > Direct"
    assert sessionless["last_touch_channel"] == "Email"  # last_non_direct passes Direct over
    assert with_id["path"] == "Paid Search"


def test_daily_mart_totals(warehouse):
    con, _ = warehouse
    rows = con.execute(
        """
        select sum(conversions), sum(push_last_touch_conversions),
            sum(push_assisted_conversions), sum(impression_assisted_conversions),
            sum(assisted_revenue), sum(last_touch_revenue)
        from marts.push_assisted_conversions_daily
        """
    ).fetchall()[0]
    # 11 purchases; push last touch: o3, o6a; headline assists: o1, o4, o6b, o7, o8;
    # impression-only: o2.
    assert rows[:4] == (11, 2, 5, 1)
    assert float(rows[4]) == 50 + 10 + 40 + 70 + 80
    assert float(rows[5]) == 20 + 60


def test_assists_that_exist_only_through_stitching(warehouse):
    con, _ = warehouse
    row = con.execute(
        """
        select sum(stitched_assisted_conversions), sum(anonymous_stitch_assisted_conversions),
            sum(cross_device_assisted_conversions)
        from marts.push_assisted_conversions_daily
        """
    ).fetchall()[0]
    # o6b hangs on the shared-device rule, o7 on the anonymous visitor's later login.
    assert row == (2, 1, 0)


def test_late_login_reattributes_on_the_trailing_window(tmp_path):
    """An anonymous purchase on day 5 is re-attributed when the login arrives on day 7."""
    first = [
        *message("m20", "cmp_a", "04T09:59:00", user="u20", opened="04T10:00:00"),
        session("05T18:00:00", source="google", medium="organic", anonymous_id="a20"),
        purchase("05T18:10:00", "o20", 35, anonymous_id="a20"),
    ]
    late = [ev("identify", "07T09:00:00", user_id="u20", anonymous_id="a20")]
    daily = [ev("page_view", f"{day:02d}T06:00:00", user_id="reader") for day in range(1, 8)]
    folder = tmp_path / "landing" / "canonical"
    folder.mkdir(parents=True)
    (folder / "day1.jsonl").write_text("\n".join(json.dumps(r) for r in first + daily) + "\n")
    con, _ = run_job(tmp_path, dt.date(2024, 1, 1), dt.date(2024, 1, 6))
    assert path_of(con, "o20")["push_role"] == "none"
    con.close()
    # The login lands two days later; the nightly run re-runs the trailing three days.
    (folder / "day7.jsonl").write_text("\n".join(json.dumps(r) for r in late) + "\n")
    con, _ = run_job(tmp_path, dt.date(2024, 1, 5), dt.date(2024, 1, 7))
    p = path_of(con, "o20")
    assert (p["push_role"], p["assist_kind"]) == ("assist", "click")
    assert p["stitch_rules"] == ["anonymous_stitch"]
    con.close()


def test_lookback_sensitivity(warehouse):
    con, _ = warehouse
    rows = con.execute(
        """
        select lookback_window, push_assisted_conversions, push_last_touch_conversions,
            is_configured_window
        from marts.lookback_sensitivity
        where date = '2024-01-10' and conversion_type = 'purchase'
        order by window_hours
        """
    ).fetchall()
    # Day 10: o3's push is the last touch 3 minutes before; o4's open is exactly 7 days old;
    # o5's is 7 days and a second old; o9 and o10 saw no push.
    assert rows == [
        ("1h", 0, 1, False),
        ("6h", 0, 1, False),
        ("1d", 0, 1, False),
        ("3d", 0, 1, False),
        ("7d", 1, 1, True),
        ("14d", 2, 1, False),
        ("30d", 2, 1, False),
    ]


def test_channel_attribution_and_top_paths(warehouse):
    con, _ = warehouse
    linear = dict(
        con.execute(
            "select channel, credited_conversions from marts.channel_attribution_daily "
            "where date = '2024-01-10' and model = 'linear'"
        ).fetchall()
    )
    # o3 push; o4 push > Email; o5 Email; o9 Email > Direct; o10 Paid Search.
    assert linear == pytest.approx({PUSH: 1.5, "Email": 2.0, "Direct": 0.5, "Paid Search": 1.0})
    top = con.execute(
        "select path_rank, path, conversions, value, contains_push "
        "from marts.conversion_paths_top where date = '2024-01-10' order by path_rank"
    ).fetchall()
    assert [(rank, path, float(value), push) for rank, path, _, value, push in top] == [
        (1, "Paid Search", 25.0, False),
        (2, PUSH, 20.0, True),
        (3, "Email > Direct", 15.0, False),
        (4, "Email", 10.0, False),
        (5, f"{PUSH} > Email", 10.0, True),
    ]


def test_campaign_funnel(warehouse):
    con, _ = warehouse
    row = con.execute(
        "select sends, deliveries, opens, open_rate from marts.push_campaign_daily "
        "where date = '2024-01-03' and campaign_id = 'cmp_a'"
    ).fetchall()
    assert row == [(2, 2, 2, 1.0)]  # m4 and m5


def test_rerunning_a_day_changes_nothing(tmp_path):
    """Re-materializing one day replaces its slice with the same rows and leaves the rest."""
    folder = tmp_path / "landing" / "canonical"
    folder.mkdir(parents=True)
    daily = [ev("page_view", f"{day:02d}T06:00:00", user_id="reader") for day in range(1, 11)]
    rows = [row for person in PEOPLE.values() for row in person] + daily
    (folder / "events.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    tables = [f"{t.schema}.{t.name}" for t in ALL_TABLES]

    def snapshot(con):
        return {t: sorted(map(repr, con.execute(f"select * from {t}").fetchall())) for t in tables}

    con, _ = run_job(tmp_path, dt.date(2024, 1, 1), dt.date(2024, 1, 10))
    before = snapshot(con)
    con.close()
    con, _ = run_job(tmp_path, dt.date(2024, 1, 9), dt.date(2024, 1, 9))
    after = snapshot(con)
    con.close()
    for table in tables:
        assert after[table] == before[table], table
