"""Tests of the demo generator: it is deterministic, its summary tells the truth about its files,
and its expected answers hold up when reasoned out by hand from the events it wrote."""

from __future__ import annotations

import bisect
import csv
import json
import random
import re
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.demo import FILE_COLUMNS, _traffic, generate_demo, main
from pipeline.settings import Settings
from pipeline.tables import CANONICAL_COLUMNS, PUSH_CHANNEL

SMALL = {"seed": 7, "people": 200, "days": 10}
IDENTIFIERS = ("user_id", "anonymous_id", "device_id")
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
FILE_NAME = re.compile(
    r"canonical/(\d{4})/(\d{2})/events_(\d{4})-(\d{2})-(\d{2})\.(jsonl|csv|parquet)"
)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return generate_demo(tmp_path_factory.mktemp("demo") / "landing", **SMALL)


def _read(summary) -> tuple[list[dict], int]:
    """Every row of every file as a dict without nulls (times as text, revenue as Decimal),
    tagged with its file; and the number of JSON lines that do not parse."""
    rows, bad_json = [], 0
    for rel in summary.files:
        path = summary.landing_root / rel
        if path.suffix == ".jsonl":
            for line in path.read_text().splitlines():
                try:
                    rows.append({**json.loads(line, parse_float=Decimal), "_file": rel})
                except json.JSONDecodeError:
                    bad_json += 1
        elif path.suffix == ".csv":
            with path.open(newline="") as handle:
                for row in csv.DictReader(handle):
                    row = {k: v for k, v in row.items() if v != ""}
                    if "revenue" in row:
                        row["revenue"] = Decimal(row["revenue"])
                    rows.append({**row, "_file": rel})
        else:
            for row in pq.read_table(path).to_pylist():
                row = {k: v for k, v in row.items() if v is not None}
                row["event_time"] = row["event_time"].strftime(TIME_FORMAT)
                rows.append({**row, "_file": rel})
    return rows, bad_json


def _reason(row: dict) -> str | None:
    """Why a row is broken, by the canonical schema's rules (None when it is fine)."""
    if not row.get("event_id"):
        return "missing_event_id"
    try:
        datetime.strptime(row["event_time"], TIME_FORMAT)
    except ValueError:
        return "bad_timestamp"
    if not any(row.get(k) for k in IDENTIFIERS):
        return "no_identifier"
    return None


@pytest.fixture(scope="module")
def files(demo):
    rows, bad_json = _read(demo)
    valid: dict[str, dict] = {}
    broken: Counter = Counter({"invalid_json": bad_json} if bad_json else {})
    duplicates = 0
    for row in rows:
        reason = _reason(row)
        if reason:
            broken[reason] += 1
        elif row["event_id"] in valid:
            duplicates += 1
            same = {k: v for k, v in valid[row["event_id"]].items() if k != "_file"}
            assert same == {k: v for k, v in row.items() if k != "_file"}
        else:
            valid[row["event_id"]] = row
    truth = pq.read_table(demo.events_path).to_pylist()
    person = {r["event_id"]: r["true_person"] for r in truth}
    conversions = pq.read_table(demo.conversions_path).to_pylist()
    return {
        "rows": rows,
        "valid": valid,
        "broken": dict(broken),
        "duplicates": duplicates,
        "person": person,
        "conversions": {c["conversion_event_id"]: c for c in conversions},
    }


def _ts(text: str) -> datetime:
    return datetime.strptime(text, TIME_FORMAT).replace(tzinfo=UTC)


# -- determinism and layout ------------------------------------------------------------------


def _all_bytes(summary) -> dict[str, bytes]:
    paths = [summary.landing_root / f for f in summary.files]
    paths += [summary.events_path, summary.conversions_path]
    return {p.name: p.read_bytes() for p in paths}


def test_same_seed_writes_the_same_bytes_and_another_seed_does_not(demo, tmp_path):
    again = generate_demo(tmp_path / "a" / "landing", **SMALL)
    assert again.files == demo.files
    assert _all_bytes(again) == _all_bytes(demo)
    other = generate_demo(tmp_path / "b" / "landing", **{**SMALL, "seed": 8})
    first, second = _all_bytes(demo), _all_bytes(other)
    assert first["events.parquet"] != second["events.parquet"]
    assert sum(first[name] != second[name] for name in first) >= len(first) - 1


def test_files_are_daily_in_three_formats_with_the_canonical_columns(demo, files):
    assert demo.truth_dir == demo.landing_root.parent / "demo_truth"
    assert len(demo.files) == SMALL["days"]
    formats = Counter()
    for rel in demo.files:
        match = FILE_NAME.fullmatch(rel)
        assert match, rel
        year, month, *_, fmt = match.groups()
        assert rel.split("/")[1:3] == [year, month]
        formats[fmt] += 1
    assert set(formats) == {"jsonl", "csv", "parquet"}
    assert formats["jsonl"] > formats["csv"] + formats["parquet"]

    expected = [c.name for c in CANONICAL_COLUMNS if c.name not in ("source_file", "source_row")]
    assert list(FILE_COLUMNS) == expected
    csv_file = next(demo.landing_root / f for f in demo.files if f.endswith(".csv"))
    assert csv_file.read_text().splitlines()[0].split(",") == expected
    parquet_file = next(demo.landing_root / f for f in demo.files if f.endswith(".parquet"))
    schema = pq.read_schema(parquet_file)
    assert schema.names == expected
    assert schema.field("event_time").type == pa.timestamp("us", tz="UTC")
    assert schema.field("revenue").type == pa.decimal128(18, 2)

    jsonl = "".join((demo.landing_root / f).read_text() for f in demo.files if f.endswith(".jsonl"))
    revenues = re.findall(r'"revenue": ([0-9.]+)', jsonl)
    assert revenues and all(re.fullmatch(r"\d+\.\d\d", r) for r in revenues)
    valid = files["valid"].values()
    assert all(r["source"] == "canonical" for r in valid)
    assert all(json.loads(r["properties"]) is not None for r in valid if "properties" in r)


def test_a_file_holds_its_own_day_and_a_few_late_events_of_the_day_before(demo, files):
    late = 0
    for row in files["rows"]:
        if _reason(row):
            continue
        _, _, year, month, day, _ = FILE_NAME.fullmatch(row["_file"]).groups()
        file_day = date(int(year), int(month), int(day))
        event_day = _ts(row["event_time"]).date()
        assert event_day in (file_day, file_day - timedelta(days=1)), row
        late += event_day != file_day
    # Late rows are moved events; a duplicate copy may also land in the next day's file.
    assert demo.late_rows >= 1
    assert demo.late_rows <= late <= demo.late_rows + demo.duplicate_rows


# -- the summary against the files -----------------------------------------------------------


def test_summary_counts_match_the_files(demo, files):
    assert demo.rows_written == len(files["rows"]) + files["broken"]["invalid_json"]
    assert demo.broken_rows == files["broken"]
    assert set(demo.broken_rows) == {
        "invalid_json",
        "missing_event_id",
        "bad_timestamp",
        "no_identifier",
    }
    assert demo.duplicate_rows == files["duplicates"] > 0
    assert demo.events == len(files["valid"]) == len(files["person"])
    assert demo.rows_written == demo.events + demo.duplicate_rows + sum(demo.broken_rows.values())
    assert demo.rows_by_format.keys() == {"jsonl", "csv", "parquet"}
    assert sum(demo.rows_by_format.values()) == demo.rows_written
    rated = [r for r in files["valid"].values() if r["event_name"] == "app_rating"]
    assert demo.unknown_event_rows == len(rated) == 3
    assert demo.people == len(set(files["person"].values())) == SMALL["people"]
    by_type = Counter(c["conversion_type"] for c in files["conversions"].values())
    assert demo.conversions == dict(by_type)
    assert set(by_type) == {"purchase", "subscription", "lead"}
    assert demo.push_roles == dict(Counter(c["push_role"] for c in files["conversions"].values()))
    assert demo.duplicate_order_events >= 1


def test_truth_names_the_person_of_every_valid_event_and_nothing_else(files):
    assert set(files["person"]) == set(files["valid"])


def test_truth_covers_every_conversion_once_after_order_dedupe(files):
    settings = Settings()
    type_of = {e: name for name, d in settings.conversions.items() for e in d.events}
    kept, seen = {}, set()
    ordered = sorted(files["valid"].values(), key=lambda r: (r["event_time"], r["event_id"]))
    for row in ordered:
        ctype = type_of.get(row["event_name"])
        if ctype is None:
            continue
        if row.get("order_id"):
            if (ctype, row["order_id"]) in seen:
                continue
            seen.add((ctype, row["order_id"]))
        kept[row["event_id"]] = (ctype, row)
    assert len(seen) < sum(1 for r in ordered if r["event_name"] in type_of and "order_id" in r)
    assert set(kept) == set(files["conversions"])
    for eid, (ctype, row) in kept.items():
        truth = files["conversions"][eid]
        assert truth["conversion_type"] == ctype
        assert truth["true_person"] == files["person"][eid]
        assert Decimal(str(truth["value"])) == row.get("revenue", Decimal(0))
        assert truth["lookback_days"] == settings.conversions[ctype].lookback_days
        assert truth["push_role"] in ("last_touch", "assist", "none")
        assert (truth["assist_kind"] is not None) == (truth["push_role"] == "assist")
        assert (truth["last_touch_channel"] == PUSH_CHANNEL) == (truth["push_role"] == "last_touch")
        assert (truth["push_touch_count"] > 0) == (truth["push_role"] != "none")


# -- identity --------------------------------------------------------------------------------


def test_the_identity_rules_recover_every_true_person(files):
    """Resolve people the way the spec says (links through shared ids, junk ids never link,
    a shared device's events go to the latest login before them) and compare with the truth."""
    junk = set(Settings().identity.junk_values)
    rows = sorted(files["valid"].values(), key=lambda r: (r["event_time"], r["event_id"]))

    def ids(row):
        return [
            f"{k}:{row[k]}" for k in ("anonymous_id", "device_id") if row.get(k, "") not in junk
        ]

    users_of = defaultdict(set)
    for row in rows:
        for i in ids(row):
            if row.get("user_id"):
                users_of[i].add(row["user_id"])
    shared = {i for i, users in users_of.items() if len(users) > 1}
    assert shared == {"device_id:dev_story_tablet"}

    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            x = parent[x]
        return x

    logins = defaultdict(list)
    for row in rows:
        nodes = [f"u:{row['user_id']}"] if row.get("user_id") else []
        nodes += [i for i in ids(row) if i not in shared]
        for node in nodes[1:]:
            parent[find(node)] = find(nodes[0])
        for i in ids(row):
            if i in shared and row.get("user_id"):
                logins[i].append((row["event_time"], row["user_id"]))
    component = {}
    for row in rows:
        if row.get("user_id"):
            node = f"u:{row['user_id']}"
        elif [i for i in ids(row) if i not in shared]:
            node = [i for i in ids(row) if i not in shared][0]
        else:
            device = ids(row)[0]
            k = bisect.bisect_right([t for t, _ in logins[device]], row["event_time"])
            assert k, "a shared device's event before any login on it"
            node = f"u:{logins[device][k - 1][1]}"
        component[row["event_id"]] = find(node)
    persons_of = defaultdict(set)
    for eid, comp in component.items():
        persons_of[comp].add(files["person"][eid])
    assert all(len(p) == 1 for p in persons_of.values())
    assert len(persons_of) == len(set(files["person"].values()))

    # The data exercises the guards: placeholder ids shared by people, and anonymous history.
    junk_people = defaultdict(set)
    for row in rows:
        for k in ("anonymous_id", "device_id"):
            if row.get(k) in junk:
                junk_people[row[k]].add(files["person"][row["event_id"]])
    assert max(len(p) for p in junk_people.values()) >= 2
    assert all(r.get("user_id") for r in rows if r["event_name"] == "identify")
    assert sum(r["event_name"] == "identify" for r in rows) > 10
    known = {files["person"][r["event_id"]] for r in rows if r.get("user_id")}
    assert {files["person"][r["event_id"]] for r in rows} - known, "anonymous visitors"
    stitched = Counter(
        k
        for r in rows
        for k in ("anonymous_id", "device_id")
        if r.get(k) and not r.get("user_id") and files["person"][r["event_id"]] in known
    )
    # History before a login, on the web (backward stitching) and on a second device.
    assert stitched["anonymous_id"] > 0 and stitched["device_id"] > 0


# -- the stories, reasoned by hand -----------------------------------------------------------

# conversion event id: (person, push_role, assist_kind, last touch channel, push touches, GA)
STORIES = {
    # Push click on day 1, purchase through email on day 2.
    "story_click_assist_purchase": (
        "person_story_click_assist", "assist", "click", "Email", 1, True,
    ),
    # Web push delivered, never opened; purchase after a Google visit the next day.
    "story_impression_assist_purchase": (
        "person_story_impression_assist", "assist", "impression", "Organic Search", 1, False,
    ),
    # The session a push open started carries no utm: still push's touch, so push is last.
    "story_push_direct_subscription": (
        "person_story_push_direct", "last_touch", None, PUSH_CHANNEL, 1, False,
    ),
    # Open, then a Direct session 5 minutes later (its own touch): last non-direct is the push.
    "story_push_direct_lead": (
        "person_story_push_direct", "last_touch", None, PUSH_CHANNEL, 2, True,
    ),
    # The only push was opened 7 days and 1 second before the purchase.
    "story_outside_lookback_purchase": (
        "person_story_outside_lookback", "none", None, "Direct", 0, False,
    ),
    # Influenced open exactly 7 days before: the window is inclusive.
    "story_boundary_influenced_purchase": (
        "person_story_boundary_influenced", "assist", "influenced", "Paid Search", 1, False,
    ),
    # The shared tablet: each purchase is the user's who logged in last before it.
    "story_shared_x_purchase": ("person_story_shared_x", "none", None, "Direct", 0, False),
    "story_shared_y_purchase": ("person_story_shared_y", "none", None, "Organic Social", 0, False),
}  # fmt: skip


def test_story_conversions_have_the_hand_written_answers(files):
    for eid, expected in STORIES.items():
        truth = files["conversions"][eid]
        got = (
            truth["true_person"],
            truth["push_role"],
            truth["assist_kind"],
            truth["last_touch_channel"],
            truth["push_touch_count"],
            truth["ga_assist"],
        )
        assert got == expected, eid


def test_story_events_say_what_the_answers_assume(files):
    valid = files["valid"]
    by_id = {eid: r for eid, r in valid.items() if eid.startswith("story_")}
    # Story people have only their scripted events, so the touches below are all they have.
    story_people = {p for p in files["person"].values() if p.startswith("person_story_")}
    assert {files["person"][eid] for eid in by_id} == story_people
    assert all(eid in by_id for eid, p in files["person"].items() if p in story_people)

    def one(**match) -> dict:
        found = [r for r in by_id.values() if all(r.get(k) == v for k, v in match.items())]
        assert len(found) == 1, match
        return found[0]

    def gap(a: dict, b: dict) -> timedelta:
        return _ts(b["event_time"]) - _ts(a["event_time"])

    window = timedelta(minutes=Settings().attribution.push_open_session_window_minutes)
    # Click assist: the push session starts 30 s after the open (inside the window), and the
    # order is reported twice; the truth keeps the earlier event.
    opened = one(event_name="push_opened", message_id="msg_story_1")
    session = one(event_name="session_start", session_id="sess_story_1a")
    assert timedelta(0) <= gap(opened, session) <= window
    twice = [r for r in valid.values() if r.get("order_id") == "ord_story_1"]
    assert len(twice) == 2 and min(twice, key=lambda r: r["event_time"])["event_id"] == (
        "story_click_assist_purchase"
    )
    assert "story_click_assist_purchase_again" not in files["conversions"]

    # Push-opened Direct: no utm 40 s after the open; the next day's session is 5 min late.
    direct = one(event_name="session_start", session_id="sess_story_3b")
    assert not any(direct.get(k) for k in ("utm_source", "utm_medium", "referrer"))
    assert gap(one(event_name="push_opened", message_id="msg_story_3a"), direct) <= window
    late = one(event_name="session_start", session_id="sess_story_3c")
    assert gap(one(event_name="push_opened", message_id="msg_story_3b"), late) > window

    # Lookback edges: 7 days + 1 s (out) and exactly 7 days (in, inclusive).
    seven = timedelta(days=Settings().conversions["purchase"].lookback_days)
    outside = gap(
        one(event_name="push_opened", message_id="msg_story_4"),
        by_id["story_outside_lookback_purchase"],
    )
    assert outside == seven + timedelta(seconds=1)
    inside = gap(
        one(event_name="push_influenced_open", message_id="msg_story_5"),
        by_id["story_boundary_influenced_purchase"],
    )
    assert inside == seven

    # Impression assist: the only push touch is a delivery with no open or influenced open.
    msg2 = [r["event_name"] for r in by_id.values() if r.get("message_id") == "msg_story_2"]
    assert sorted(msg2) == ["push_delivered", "push_sent"]

    # Shared tablet: only logins carry a user id; Y's login comes between the two purchases.
    tablet = sorted(
        (r for r in valid.values() if r.get("device_id") == "dev_story_tablet"),
        key=lambda r: r["event_time"],
    )
    users = [(r["event_name"], r.get("user_id")) for r in tablet if r.get("user_id")]
    assert users == [("identify", "u_story_x"), ("identify", "u_story_y")]
    order = [r["event_id"] for r in tablet if r["event_name"] in ("identify", "purchase")]
    assert order == [
        "story_shared_x_01",
        "story_shared_x_purchase",
        "story_shared_y_01",
        "story_shared_y_purchase",
    ]
    assert files["person"]["story_shared_y_purchase"] == "person_story_shared_y"


# -- other things the truth depends on -------------------------------------------------------


def test_push_opened_direct_sessions_are_counted_from_the_events(demo, files):
    window = timedelta(minutes=Settings().attribution.push_open_session_window_minutes)
    opens = defaultdict(list)
    for row in files["valid"].values():
        if row["event_name"] == "push_opened":
            opens[files["person"][row["event_id"]]].append(_ts(row["event_time"]))
    opened = direct = 0
    for row in files["valid"].values():
        if row["event_name"] != "session_start":
            continue
        t = _ts(row["event_time"])
        if any(timedelta(0) <= t - o <= window for o in opens[files["person"][row["event_id"]]]):
            opened += 1
            direct += not (row.get("utm_source") or row.get("utm_medium"))
    assert (demo.push_opened_sessions, demo.push_opened_direct_sessions) == (opened, direct)
    assert 0 < demo.push_as_direct_rate < 1


def test_the_global_control_group_gets_no_push(files):
    groups = {}
    for row in files["valid"].values():
        if row["event_name"] == "holdout_assigned":
            groups[files["person"][row["event_id"]]] = row["holdout_group"]
    pushed = {
        files["person"][r["event_id"]]
        for r in files["valid"].values()
        if r["event_name"] == "push_sent"
    }
    control = {p for p, g in groups.items() if g == "control"}
    assert control and not control & pushed
    assert 0.03 < len(control) / len(groups) < 0.2


# GA4's default channel group, cut down to the sources and mediums the demo writes.
_SEARCH = {"google", "bing"}
_SOCIAL = {"facebook", "instagram", "l.instagram.com", "l.facebook.com"}


def _ga4_channel(utm: dict) -> str:
    source, medium = utm.get("utm_source", "").lower(), utm.get("utm_medium", "").lower()
    if not source and not medium and utm.get("referrer"):
        host = re.sub(r"^https?://(www\.)?", "", utm["referrer"]).split("/")[0]
        source = host.removesuffix(".com") if host.removesuffix(".com") in _SEARCH else host
        medium = "organic" if source in _SEARCH else "referral"
    if source in ("(direct)", "") and medium in ("(none)", "(not set)", ""):
        return "Direct"
    paid = re.fullmatch(r".*cp.*|ppc|retargeting|paid.*", medium)
    if source in _SEARCH and paid:
        return "Paid Search"
    if source in _SOCIAL or medium == "social":
        return "Organic Social"
    if source in _SEARCH or medium == "organic":
        return "Organic Search"
    if medium in ("referral", "app", "link"):
        return "Referral"
    if "email" in (source, medium):
        return "Email"
    if medium.endswith("push") or "mobile" in medium or "notification" in medium:
        return PUSH_CHANNEL
    return "Unassigned"


@pytest.mark.parametrize(
    "channel", ["Email", "Organic Search", "Paid Search", "Organic Social", "Direct", "Referral"]
)
def test_session_traffic_classifies_as_its_channel_under_ga4_rules(channel):
    rng = random.Random(1)
    for web in (True, False):
        for _ in range(50):
            assert _ga4_channel(_traffic(rng, channel, web)) == channel


# -- running it ------------------------------------------------------------------------------


def test_command_line_writes_files_and_logs_without_printing(tmp_path, caplog, capsys):
    landing = tmp_path / "landing"
    with caplog.at_level("INFO", logger="pipeline.demo"):
        code = main(["--landing", str(landing), "--people", "20", "--days", "3", "--seed", "3"])
    assert code == 0
    assert len(list((landing / "canonical").rglob("events_*"))) == 3
    assert (tmp_path / "demo_truth" / "conversions.parquet").is_file()
    assert any("demo: wrote" in r.getMessage() for r in caplog.records)
    assert capsys.readouterr().out == ""


def test_a_rerun_replaces_its_own_files_and_truth_must_stay_outside(tmp_path):
    landing = tmp_path / "landing"
    generate_demo(landing, people=20, days=3)
    summary = generate_demo(landing, people=20, days=2)
    on_disk = sorted(p.relative_to(landing).as_posix() for p in landing.rglob("events_*"))
    assert on_disk == sorted(summary.files)
    with pytest.raises(ValueError, match="outside the landing root"):
        generate_demo(landing, people=20, days=2, truth_dir=landing / "truth")
