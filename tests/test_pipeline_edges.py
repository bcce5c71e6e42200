"""Odd but real input, run through the whole job day by day as a data team runs it."""

import datetime as dt
import json

from conftest import run_job
from test_pipeline_people import PUSH, ev, message, path_of, purchase, session


def land(tmp_path, name, rows, days=range(1, 11)):
    folder = tmp_path / "landing" / "canonical"
    folder.mkdir(parents=True, exist_ok=True)
    # Someone reads a page every day: a day with no event at all fails the run, as it should.
    daily = [ev("page_view", f"{day:02d}T06:00:00", user_id=f"reader-{name}") for day in days]
    (folder / f"{name}.jsonl").write_text("\n".join(json.dumps(r) for r in rows + daily) + "\n")


def test_a_later_login_reaches_touches_built_on_earlier_runs(tmp_path):
    # Day 1: a device, not logged in, opens a push. Day 5: it logs in as u1, who then buys.
    land(
        tmp_path,
        "stitch",
        [
            *message("m1", "cmp_a", "01T09:59:00", device="d1", opened="01T10:00:00"),
            ev("identify", "05T09:00:00", user_id="u1", device_id="d1"),
            session("05T10:00:00", source="newsletter", medium="email", user_id="u1"),
            purchase("05T10:05:00", "o1", 30, user_id="u1"),
        ],
    )
    con, _ = run_job(tmp_path, dt.date(2024, 1, 1), dt.date(2024, 1, 2))
    con.close()
    # The nightly runs go on without rebuilding day 1's touches.
    con, _ = run_job(tmp_path, dt.date(2024, 1, 3), dt.date(2024, 1, 5))
    p = path_of(con, "o1")
    assert p["path"] == f"{PUSH} > Email"
    assert (p["push_role"], p["assist_kind"]) == ("assist", "click")
    assert p["stitch_rules"] == ["cross_device"]


def test_a_broadcast_message_id_is_one_message_per_person(tmp_path):
    # Three people get the same broadcast id; only Bob opens it.
    rows = []
    for user, opened in (("alice", None), ("bob", "02T10:10:00"), ("carol", None)):
        rows += message("m_broadcast", "cmp_b", "02T10:00:00", user=user, opened=opened)
        rows += [
            session("03T12:00:00", source="newsletter", medium="email", user_id=user),
            purchase("03T12:05:00", f"o-{user}", 10, user_id=user),
        ]
    land(tmp_path, "broadcast", rows)
    con, failed = run_job(tmp_path, dt.date(2024, 1, 1), dt.date(2024, 1, 3))
    kinds = {o: path_of(con, o)["assist_kind"] for o in ("o-alice", "o-bob", "o-carol")}
    assert kinds == {"o-alice": "impression", "o-bob": "click", "o-carol": "impression"}
    funnel = con.execute(
        "select sends, deliveries, opens from marts.push_campaign_daily "
        "where campaign_id = 'cmp_b' and date = '2024-01-02'"
    ).fetchall()
    assert funnel == [(3, 3, 1)]
    assert "one_touch_per_message" not in failed


def test_pushes_without_a_message_id_are_one_message_per_campaign_and_day(tmp_path):
    rows = [
        {k: v for k, v in r.items() if k != "message_id"}
        for r in message("m1", "cmp_c", "02T09:00:00", user="u1", opened="02T09:30:00")
    ]
    rows += [
        session("02T12:00:00", source="newsletter", medium="email", user_id="u1"),
        purchase("02T12:05:00", "o1", 10, user_id="u1"),
    ]
    land(tmp_path, "nomsg", rows)
    con, _ = run_job(tmp_path, dt.date(2024, 1, 1), dt.date(2024, 1, 2))
    p = path_of(con, "o1")
    assert p["path"] == f"{PUSH} > Email"
    assert p["push_touch_count"] == 1


def test_a_late_open_moves_the_touch_and_keeps_one_per_message(tmp_path):
    # Delivered on day 1; the open lands in a later file, on day 4.
    land(tmp_path, "sent", message("m1", "cmp_a", "01T09:00:00", user="u1"))
    con, failed = run_job(tmp_path, dt.date(2024, 1, 1), dt.date(2024, 1, 3))
    con.close()
    opened = [
        ev(
            "push_opened",
            "04T20:00:00",
            message_id="m1",
            campaign_id="cmp_a",
            user_id="u1",
            push_kind="app",
            platform="ios",
        )
    ]
    land(tmp_path, "opened", opened, days=[])
    for start in (2, 3):  # two nightly runs of the trailing window
        con, failed = run_job(tmp_path, dt.date(2024, 1, start), dt.date(2024, 1, start + 2))
        touches = con.execute(
            "select touch_type, touch_date from core.touches where message_id = 'm1'"
        ).fetchall()
        con.close()
        assert touches == [("push_click", dt.date(2024, 1, 4))]
        assert "one_touch_per_message" not in failed


def test_junk_order_ids_and_subscription_renewals_are_separate_conversions(tmp_path):
    rows = [purchase("02T10:00:00", "0", 10, user_id=u) for u in ("a", "b", "c")]
    rows += [
        {**ev("page_view", "02T11:00:00", user_id="e"), "event_time": "2099-01-01T00:00:00Z"},
        ev("subscription_start", "02T11:00:00", order_id="sub_1", revenue=5, user_id="d"),
        ev("subscription_renewal", "03T11:00:00", order_id="sub_1", revenue=5, user_id="d"),
    ]
    land(tmp_path, "orders", rows)
    # A lookup table landed among Segment's event tables: rejected whole, named every run.
    (tmp_path / "landing" / "segment").mkdir()
    (tmp_path / "landing" / "segment" / "referrers.csv").write_text("host,medium\na.com,ref\n")
    # One quarantined row among so few is a high rate: allow it here.
    lenient = {"quarantine_rate": {"warn": 0.5, "error": 0.9}}
    con, failed = run_job(tmp_path, dt.date(2024, 1, 1), dt.date(2024, 1, 3), checks=lenient)
    counts = dict(
        con.execute("select conversion_type, count(*) from core.conversions group by 1").fetchall()
    )
    assert counts == {"purchase": 3, "subscription": 2}
    assert "unique_conversions" not in failed
    # The row dated 2099 falls on no day a run covers: the WARN check says so on every run.
    assert "no_future_events" in failed
    assert "files_without_events" in failed


def test_an_open_that_does_not_repeat_its_campaign_counts_in_the_funnel(tmp_path):
    rows = message("m1", "cmp_a", "02T09:00:00", user="u1")
    rows.append(ev("push_opened", "02T09:30:00", message_id="m1", user_id="u1", push_kind="app"))
    land(tmp_path, "opens", rows)
    con, _ = run_job(tmp_path, dt.date(2024, 1, 1), dt.date(2024, 1, 2))
    assert con.execute(
        "select sends, deliveries, opens, open_rate from marts.push_campaign_daily "
        "where campaign_id = 'cmp_a'"
    ).fetchall() == [(1, 1, 1, 1.0)]
