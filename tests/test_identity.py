"""Identity resolution on hand-built people, each expectation worked out by hand."""

from __future__ import annotations

import datetime as dt
import hashlib
import json

import duckdb
import pytest

from pipeline.identity import resolve_identity
from pipeline.settings import IdentitySettings
from pipeline.tables import EVENT_PERSONS, IDENTITY_MAP, STAGING_EVENTS

DAY = dt.datetime(2024, 3, 1, tzinfo=dt.UTC)


def person(identifier_type: str, identifier: str) -> str:
    """The person id the anchor rule gives a component anchored on this identifier."""
    return "p_" + hashlib.md5(f"{identifier_type}:{identifier}".encode()).hexdigest()[:16]


def event_person(source: str, event_id: str) -> str:
    return "p_" + hashlib.md5(f"event:{source}:{event_id}".encode()).hexdigest()[:16]


@pytest.fixture
def con():
    connection = duckdb.connect()
    connection.execute("create schema staging")
    connection.execute(STAGING_EVENTS.create_sql())
    yield connection
    connection.close()


def add(con, event_id, hour, name="page_view", user=None, anon=None, device=None, props=None):
    """Stage one event `hour` hours after the first test day began."""
    when = DAY + dt.timedelta(hours=hour)
    con.execute(
        """
        insert into staging.events (
            event_id, source, event_time, event_name, user_id, anonymous_id, device_id,
            platform, properties, event_date
        )
        values (?, 'test', ?, ?, ?, ?, ?, 'web', ?, ?)
        """,
        [event_id, when, name, user, anon, device, json.dumps(props or {}), when.date()],
    )


def resolve(con, **settings):
    return resolve_identity(con, IdentitySettings(**settings))


def events(con) -> dict[str, tuple[str, str]]:
    rows = con.execute("select event_id, person_id, identity_rule from core.event_persons")
    return {event_id: (person_id, rule) for event_id, person_id, rule in rows.fetchall()}


def identifiers(con) -> dict[tuple[str, str], tuple[str | None, str, int]]:
    rows = con.execute(
        "select identifier_type, identifier, person_id, rule, user_count from core.identity_map"
    )
    return {(t, v): (p, r, n) for t, v, p, r, n in rows.fetchall()}


def test_tables_have_the_contract_columns(con):
    add(con, "e1", 0, anon="a1")
    resolve(con)
    for table in (IDENTITY_MAP, EVENT_PERSONS):
        described = con.execute(f"describe {table.qualified_name}").fetchall()
        assert [row[0] for row in described] == table.column_names


def test_anonymous_history_joins_the_user_who_logs_in_later(con):
    add(con, "visit", 0, anon="cookie-1")
    add(con, "product", 1, name="product_view", anon="cookie-1")
    add(con, "login", 2, name="identify", user="u1", anon="cookie-1")
    add(con, "buy", 3, name="purchase", user="u1")

    counts = resolve(con)

    # The cookie was seen first, so it anchors the person.
    alice = person("anonymous_id", "cookie-1")
    assert events(con) == {
        "visit": (alice, "anonymous_stitch"),
        "product": (alice, "anonymous_stitch"),
        "login": (alice, "known_user"),
        "buy": (alice, "known_user"),
    }
    assert identifiers(con) == {
        ("anonymous_id", "cookie-1"): (alice, "anonymous_stitch", 1),
        ("user_id", "u1"): (alice, "known_user", 1),
    }
    seen = con.execute(
        "select first_seen, last_seen from core.identity_map where identifier = 'cookie-1'"
    ).fetchone()
    assert seen == (DAY, DAY + dt.timedelta(hours=2))
    assert counts["persons"] == 1
    assert counts["anonymous_event_share"] == 0.0


def test_one_user_on_two_devices_is_one_person(con):
    add(con, "phone-login", 0, name="identify", user="u1", device="phone")
    # The laptop's cookie and device id meet before anyone logs in on the laptop.
    add(con, "laptop-visit", 1, anon="web-1", device="laptop")
    add(con, "laptop-login", 2, name="identify", user="u1", device="laptop")
    add(con, "laptop-push", 3, name="push_delivered", device="laptop")
    add(con, "phone-open", 4, name="push_opened", device="phone")

    resolve(con)

    bob = person("device_id", "phone")
    assert events(con) == {
        "phone-login": (bob, "known_user"),
        "laptop-visit": (bob, "anonymous_stitch"),
        "laptop-login": (bob, "known_user"),
        "laptop-push": (bob, "cross_device"),
        "phone-open": (bob, "cross_device"),
    }
    assert identifiers(con) == {
        ("user_id", "u1"): (bob, "known_user", 1),
        ("device_id", "phone"): (bob, "cross_device", 1),
        ("device_id", "laptop"): (bob, "cross_device", 1),
        ("anonymous_id", "web-1"): (bob, "anonymous_stitch", 0),
    }


def test_shared_device_events_go_to_the_latest_login_before_them(con):
    add(con, "before-any-login", 0, device="tablet")
    add(con, "ann-login", 1, name="identify", user="ann", device="tablet")
    add(con, "after-ann", 2, device="tablet")
    add(con, "ben-login", 3, name="identify", user="ben", device="tablet")
    add(con, "at-ben-login", 3, name="screen_view", device="tablet")
    add(con, "after-ben", 4, device="tablet")
    add(con, "ann-again", 5, name="identify", user="ann", device="tablet")
    add(con, "after-ann-again", 6, device="tablet")

    counts = resolve(con)

    ann, ben, tablet = (
        person("user_id", "ann"),
        person("user_id", "ben"),
        person("device_id", "tablet"),
    )
    # The tablet links nobody, so ann and ben stay two people and the tablet is a third.
    assert events(con) == {
        "before-any-login": (tablet, "unlinked"),
        "ann-login": (ann, "known_user"),
        "after-ann": (ann, "shared_device"),
        "ben-login": (ben, "known_user"),
        "at-ben-login": (ben, "shared_device"),
        "after-ben": (ben, "shared_device"),
        "ann-again": (ann, "known_user"),
        "after-ann-again": (ann, "shared_device"),
    }
    assert identifiers(con)[("device_id", "tablet")] == (tablet, "shared_device", 2)
    assert counts["shared_devices"] == 1
    assert counts["persons"] == 3
    assert counts["anonymous_event_share"] == pytest.approx(1 / 8)


def test_public_device_over_the_limit_keeps_its_events(con):
    for i in range(4):
        add(con, f"login-{i}", i, name="identify", user=f"visitor-{i}", device="kiosk")
    add(con, "after-logins", 10, device="kiosk")

    counts = resolve(con, max_users_per_device=3)

    kiosk = person("device_id", "kiosk")
    assigned = events(con)
    assert assigned["after-logins"] == (kiosk, "unlinked")
    for i in range(4):
        assert assigned[f"login-{i}"] == (person("user_id", f"visitor-{i}"), "known_user")
    assert identifiers(con)[("device_id", "kiosk")] == (kiosk, "public_device", 4)
    assert counts["public_devices"] == 1
    assert counts["shared_devices"] == 0


@pytest.mark.parametrize(
    "junk",
    ["0", "null", "", "anonymous", "00000000-0000-0000-0000-000000000000", " NULL ", "0000-0000"],
)
def test_junk_ids_never_join_two_people(con, junk):
    add(con, "cat-login", 0, name="identify", user="cat", anon=junk, device=junk)
    add(con, "dan-login", 1, name="identify", user="dan", anon=junk, device=junk)
    add(con, "junk-only", 2, anon=junk, device=junk)

    counts = resolve(con)

    value = junk.strip()
    assert events(con) == {
        "cat-login": (person("user_id", "cat"), "known_user"),
        "dan-login": (person("user_id", "dan"), "known_user"),
        "junk-only": (event_person("test", "junk-only"), "unlinked"),
    }
    mapped = identifiers(con)
    assert mapped[("anonymous_id", value)] == (None, "junk", 2)
    assert mapped[("device_id", value)] == (None, "junk", 2)
    assert counts["junk_identifiers"] == 2
    assert counts["shared_devices"] == 0


def test_junk_user_id_is_not_a_user(con):
    add(con, "e1", 0, user="undefined", anon="cookie-9")

    resolve(con)

    assert events(con) == {"e1": (person("anonymous_id", "cookie-9"), "unlinked")}
    assert identifiers(con)[("user_id", "undefined")] == (None, "junk", 0)


def test_identity_merge_links_two_user_ids(con):
    add(con, "old-login", 0, name="identify", user="guest-7", device="phone")
    add(con, "new-login", 1, name="identify", user="eve", device="laptop")
    add(con, "merge", 2, name="identity_merge", user="eve", props={"merged_user_id": "guest-7"})
    add(con, "phone-open", 3, name="push_opened", device="phone")

    resolve(con)

    # guest-7 and the phone were both first seen at hour 0; user_id sorts after device_id.
    eve = person("device_id", "phone")
    assert set(events(con).values()) == {(eve, "known_user"), (eve, "cross_device")}
    assert identifiers(con)[("user_id", "guest-7")] == (eve, "known_user", 1)
    assert identifiers(con)[("user_id", "eve")] == (eve, "known_user", 1)


def test_two_users_on_one_event_do_not_link_without_a_merge(con):
    add(con, "e1", 0, name="other", user="fay", props={"merged_user_id": "gus"})
    add(con, "e2", 1, user="gus")

    resolve(con)

    assert events(con)["e1"][0] != events(con)["e2"][0]


def test_person_ids_are_stable_across_reruns_and_later_days(con):
    add(con, "h-visit", 0, anon="cookie-h")
    add(con, "h-login", 1, name="identify", user="hal", anon="cookie-h")
    add(con, "i-visit", 2, anon="cookie-i", device="phone-i")
    resolve(con)
    first = events(con)

    resolve(con)
    assert events(con) == first

    # A later day: hal adds a device, ivy logs in on hers, and a stranger arrives.
    add(con, "h-phone", 30, name="identify", user="hal", device="phone-h")
    add(con, "i-login", 31, name="identify", user="ivy", device="phone-i")
    add(con, "new-visit", 32, anon="cookie-new")
    resolve(con)
    later = events(con)

    for event_id, (person_id, _) in first.items():
        assert later[event_id][0] == person_id
    assert later["h-phone"][0] == person("anonymous_id", "cookie-h")
    assert later["i-login"] == (person("anonymous_id", "cookie-i"), "known_user")
    assert later["i-visit"] == (person("anonymous_id", "cookie-i"), "anonymous_stitch")


def test_oversized_components_are_kept_whole_and_counted(con):
    add(con, "e1", 0, name="identify", user="jo", anon="c1", device="d1")
    add(con, "e2", 1, name="identify", user="jo", anon="c2", device="d2")
    add(con, "e3", 2, anon="lonely")

    counts = resolve(con, max_component_size=4)

    assert len({person_id for person_id, _ in events(con).values()}) == 2
    assert counts == {
        "events": 3,
        "identifiers": 6,
        "shared_devices": 0,
        "public_devices": 0,
        "junk_identifiers": 0,
        "persons": 2,
        "largest_component": 5,
        "oversized_components": 1,
        "anonymous_event_share": pytest.approx(1 / 3),
    }


def test_cookie_wins_over_a_shared_device_on_the_same_event(con):
    add(con, "kim-login", 0, name="identify", user="kim", device="family-pc")
    add(con, "lee-login", 1, name="identify", user="lee", device="family-pc")
    add(con, "lee-cookie", 2, name="identify", user="lee", anon="cookie-l")
    # The shared PC links nothing, so this cookie's own component (lee) decides.
    add(con, "browse", 3, anon="cookie-l", device="family-pc")

    resolve(con)

    assert events(con)["browse"] == (person("user_id", "lee"), "anonymous_stitch")


def test_empty_staging_gives_empty_tables(con):
    counts = resolve(con)

    assert con.execute("select count(*) from core.event_persons").fetchone() == (0,)
    assert counts["identifiers"] == 0
    assert counts["anonymous_event_share"] == 0.0
