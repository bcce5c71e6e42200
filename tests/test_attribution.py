"""Conversion paths, push roles and heuristic credits on hand-built touches.

Every expected value is worked out by hand from the touches each test writes; the conversion is
at CONVERSION_TIME unless a test says otherwise.
"""

from __future__ import annotations

import datetime as dt
import json

import duckdb
import pytest

from pipeline.attribution import HEURISTIC_MODELS, attribute_paths, build_paths
from pipeline.cli import main
from pipeline.models import DATA_DRIVEN_MODELS
from pipeline.settings import AttributionSettings
from pipeline.tables import ATTRIBUTION_CREDITS, CONVERSION_PATHS, CONVERSIONS, TOUCHES

PUSH = "Mobile Push Notifications"
CONVERSION_TIME = dt.datetime(2024, 3, 10, 12, 0, tzinfo=dt.UTC)
DAY = CONVERSION_TIME.date()


@pytest.fixture
def con():
    connection = duckdb.connect()
    connection.execute("create schema core")
    connection.execute(TOUCHES.create_sql())
    connection.execute(CONVERSIONS.create_sql())
    yield connection
    connection.close()


def touch(
    con,
    touch_id: str,
    before: dt.timedelta,
    touch_type: str = "session",
    channel: str | None = None,
    person: str = "p1",
    campaign: str | None = None,
    push_kind: str | None = None,
    identity_rule: str = "known_user",
):
    """Add a touch `before` the conversion time; push touch types default to the push channel."""
    channel = channel or (PUSH if touch_type.startswith("push_") else "Direct")
    when = CONVERSION_TIME - before
    con.execute(
        """
        insert into core.touches (
            touch_id, person_id, touch_time, touch_date, touch_type, channel, is_push,
            push_kind, campaign_id, identity_rule
        )
        values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
        """,
        [
            touch_id,
            person,
            when,
            when.date(),
            touch_type,
            channel,
            channel == PUSH,
            push_kind,
            campaign,
            identity_rule,
        ],
    )


def conversion(
    con,
    conversion_id: str = "cv1",
    person: str = "p1",
    value: float = 100.0,
    lookback_days: int = 7,
    when: dt.datetime = CONVERSION_TIME,
    identity_rule: str = "known_user",
):
    con.execute(
        """
        insert into core.conversions (
            conversion_id, conversion_event_id, person_id, conversion_type, event_name,
            conversion_time, conversion_date, value, currency, platform, lookback_days,
            identity_rule
        )
        values (?, ?, ?, 'purchase', 'purchase', ?, ?, ?, 'EUR', 'ios', ?, ?)
        """,
        [
            conversion_id,
            conversion_id,
            person,
            when,
            when.date(),
            value,
            lookback_days,
            identity_rule,
        ],
    )


def run(con, start: dt.date = DAY, end: dt.date = DAY, **settings) -> dict:
    return build_paths(con, AttributionSettings(**settings), start, end)


def path_row(con, conversion_id: str = "cv1") -> dict:
    cursor = con.execute(
        "select * from core.conversion_paths where conversion_id = ?", [conversion_id]
    )
    names = [d[0] for d in cursor.description]
    rows = cursor.fetchall()
    assert len(rows) == 1
    return dict(zip(names, rows[0], strict=True))


def credits(con, model: str, conversion_id: str = "cv1") -> list[tuple]:
    """(touch_id, position, channel, credit) of one model, in path order."""
    return con.execute(
        """
        select touch_id, position, channel, credit
        from core.attribution_credits
        where conversion_id = ?
            and model = ?
        order by position
        """,
        [conversion_id, model],
    ).fetchall()


def hours(n: float) -> dt.timedelta:
    return dt.timedelta(hours=n)


def days(n: float) -> dt.timedelta:
    return dt.timedelta(days=n)


def test_push_click_then_email_is_a_click_assist(con):
    touch(con, "push", days(3), "push_click", campaign="c1", push_kind="app")
    touch(con, "email", days(1), "session", "Email")
    conversion(con)
    counts = run(con)
    row = path_row(con)
    assert row["path"] == f"{PUSH} > Email"
    assert row["touch_event_ids"] == ["push", "email"]
    assert row["last_touch_channel"] == "Email"
    assert row["last_touch_id"] == "email"
    assert row["push_role"] == "assist"
    assert row["assist_kind"] == "click"
    assert row["is_push_assisted"] is True
    assert row["ga_assist"] is True
    assert row["push_touch_count"] == 1
    assert row["push_kinds"] == ["app"]
    assert row["push_kind"] == "app"
    assert row["campaign_ids"] == ["c1"]
    assert row["hours_from_first_push"] == 72.0
    assert row["hours_from_last_push"] == 72.0
    assert row["touch_count"] == 2
    assert row["stitch_rules"] == []
    assert counts["conversions"] == 1
    assert counts["push_assisted_conversions"] == 1
    assert counts["push_last_touch_conversions"] == 0


def test_impression_only_assist_counts_only_when_the_setting_allows(con):
    touch(con, "imp", hours(5), "push_impression", campaign="c1", push_kind="web")
    touch(con, "organic", hours(1), "session", "Organic Search")
    conversion(con)
    run(con)
    row = path_row(con)
    assert row["path"] == f"{PUSH} (impression) > Organic Search"
    assert row["push_role"] == "assist"
    assert row["assist_kind"] == "impression"
    assert row["is_push_assisted"] is False
    assert row["ga_assist"] is False  # an impression is not a click
    assert row["last_touch_channel"] == "Organic Search"
    assert row["hours_from_last_push"] == 5.0
    # impressions stay out of the models by default
    assert credits(con, "linear") == [("organic", 1, "Organic Search", 1.0)]

    run(con, count_impression_assists=True)
    assert path_row(con)["is_push_assisted"] is True


def test_views_join_the_models_only_with_the_setting_and_never_as_last_touch(con):
    touch(con, "organic", hours(5), "session", "Organic Search")
    touch(con, "imp", hours(1), "push_impression", campaign="c1")
    conversion(con)
    run(con, include_views_in_models=True)
    assert credits(con, "linear") == [
        ("organic", 1, "Organic Search", 0.5),
        ("imp", 2, PUSH, 0.5),
    ]
    assert credits(con, "last_click") == [("organic", 1, "Organic Search", 1.0)]
    row = path_row(con)
    assert row["last_touch_id"] == "organic"
    assert row["push_role"] == "assist"


def test_window_with_only_an_impression_falls_back_to_direct(con):
    touch(con, "imp", hours(2), "push_impression", campaign="c1")
    conversion(con)
    run(con)
    row = path_row(con)
    assert row["last_touch_channel"] == "Direct"
    assert row["last_touch_id"] is None
    assert row["push_role"] == "assist"
    assert row["assist_kind"] == "impression"
    assert credits(con, "linear") == [(None, None, "Direct", 1.0)]


def test_push_click_as_the_last_touch(con):
    touch(con, "email", days(2), "session", "Email")
    touch(con, "push", hours(1), "push_click", campaign="c1", push_kind="app")
    conversion(con)
    counts = run(con)
    row = path_row(con)
    assert row["last_touch_channel"] == PUSH
    assert row["last_touch_id"] == "push"
    assert row["push_role"] == "last_touch"
    assert row["assist_kind"] is None
    assert row["is_push_assisted"] is False
    assert row["ga_assist"] is False  # the only push click is the last click
    assert row["hours_from_first_push"] == 1.0
    assert counts["push_last_touch_conversions"] == 1


def test_a_session_recorded_under_the_push_channel_counts_as_a_push_click(con):
    touch(con, "push_session", days(1), "session", PUSH, campaign="c9")
    touch(con, "email", hours(1), "session", "Email")
    conversion(con)
    run(con)
    row = path_row(con)
    assert row["push_role"] == "assist"
    assert row["assist_kind"] == "click"
    assert row["ga_assist"] is True
    assert row["campaign_ids"] == ["c9"]


def test_direct_is_passed_over_under_last_non_direct_but_not_under_last_click(con):
    touch(con, "push", days(2), "push_click", campaign="c1")
    touch(con, "direct", hours(1), "session", "Direct")
    conversion(con)
    run(con)  # last_non_direct is the default
    row = path_row(con)
    assert (row["last_touch_channel"], row["last_touch_id"]) == (PUSH, "push")
    assert row["push_role"] == "last_touch"
    # both last-touch models are written whatever the setting
    assert credits(con, "last_non_direct") == [("push", 1, PUSH, 1.0)]
    assert credits(con, "last_click") == [("direct", 2, "Direct", 1.0)]

    run(con, last_touch_rule="last_click")
    row = path_row(con)
    assert (row["last_touch_channel"], row["last_touch_id"]) == ("Direct", "direct")
    assert row["push_role"] == "assist"
    assert row["assist_kind"] == "click"


def test_a_window_of_direct_only_credits_its_last_direct_touch(con):
    touch(con, "d1", days(2), "session", "Direct")
    touch(con, "d2", hours(1), "session", "Direct")
    conversion(con)
    run(con)
    assert path_row(con)["last_touch_id"] == "d2"
    assert credits(con, "last_non_direct") == [("d2", 1, "Direct", 1.0)]


def test_lookback_edges_are_exact_to_the_second(con):
    touch(con, "outside", days(7) + dt.timedelta(seconds=1), "push_click", campaign="old")
    touch(con, "edge", days(7), "session", "Email")
    touch(con, "instant", dt.timedelta(0), "session", "Organic Search")
    touch(con, "after", -dt.timedelta(seconds=1), "push_click", campaign="late")
    conversion(con, lookback_days=7)
    run(con)
    row = path_row(con)
    assert row["touch_event_ids"] == ["edge", "instant"]
    assert row["last_touch_id"] == "instant"
    assert row["push_role"] == "none"
    assert row["campaign_ids"] == []


def test_lookback_does_not_move_with_daylight_saving_in_the_session_time_zone(con):
    # New York moved its clocks on 2024-03-10, inside this window: 7 days are still 168 hours
    con.execute("set TimeZone = 'America/New_York'")
    touch(con, "outside", days(7) + dt.timedelta(seconds=1), "session", "Email")
    touch(con, "edge", days(7), "session", "Email")
    conversion(con, lookback_days=7)
    run(con)
    assert path_row(con)["touch_event_ids"] == ["edge"]


def test_two_campaigns_on_one_conversion(con):
    touch(con, "p1", days(2), "push_click", campaign="spring", push_kind="app")
    touch(con, "p2", days(1), "push_influenced", campaign="summer", push_kind="web")
    touch(con, "email", hours(6), "session", "Email")
    conversion(con)
    run(con)
    row = path_row(con)
    assert row["campaign_ids"] == ["spring", "summer"]
    assert row["push_touch_count"] == 2
    assert row["push_kinds"] == ["app", "web"]
    assert row["push_kind"] == "both"
    assert row["assist_kind"] == "click"  # the click is stronger than the influenced open
    assert row["hours_from_first_push"] == 48.0
    assert row["hours_from_last_push"] == 24.0
    assert row["path"] == f"{PUSH} > {PUSH} (influenced) > Email"


def test_influenced_open_assist(con):
    touch(con, "inf", days(1), "push_influenced", campaign="c1")
    touch(con, "email", hours(6), "session", "Email")
    conversion(con)
    run(con)
    row = path_row(con)
    assert (row["assist_kind"], row["is_push_assisted"], row["ga_assist"]) == (
        "influenced",
        True,
        False,
    )


def test_ga_assist_when_push_is_both_earlier_and_last(con):
    touch(con, "push_a", days(3), "push_click", campaign="c1")
    touch(con, "email", days(2), "session", "Email")
    touch(con, "push_b", hours(1), "push_click", campaign="c2")
    conversion(con)
    run(con)
    row = path_row(con)
    assert row["push_role"] == "last_touch"
    assert row["ga_assist"] is True
    assert row["push_touch_count"] == 2


def test_stitch_rules_of_the_conversion_and_its_push_touches(con):
    touch(con, "push", days(1), "push_click", campaign="c1", identity_rule="cross_device")
    touch(con, "email", hours(2), "session", "Email", identity_rule="shared_device")
    conversion(con, identity_rule="anonymous_stitch")
    touch(con, "push2", days(1), "push_click", person="p2", identity_rule="unlinked")
    conversion(con, "cv2", person="p2")
    run(con)
    # the email session's rule does not count: only the conversion and its push touches do
    assert path_row(con)["stitch_rules"] == ["anonymous_stitch", "cross_device"]
    assert path_row(con, "cv2")["stitch_rules"] == []


def four_touch_path(con):
    """Paid Search 14 days, Email 7 days, push 3.5 days and Organic Search 0 days before."""
    touch(con, "paid", days(14), "session", "Paid Search")
    touch(con, "email", days(7), "session", "Email")
    touch(con, "push", days(3.5), "push_click", campaign="c1")
    touch(con, "organic", days(0), "session", "Organic Search")
    conversion(con, value=200.0, lookback_days=30)


def test_credits_per_model_on_a_four_touch_path(con):
    four_touch_path(con)
    run(con)
    ids = ["paid", "email", "push", "organic"]

    def shares(model):
        rows = credits(con, model)
        assert [r[1] for r in rows] == [ids.index(r[0]) + 1 for r in rows]  # positions 1..4
        return {r[0]: r[3] for r in rows}

    assert shares("linear") == dict.fromkeys(ids, 0.25)
    assert shares("position_based") == pytest.approx(
        {"paid": 0.4, "email": 0.1, "push": 0.1, "organic": 0.4}, abs=1e-12
    )
    # half life 7 days: weights 2^-2, 2^-1, 2^-0.5 and 1
    weights = {"paid": 0.25, "email": 0.5, "push": 2**-0.5, "organic": 1.0}
    total = sum(weights.values())
    assert shares("time_decay") == pytest.approx(
        {k: w / total for k, w in weights.items()}, abs=1e-12
    )
    assert shares("first_click") == {"paid": 1.0}
    assert shares("last_click") == {"organic": 1.0}
    assert shares("last_non_direct") == {"organic": 1.0}
    value_credit = con.execute(
        """
        select value_credit
        from core.attribution_credits
        where model = 'position_based'
            and touch_id = 'push'
        """
    ).fetchone()[0]
    assert value_credit == pytest.approx(20.0)  # 0.1 of 200


def test_position_based_weights_and_two_touch_split_follow_the_setting(con):
    touch(con, "email", days(2), "session", "Email")
    touch(con, "push", days(1), "push_click", campaign="c1")
    conversion(con)
    run(con)
    assert [r[3] for r in credits(con, "position_based")] == [0.5, 0.5]
    run(con, position_weights=(0.6, 0.1, 0.3))
    assert [r[3] for r in credits(con, "position_based")] == pytest.approx([2 / 3, 1 / 3])


def repeats_path(con):
    """Email, Email, push click, Email: the two first emails are one run."""
    touch(con, "e1", days(3), "session", "Email")
    touch(con, "e2", days(2), "session", "Email")
    touch(con, "push", days(1), "push_click", campaign="c1")
    touch(con, "e3", days(0), "session", "Email")
    conversion(con)


def test_exposure_transform_collapses_consecutive_repeats(con):
    repeats_path(con)
    run(con)  # exposure is the default
    row = path_row(con)
    assert row["path"] == f"Email > {PUSH} > Email"
    assert row["touch_event_ids"] == ["e1", "e2", "push", "e3"]  # lineage is untransformed
    assert row["touch_count"] == 4
    third = pytest.approx(1 / 3)
    # the run e1, e2 is represented by its latest touch
    assert credits(con, "linear") == [
        ("e2", 1, "Email", third),
        ("push", 2, PUSH, third),
        ("e3", 3, "Email", third),
    ]
    # ...which is also the time time_decay ages: 2, 1 and 0 days
    weights = [2 ** (-2 / 7), 2 ** (-1 / 7), 1.0]
    assert [r[3] for r in credits(con, "time_decay")] == pytest.approx(
        [w / sum(weights) for w in weights]
    )
    # single-touch models credit the actual first and last touches
    assert credits(con, "first_click") == [("e1", 1, "Email", 1.0)]
    assert credits(con, "last_click") == [("e3", 3, "Email", 1.0)]


def test_other_path_transforms(con):
    repeats_path(con)
    run(con, path_transform="none")
    assert path_row(con)["path"] == f"Email > Email > {PUSH} > Email"
    assert [r[3] for r in credits(con, "linear")] == [0.25] * 4

    run(con, path_transform="first")
    assert path_row(con)["path"] == f"Email > {PUSH}"
    assert credits(con, "linear") == [("e1", 1, "Email", 0.5), ("push", 2, PUSH, 0.5)]
    assert credits(con, "last_click") == [("e3", 1, "Email", 1.0)]

    # frequency: one position per channel, weighted by how often the channel appears
    run(con, path_transform="frequency")
    assert path_row(con)["path"] == f"Email(3) > {PUSH}(1)"
    assert credits(con, "linear") == [("e3", 1, "Email", 0.75), ("push", 2, PUSH, 0.25)]
    # position_based over the raw path (0.4, 0.1, 0.1, 0.4), summed per channel
    assert [r[3] for r in credits(con, "position_based")] == pytest.approx([0.9, 0.1])


def test_conversion_without_touches_goes_to_direct_for_every_model(con):
    touch(con, "someone_else", hours(1), "push_click", person="p2", campaign="c1")
    conversion(con, value=42.0)
    counts = run(con)
    row = path_row(con)
    assert row["path"] == ""
    assert row["touch_event_ids"] == []
    assert row["touch_count"] == 0
    assert (row["last_touch_channel"], row["last_touch_id"]) == ("Direct", None)
    assert row["push_role"] == "none"
    assert row["push_kind"] == "none"
    assert row["hours_from_first_push"] is None
    rows = con.execute(
        """
        select model, touch_id, position, channel, is_push, credit, value_credit
        from core.attribution_credits
        order by model
        """
    ).fetchall()
    models = sorted(HEURISTIC_MODELS + DATA_DRIVEN_MODELS)
    assert rows == [(m, None, None, "Direct", False, 1.0, 42.0) for m in models]
    assert counts["conversions_without_touches"] == 1


def mixed_data(con):
    """Several people and days, enough to exercise every branch together."""
    four_touch_path(con)
    touch(con, "x1", days(1), "push_impression", person="p2", campaign="c1")
    touch(con, "x2", hours(3), "session", "Direct", person="p2")
    touch(con, "x3", hours(2), "session", "Direct", person="p2")
    conversion(con, "cv2", person="p2", value=10.0)
    conversion(con, "cv3", person="p3", value=5.0, when=CONVERSION_TIME - days(1))
    touch(con, "y1", days(2), "push_click", person="p4", campaign="c2")
    conversion(con, "cv4", person="p4", value=0.0, when=CONVERSION_TIME + days(1))


def table_rows(con, table) -> list[tuple]:
    columns = ", ".join(table.column_names)
    return con.execute(f"select {columns} from {table.qualified_name} order by all").fetchall()


def test_rerunning_a_range_leaves_the_same_rows(con):
    mixed_data(con)
    start, end = DAY - dt.timedelta(days=1), DAY + dt.timedelta(days=1)
    first_counts = run(con, start, end)
    paths, credit_rows = table_rows(con, CONVERSION_PATHS), table_rows(con, ATTRIBUTION_CREDITS)
    assert first_counts["conversions"] == 4
    assert first_counts["credit_rows"] == len(credit_rows)
    assert run(con, start, end) == first_counts
    assert table_rows(con, CONVERSION_PATHS) == paths
    assert table_rows(con, ATTRIBUTION_CREDITS) == credit_rows
    # a one-day re-run replaces that day only
    assert run(con)["conversions"] == 2
    assert table_rows(con, CONVERSION_PATHS) == paths
    assert table_rows(con, ATTRIBUTION_CREDITS) == credit_rows
    # a conversion that is gone from core.conversions leaves its day on the next run
    con.execute("delete from core.conversions where conversion_id = 'cv2'")
    run(con)
    remaining = con.execute("select distinct conversion_id from core.conversion_paths").fetchall()
    assert sorted(r[0] for r in remaining) == ["cv1", "cv3", "cv4"]
    assert con.execute(
        "select count(*) from core.attribution_credits where conversion_id = 'cv2'"
    ).fetchone() == (0,)


@pytest.mark.parametrize(
    "transform",
    [
        "none",
        "exposure",
        "first",
        "frequency",
        "trim_long_path",
        "remove_if_not_all_direct",
        "remove_if_last_and_not_all_direct",
    ],
)
@pytest.mark.parametrize("views", [False, True])
def test_credits_sum_to_one_per_conversion_and_model(con, transform, views):
    mixed_data(con)
    repeats = [("r1", 3, "Email"), ("r2", 2, "Email"), ("r3", 1, PUSH), ("r4", 0.5, "Email")]
    for touch_id, before, channel in repeats:
        touch(con, touch_id, days(before), "session", channel, person="p5")
    conversion(con, "cv5", person="p5", value=30.0)
    run(
        con,
        DAY - dt.timedelta(days=1),
        DAY + dt.timedelta(days=1),
        path_transform=transform,
        include_views_in_models=views,
    )
    sums = con.execute(
        """
        select
            a.conversion_id,
            a.model,
            sum(a.credit) as credit,
            sum(a.value_credit) as value_credit,
            any_value(c.value)::double as value
        from core.attribution_credits as a
        join core.conversions as c
            using (conversion_id)
        group by a.conversion_id, a.model
        """
    ).fetchall()
    assert len(sums) == 5 * len(HEURISTIC_MODELS + DATA_DRIVEN_MODELS)
    for conversion_id, model, credit, value_credit, value in sums:
        assert credit == pytest.approx(1.0, abs=1e-12), (conversion_id, model)
        assert value_credit == pytest.approx(value, abs=1e-9), (conversion_id, model)


def test_paths_file_uses_the_same_models(con):
    four_touch_path(con)
    run(con)
    document = {
        "model": "time_decay",
        "params": {"lookback_days": 30},
        "paths": [
            {
                "touches": [
                    {"channel": channel, "ts": (CONVERSION_TIME - days(age)).isoformat()}
                    for channel, age in [
                        ("Paid Search", 14),
                        ("Email", 7),
                        (PUSH, 3.5),
                        ("Organic Search", 0),
                    ]
                ],
                "conversion_ts": CONVERSION_TIME.isoformat(),
                "value": 200.0,
            }
        ],
    }
    expected = dict(
        con.execute(
            "select channel, value_credit from core.attribution_credits where model = 'time_decay'"
        ).fetchall()
    )
    assert attribute_paths(document)["credits"] == pytest.approx(expected, abs=1e-12)


def test_paths_file_counts_windows_and_non_converting_paths():
    document = {
        "model": "linear",
        "params": {"lookback_days": 7},
        "paths": [
            {
                "touches": [
                    {"channel": "Email", "ts": "2024-01-01T00:00:00Z"},  # 9 days: outside
                    {"channel": "Paid Search", "ts": "2024-01-08T00:00:00Z"},
                    {"channel": "Direct", "ts": "2024-01-10T00:00:00Z"},
                ],
                "conversion_ts": "2024-01-10T00:00:00Z",
                "value": 10.0,
                "count": 3,
            },
            {
                "touches": [{"channel": "Email", "ts": "2024-01-09T00:00:00Z"}],
                "conversion_ts": None,
                "value": 0.0,
                "converted": False,
            },
            {"touches": [], "conversion_ts": "2024-01-10T00:00:00Z", "value": 4.0},
        ],
    }
    result = attribute_paths(document)
    assert result["credits"] == {"Direct": 19.0, "Paid Search": 15.0}
    assert result["conversions"] == {"Direct": 2.5, "Paid Search": 1.5}


def _paths(*paths: tuple[list[str], dict]) -> list[dict]:
    return [{"touches": [{"channel": c} for c in chs], **extra} for chs, extra in paths]


# time_decay is left out only because it needs touch times, which these paths do not have
@pytest.mark.parametrize(
    "model", [m for m in (*HEURISTIC_MODELS, *DATA_DRIVEN_MODELS) if m != "time_decay"]
)
def test_paths_file_reports_ga_assists_for_every_model(model):
    paths = _paths(
        # Email assists once (twice present, also last); Push assists; Direct is only last
        (["Email", "Push", "Email", "Direct"], {"value": 10.0, "count": 2}),
        # Push assists, Email is only last; an aggregated row of 3 conversions
        (["Push", "Push", "Email"], {"value": 6.0, "conversions": 3}),
        # a single touch assists nothing
        (["Push"], {"value": 1.0}),
        # non-converting paths assist nothing
        (["Email", "Push"], {"converted": False}),
    )
    result = attribute_paths({"model": model, "params": {"path_transform": "none"}, "paths": paths})
    assert result["assists"] == {
        "conversions": {"Direct": 0.0, "Email": 2.0, "Push": 5.0},
        "value": {"Direct": 0.0, "Email": 20.0, "Push": 26.0},
    }


def test_paths_file_assists_follow_the_path_transform():
    paths = _paths((["Email", "Email", "Push", "Direct"], {"value": 4.0}))

    def assists(**params):
        document = {"model": "last_click", "params": params, "paths": paths}
        return attribute_paths(document)["assists"]["conversions"]

    assert assists(path_transform="none") == {"Direct": 0.0, "Email": 1.0, "Push": 1.0}
    # Direct dropped from the end: Push is now last and assists nothing
    assert assists(path_transform="remove_if_last_and_not_all_direct") == {
        "Direct": 0.0,
        "Email": 1.0,
        "Push": 0.0,
    }
    # the last two touches only
    assert assists(path_transform="trim_long_path", path_lookback_steps=2) == {
        "Direct": 0.0,
        "Email": 0.0,
        "Push": 1.0,
    }


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        # no path_lookback_steps: no limit, the untransformed path (12/5 per touch)
        ({"path_transform": "trim_long_path"}, {"a": 4.8, "Direct": 13.2}),
        # a > Direct > Direct
        (
            {"path_transform": "trim_long_path", "path_lookback_steps": 3},
            {"a": 4.0, "Direct": 14.0},
        ),
        # a > a
        ({"path_transform": "remove_if_not_all_direct"}, {"a": 12.0, "Direct": 6.0}),
        # a > Direct > a
        ({"path_transform": "remove_if_last_and_not_all_direct"}, {"a": 8.0, "Direct": 10.0}),
    ],
)
def test_paths_file_removing_transforms(params, expected):
    # linear credit; the all-Direct path (6.0 to Direct) is kept whole by every transform
    paths = _paths(
        (["a", "Direct", "a", "Direct", "Direct"], {"value": 12.0}),
        (["Direct", "Direct"], {"value": 6.0}),
    )
    result = attribute_paths({"model": "linear", "params": params, "paths": paths})
    assert result["credits"] == pytest.approx(expected)


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"model": "markov", "params": {"markov_order": 0}, "paths": []}, "markov_order"),
        ({"model": "magic", "paths": []}, "known models: last_click"),
        ({"model": "linear", "params": {"half_life": 3}, "paths": []}, "unknown params"),
        ({"model": "linear", "params": {"path_transform": "x"}, "paths": []}, "path_transform"),
        (
            {"model": "linear", "params": {"path_lookback_steps": 2}, "paths": []},
            "path_lookback_steps applies to path_transform trim_long_path only",
        ),
        (
            {
                "model": "linear",
                "params": {"path_transform": "trim_long_path", "path_lookback_steps": 0},
                "paths": [],
            },
            "path_lookback_steps",
        ),
        ({"model": "linear", "paths": [{"touches": [{"ts": None}]}]}, "channel"),
        (
            {
                "model": "time_decay",
                "paths": [{"touches": [{"channel": "a", "ts": None}], "conversion_ts": None}],
            },
            "conversion_ts is needed",
        ),
    ],
)
def test_paths_file_errors_say_what_is_wrong(document, message):
    with pytest.raises(ValueError, match=message):
        attribute_paths(document)


def test_cli_prints_credits_as_json(tmp_path, capsys):
    paths_file = tmp_path / "paths.json"
    paths_file.write_text(
        json.dumps(
            {
                "model": "first_touch",
                "paths": [{"touches": [{"channel": "Email", "ts": None}], "value": 5}],
            }
        )
    )
    assert main(["attribute", str(paths_file)]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "assists": {"conversions": {"Email": 0.0}, "value": {"Email": 0.0}},
        "conversions": {"Email": 1.0},
        "credits": {"Email": 5.0},
    }


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read"),
        ("{not json", "is not valid JSON"),
        ('{"model": "shapley", "paths": [{"touches": [], "converted": 1}]}', "converted"),
        ('{"model": "linear", "params": {"position_weights": [1, 1, 1]}, "paths": []}', "sum"),
    ],
)
def test_cli_fails_with_one_line_on_a_bad_file(tmp_path, capsys, content, message):
    paths_file = tmp_path / "paths.json"
    if content is not None:
        paths_file.write_text(content)
    assert main(["attribute", str(paths_file)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert message in captured.err


def test_data_driven_credits_use_the_days_non_converting_journeys(con):
    # p1: Email, then Push, converts. p2: Push the same day and no conversion.
    # Markov: start -> Email 1/2, -> Push 1/2; Email -> Push 1; Push -> conversion 1/2.
    # P = 1/2; without Email 1/4 (effect 1/2); without Push 0 (effect 1): Email 1/3, Push 2/3.
    # Shapley: v({Email, Push}) = 1, v({Push}) = 0: 1/2 each. Fractribution: leaving either
    # out gives a path never seen (0): 1/2 each.
    touch(con, "e1", hours(5), "session", "Email")
    touch(con, "u1", hours(2), "push_click", person="p1")
    touch(con, "u2", hours(3), "push_click", person="p2")
    conversion(con, value=90.0)
    run(con)
    rows = con.execute(
        """
        select model, touch_id, credit, value_credit
        from core.attribution_credits
        where model in ('markov', 'shapley', 'fractribution')
        order by model, touch_id
        """
    ).fetchall()
    expected = [
        ("fractribution", "e1", 0.5, 45.0),
        ("fractribution", "u1", 0.5, 45.0),
        ("markov", "e1", 1 / 3, 30.0),
        ("markov", "u1", 2 / 3, 60.0),
        ("shapley", "e1", 0.5, 45.0),
        ("shapley", "u1", 0.5, 45.0),
    ]
    assert [r[:2] for r in rows] == [e[:2] for e in expected]
    assert [r[2:] for r in rows] == [pytest.approx(e[2:]) for e in expected]
