"""Misclassification cases, their checks' thresholds, the channel rules override and the
corrected vs recorded attribution views, on hand-built people run through the whole job.

Every figure below is worked out by hand from the events in PEOPLE (defaults: push-open
window 2 minutes, last-touch rule last_non_direct, min_campaign_opens 3).
"""

import datetime as dt
import json
from pathlib import Path

import dagster as dg
import duckdb
import pytest
import yaml

from pipeline.definitions import JOB_NAME, build_definitions
from pipeline.misclassification import (
    CAMPAIGN_OPENS_WITHOUT_SESSIONS,
    PUSH_MEDIUM_UNCLASSIFIED,
    PUSH_OPENED_NOT_PUSH,
    detected_push_as_direct_rate,
    push_looking_sql,
)
from pipeline.schedules import range_tags
from pipeline.settings import DEFAULT_CHANNEL_RULES, parse_settings

PUSH = "Mobile Push Notifications"
START, END = dt.date(2024, 1, 8), dt.date(2024, 1, 10)


def ev(event_id, name, time, **fields):
    return {"event_id": event_id, "event_name": name, "event_time": f"2024-01-{time}Z", **fields}


def opened_push(prefix, user, campaign, opened):
    common = {"user_id": user, "message_id": f"{prefix}-msg", "campaign_id": campaign}
    return [
        ev(f"{prefix}-sent", "push_sent", opened[:-5] + "00:00", **common),
        ev(f"{prefix}-open", "push_opened", opened, **common),
    ]


def session(event_id, user, time, **utm):
    return ev(event_id, "session_start", time, user_id=user, session_id=event_id, **utm)


PEOPLE = [
    # u1: a push open, a session 40 s later with no utm (recorded Direct), a purchase.
    *opened_push("p1", "u1", "cmp_a", "08T10:00:00"),
    session("s1", "u1", "08T10:00:40"),
    ev("o1", "purchase", "08T10:05:00", user_id="u1", order_id="o1", revenue=10),
    # u2: a push open, a session 60 s later tagged as email (recorded Email), a purchase.
    *opened_push("p2", "u2", "cmp_a", "09T10:00:00"),
    session("s2", "u2", "09T10:01:00", utm_source="newsletter", utm_medium="email"),
    ev("o2", "purchase", "09T10:10:00", user_id="u2", order_id="o2", revenue=20),
    # Push-looking mediums: two the GA4 rules miss, one they classify as push.
    session("s3", "u3", "09T12:00:00", utm_source="braze", utm_medium="push_notif"),
    session("s4", "u4", "09T13:00:00", utm_source="firebase_x", utm_medium="FCM"),
    session("s5", "u5", "09T14:00:00", utm_source="braze", utm_medium="Push-Notification"),
    # cmp_b: three opens on day 10 and not one session after them.
    *opened_push("p6", "u6", "cmp_b", "10T09:00:00"),
    *opened_push("p7", "u7", "cmp_b", "10T09:10:00"),
    *opened_push("p8", "u8", "cmp_b", "10T09:20:00"),
    # Someone reads a page every day: a day with no event fails the run.
    *[ev(f"r{d}", "page_view", f"{d:02d}T06:00:00", user_id="reader") for d in (8, 9, 10)],
]


def run(tmp_path: Path, **overrides):
    """The whole job; returns the warehouse, each check's evaluation, the instance's run id and
    the settings (the instance lives on for the alert tests)."""
    folder = tmp_path / "landing" / "canonical"
    folder.mkdir(parents=True)
    (folder / "events.jsonl").write_text("\n".join(json.dumps(r) for r in PEOPLE) + "\n")
    warehouse = tmp_path / "warehouse.duckdb"
    settings = parse_settings(
        {
            "landing_root": str(tmp_path / "landing"),
            "warehouse_path": str(warehouse),
            **overrides,
        }
    )
    settings_file = tmp_path / "settings.json"
    settings_file.write_text(json.dumps(settings.model_dump(mode="json")))
    defs = build_definitions(settings, str(settings_file))
    with dg.instance_for_test() as instance:
        result = defs.resolve_job_def(JOB_NAME).execute_in_process(
            instance=instance, tags=range_tags(START, END)
        )
        assert result.success
        checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
        alerts = _alert_runs(instance, result.run_id, settings, tmp_path)
    con = duckdb.connect(str(warehouse), read_only=True)
    con.execute("set TimeZone = 'UTC'")
    return con, checks, settings, alerts


def _alert_runs(instance, run_id, settings, tmp_path):
    """Deliver the run's alerts to a local webhook twice (the sensor's delivery code)."""
    from test_alerts import webhook_server

    from pipeline.alerts import WEBHOOK_ENV, deliver_run_alerts

    with webhook_server() as (url, received):
        first = deliver_run_alerts(instance, run_id, settings, {WEBHOOK_ENV: url})
        second = deliver_run_alerts(instance, run_id, settings, {WEBHOOK_ENV: url})
    return first, second, list(received)


@pytest.fixture(scope="module")
def defaults(tmp_path_factory):
    return run(tmp_path_factory.mktemp("defaults"))


@pytest.fixture(scope="module")
def overridden(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("overridden")
    # A team's rules file: `notif` mediums are push too, tested before GA4's rules.
    rules = yaml.safe_load(DEFAULT_CHANNEL_RULES.read_text())
    rules["rules"].insert(
        0,
        {"name": "team_notif", "channel": PUSH, "when": [{"medium": {"contains": ["notif"]}}]},
    )
    rules_file = tmp / "team_rules.yaml"
    rules_file.write_text(yaml.safe_dump(rules))
    return run(
        tmp,
        channel_rules_file=str(rules_file),
        attribution={"use_corrected_channels": False},
        checks={
            "push_as_direct_rate": {"warn": 0.5, "error": 1.0},
            "push_medium_unclassified_rate": {"warn": 0.2, "error": 0.5},
            "campaigns_without_push_sessions_rate": {"warn": 1.0, "error": 1.0},
        },
    )


def cases(con, kind):
    return con.execute(
        """
        select date, case_id, touch_id, person_id, campaign_id, recorded_channel, recorded_rule,
            suggested_channel, utm_medium, seconds_after_open, opens, evidence, event_ids
        from quality.channel_misclassifications
        where kind = ?
        order by case_id
        """,
        [kind],
    ).df()


def test_push_opened_sessions_recorded_as_other_channels(defaults):
    con, *_ = defaults
    rows = cases(con, PUSH_OPENED_NOT_PUSH)
    assert rows["case_id"].tolist() == ["s1", "s2"]
    assert rows["touch_id"].tolist() == ["p1-open", "p2-open"]
    assert rows["recorded_channel"].tolist() == ["Direct", "Email"]
    assert rows["seconds_after_open"].tolist() == [40.0, 60.0]
    assert set(rows["suggested_channel"]) == {PUSH}
    assert rows["date"].astype(str).tolist() == ["2024-01-08", "2024-01-09"]
    assert rows["evidence"][0] == (
        "session s1 started 40 s after push open p1-open of campaign cmp_a, but was recorded "
        "as Direct (rule direct)"
    )
    assert list(rows["event_ids"][0]) == ["s1", "p1-open"]
    assert detected_push_as_direct_rate(con, parse_settings({}), START, END) == 0.5


def test_push_looking_mediums_the_rules_missed(defaults):
    con, *_ = defaults
    rows = cases(con, PUSH_MEDIUM_UNCLASSIFIED)
    # Push-Notification (s5) is push by GA4's rule 18: not a case.
    assert rows["case_id"].tolist() == ["s3", "s4"]
    assert rows["utm_medium"].tolist() == ["push_notif", "FCM"]
    assert rows["recorded_channel"].tolist() == ["Unassigned", "Unassigned"]
    assert "utm_medium 'FCM'" in rows["evidence"][1]


@pytest.mark.parametrize(
    ("medium", "looks_like_push"),
    [
        ("Push-Notification", True),
        ("push_notif", True),
        ("FCM", True),
        ("apns", True),
        ("web push", True),
        ("notification", True),
        ("email", False),
        ("(none)", False),
        (None, False),
    ],
)
def test_push_looking_mediums(medium, looks_like_push):
    con = duckdb.connect()
    assert con.execute(f"select {push_looking_sql('?')}", [medium]).fetchall()[0][0] is (
        looks_like_push
    )


def test_campaigns_with_opens_and_no_session(defaults):
    con, *_ = defaults
    rows = cases(con, CAMPAIGN_OPENS_WITHOUT_SESSIONS)
    # cmp_a had one open a day (under min_campaign_opens) and a session after each.
    assert rows["case_id"].tolist() == ["cmp_b"]
    assert rows["opens"].tolist() == [3]
    assert list(rows["event_ids"][0]) == ["p6-open", "p7-open", "p8-open"]
    assert rows["evidence"][0].startswith("campaign cmp_b had 3 push opens on 2024-01-10")


def severity_of(checks, name):
    check = checks[name]
    return None if check.passed else check.severity


def test_default_thresholds_raise_errors_with_rates_and_examples(defaults):
    _, checks, *_ = defaults
    error = dg.AssetCheckSeverity.ERROR
    opened = checks["push_opened_sessions_not_push"]
    assert severity_of(checks, "push_opened_sessions_not_push") == error
    assert opened.metadata["rate"].value == 1.0
    assert opened.metadata["push_opened_sessions"].value == 2
    assert opened.metadata["direct_rate"].value == 0.5
    assert opened.metadata["recorded_channels"].value == "Direct: 1, Email: 1"
    assert "s1" in opened.metadata["offending_rows"].value
    mediums = checks["push_mediums_unclassified"]
    assert severity_of(checks, "push_mediums_unclassified") == error
    assert mediums.metadata["rate"].value == pytest.approx(2 / 3)
    assert mediums.metadata["mediums"].value == "FCM: 1, push_notif: 1"
    campaigns = checks["campaigns_with_opens_without_sessions"]
    assert severity_of(checks, "campaigns_with_opens_without_sessions") == error
    assert campaigns.metadata["campaign_days_with_opens"].value == 1
    assert checks["correction_matches_core"].passed


def test_thresholds_from_settings_pick_warn_or_pass(overridden):
    _, checks, *_ = overridden
    warn = dg.AssetCheckSeverity.WARN
    # 2 of 2 push-opened sessions: above warn 0.5, not above error 1.0.
    assert severity_of(checks, "push_opened_sessions_not_push") == warn
    # The team's rules classify push_notif as push: 1 of 3 push-looking sessions (FCM) left,
    # above warn 0.2, under error 0.5.
    assert severity_of(checks, "push_mediums_unclassified") == warn
    assert checks["push_mediums_unclassified"].metadata["rate"].value == pytest.approx(1 / 3)
    # 1 of 1 campaign-day, not above warn 1.0: passes, and still names the rate.
    assert severity_of(checks, "campaigns_with_opens_without_sessions") is None
    assert checks["campaigns_with_opens_without_sessions"].metadata["rate"].value == 1.0


def test_rules_file_from_settings_changes_a_session_channel(defaults, overridden):
    query = "select channel, channel_rule from core.touches where touch_id = 's3'"
    assert defaults[0].execute(query).fetchall() == [("Unassigned", "unassigned")]
    assert overridden[0].execute(query).fetchall() == [(PUSH, "team_notif")]


CORRECTION_COLUMNS = (
    "date, conversion_type, conversions, push_last_touch_corrected, push_last_touch_recorded, "
    "push_assisted_corrected, push_assisted_recorded, changed_conversions, attribution_view"
)


def test_correction_mart_shows_both_views(defaults):
    con, *_ = defaults
    rows = con.execute(
        f"select {CORRECTION_COLUMNS} from marts.channel_correction_daily order by date"
    ).fetchall()
    # o1: push click > Direct session: push is the last non-direct touch in both views.
    # o2: push click > Email session: push last touch when corrected; recorded, Email takes
    # the last touch and push becomes a click assist.
    assert rows == [
        (dt.date(2024, 1, 8), "purchase", 1, 1, 1, 0, 0, 0, "corrected"),
        (dt.date(2024, 1, 9), "purchase", 1, 1, 0, 0, 1, 1, "corrected"),
    ]
    paths = con.execute(
        "select order_id, push_role, last_touch_channel from core.conversion_paths order by 1"
    ).fetchall()
    assert paths == [("o1", "last_touch", PUSH), ("o2", "last_touch", PUSH)]


def test_recorded_view_when_correction_is_off(overridden):
    con, checks, *_ = overridden
    paths = con.execute(
        "select order_id, push_role, assist_kind, last_touch_channel, path "
        "from core.conversion_paths order by 1"
    ).fetchall()
    assert paths == [
        ("o1", "last_touch", None, PUSH, f"{PUSH} > Direct"),
        ("o2", "assist", "click", "Email", f"{PUSH} > Email"),
    ]
    views = con.execute(
        "select distinct attribution_view from marts.channel_correction_daily"
    ).fetchall()
    assert views == [("recorded",)]
    assert checks["correction_matches_core"].passed


def test_failed_checks_reach_the_webhook_once(defaults):
    *_, settings, (first, second, received) = defaults
    names = sorted(alert["check"] for alert in received)
    assert names == [
        "campaigns_with_opens_without_sessions",
        "push_mediums_unclassified",
        "push_opened_sessions_not_push",
    ]
    assert first == {"log": 3, "webhook": 3}
    assert second == {"log": 0, "webhook": 0}
    alert = next(a for a in received if a["check"] == "push_opened_sessions_not_push")
    assert alert["severity"] == "ERROR"
    assert alert["days"] == "2024-01-08 to 2024-01-10"
    assert alert["runbook"] == "docs/runbook.md#push-opened-sessions-not-push"
    assert alert["metadata"]["rate"] == 1.0
    assert "s1" in alert["metadata"]["offending_rows"]
    lines = settings.alert_log_file.read_text().splitlines()
    assert sorted(json.loads(line)["check"] for line in lines) == names
