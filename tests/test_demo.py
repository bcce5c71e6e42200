"""Tests of the demo generator: it is deterministic, it writes the vendors' export shapes, its
summary tells the truth about its files, and its expected answers hold up when reasoned out by
hand from the rows it wrote.

The rows are read here with a small reader of the test's own (json, pyarrow, fastavro), not with
the pipeline's adapters, so the generator is checked against the export formats themselves.
"""

from __future__ import annotations

import bisect
import json
import logging
import random
import re
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import fastavro
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from pipeline.demo import CUSTOM_EVENTS, FCM_CAMPAIGNS, _traffic, generate_demo, main
from pipeline.settings import Settings, parse_settings
from pipeline.tables import EVENT_NAMES, PUSH_CHANNEL

SMALL = {"seed": 7, "people": 200, "days": 10}
MICROS = 1_000_000
GA4_FILE = re.compile(r"ga4/(\d{4})/(\d{2})/events_(\d{8})\.(json|parquet)")
BRAZE_FILE = re.compile(r"braze/event_type=([A-Za-z.]+)/date=(\d{4}-\d{2}-\d{2})/part-0\.avro")
CANONICAL_FILE = re.compile(r"canonical/billing/charges_\d{8}\.jsonl")

# The export shapes' own vocabulary, as their documentation names it.
GA4_NAMES = {
    "session_start": "session_start",
    "page_view": "page_view",
    "screen_view": "screen_view",
    "view_item": "product_view",
    "add_to_cart": "add_to_cart",
    "begin_checkout": "checkout_start",
    "purchase": "purchase",
    "generate_lead": "lead_submit",
    "sign_up": "lead_submit",
    "login": "identify",
    "notification_receive": "push_delivered",
    "notification_foreground": "push_delivered",
    "notification_open": "push_opened",
    "notification_dismiss": "push_dismissed",
}
PUSH = "users.messages.pushnotification."
BRAZE_NAMES = {
    PUSH + "Send": "push_sent",
    PUSH + "Bounce": "push_bounced",
    PUSH + "Open": "push_opened",
    PUSH + "InfluencedOpen": "push_influenced_open",
    PUSH + "IosForeground": "push_delivered",
    "users.campaigns.EnrollInControl": "holdout_assigned",
    "users.behaviors.pushnotification.TokenStateChange": "other",
}
CUSTOM_EVENT = "users.behaviors.CustomEvent"


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return generate_demo(tmp_path_factory.mktemp("demo") / "landing", **SMALL)


# -- a reader of the test's own --------------------------------------------------------------


def _params(record: dict) -> dict:
    out = {}
    for param in record.get("event_params") or []:
        value = param["value"]
        if value.get("string_value") is not None:
            out[param["key"]] = value["string_value"]
        elif value.get("int_value") is not None:
            out[param["key"]] = int(value["int_value"])
        else:
            out[param["key"]] = value.get("double_value", value.get("float_value"))
    return out


def _from_ga4(record: dict) -> dict:
    """A GA4 export row as the fields the tests reason about (None where the row has none)."""
    params = _params(record)
    name = record.get("event_name")
    stamp = record.get("event_timestamp")
    pseudo = record.get("user_pseudo_id")
    collected = record.get("collected_traffic_source") or {}
    ecommerce = record.get("ecommerce") or {}
    revenue = None
    if name == "purchase":
        revenue = Decimal(str(ecommerce["purchase_revenue"]))
    elif name in ("generate_lead", "sign_up") and "value" in params:
        revenue = Decimal(str(params["value"]))
    row = {
        "source": "ga4",
        "native": name,
        "name": GA4_NAMES.get(name, "other") if name else None,
        "time": int(stamp) if stamp is not None else None,
        "user_id": record.get("user_id"),
        "anonymous_id": pseudo,
        "device_id": None,
        "platform": (record.get("platform") or "").lower(),
        "session": params.get("ga_session_id"),
        "utm_source": collected.get("manual_source") or params.get("source"),
        "utm_medium": collected.get("manual_medium") or params.get("medium"),
        "referrer": params.get("page_referrer"),
        "campaign": params.get("message_name"),
        "message": f"{params['message_id']}:{pseudo}" if "message_id" in params else None,
        "order_id": ecommerce.get("transaction_id") or params.get("transaction_id"),
        "revenue": revenue,
        "currency": params.get("currency"),
        "params": params,
        # What makes two GA4 rows one event exported twice.
        "identity": (pseudo, stamp and int(stamp), name, int(record["event_bundle_sequence_id"])),
    }
    if stamp is None:
        row["broken"] = "ga4_missing_event_timestamp"
    elif int(stamp) < 10**14:
        row["broken"] = "ga4_timestamp_in_milliseconds"
    elif not name:
        row["broken"] = "ga4_missing_event_name"
    elif not pseudo and not record.get("user_id"):
        row["broken"] = "ga4_no_identifier"
    return row


def _from_braze(record: dict, event_type: str) -> dict:
    """A Currents record as the fields the tests reason about."""
    if event_type == CUSTOM_EVENT:
        name = CUSTOM_EVENTS.get(record["name"], "other")
    else:
        name = BRAZE_NAMES[event_type]
    push = event_type.startswith(PUSH)
    row = {
        "source": "braze",
        "native": event_type,
        "name": name,
        "time": record["time"] * MICROS,
        "user_id": record.get("external_user_id"),
        "anonymous_id": f"braze:{record['user_id']}",
        "device_id": record.get("device_id"),
        "platform": record.get("platform"),
        "campaign": record.get("campaign_id") if push else None,
        "message": f"{record['dispatch_id']}:{record['user_id']}" if push else None,
        "holdout": "control" if name == "holdout_assigned" else None,
        "custom": record.get("name"),
        "revenue": None,
        "identity": record["id"],
    }
    if not record["id"]:
        row["broken"] = "braze_missing_id"
    return row


def _from_canonical(line: dict) -> dict:
    return {
        "source": "canonical",
        "native": line["event_name"],
        "name": line["event_name"],
        "time": int(datetime.fromisoformat(line["event_time"]).timestamp()) * MICROS,
        "user_id": line.get("user_id"),
        "anonymous_id": None,
        "device_id": None,
        "platform": line.get("platform"),
        "order_id": line.get("order_id"),
        "revenue": line.get("revenue"),
        "currency": line.get("currency"),
        "identity": line["event_id"],
    }


def _read(summary) -> list[dict]:
    """Every line or record of every file, in file order, with its file and 1-based row."""
    rows = []
    for rel in summary.files:
        path = summary.landing_root / rel
        read: list[dict] = []
        if GA4_FILE.fullmatch(rel) and rel.endswith(".json"):
            for line in path.read_text().splitlines():
                try:
                    read.append(_from_ga4(json.loads(line, parse_float=Decimal)))
                except json.JSONDecodeError:
                    read.append({"source": "ga4", "broken": "ga4_invalid_json"})
        elif GA4_FILE.fullmatch(rel):
            read = [_from_ga4(r) for r in pq.read_table(path).to_pylist()]
        elif match := BRAZE_FILE.fullmatch(rel):
            with path.open("rb") as handle:
                read = [_from_braze(r, match.group(1)) for r in fastavro.reader(handle)]
        else:
            assert CANONICAL_FILE.fullmatch(rel), rel
            lines = path.read_text().splitlines()
            read = [_from_canonical(json.loads(line, parse_float=Decimal)) for line in lines]
        rows += [{**r, "file": rel, "row": n} for n, r in enumerate(read, start=1)]
    return rows


@pytest.fixture(scope="module")
def files(demo):
    """The rows read, sorted into staged, duplicate and broken as the canonical rules say."""
    rows = _read(demo)
    staged: dict[tuple[str, int], dict] = {}
    first: dict[tuple, dict] = {}
    duplicates: list[tuple[dict, dict]] = []
    broken: Counter = Counter()
    for row in sorted(rows, key=lambda r: (r["file"], r["row"])):
        if "broken" in row:
            broken[row["broken"]] += 1
        elif (row["source"], row["identity"]) in first:
            duplicates.append((first[(row["source"], row["identity"])], row))
        else:
            first[(row["source"], row["identity"])] = row
            staged[(row["file"], row["row"])] = row
    truth = pq.read_table(demo.events_path).to_pylist()
    conversions = pq.read_table(demo.conversions_path).to_pylist()
    by_key = {t["key"]: staged[(t["source_file"], t["source_row"])] for t in truth}
    return {
        "rows": rows,
        "staged": staged,
        "duplicates": duplicates,
        "broken": dict(broken),
        "truth": truth,
        "person": {(t["source_file"], t["source_row"]): t["true_person"] for t in truth},
        "by_key": by_key,
        "conversions": {c["conversion_key"]: c for c in conversions},
    }


def _person_of(files, row: dict) -> str:
    return files["person"][(row["file"], row["row"])]


# -- determinism and layout ------------------------------------------------------------------


def _all_bytes(summary) -> dict[str, bytes]:
    """Every file the run wrote, by its path relative to the demo folder."""
    paths = [summary.landing_root / f for f in summary.files]
    paths += [summary.events_path, summary.conversions_path, summary.settings_path]
    root = summary.landing_root.parent
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in paths}


def test_same_seed_writes_the_same_bytes_and_another_seed_does_not(demo, tmp_path):
    again = generate_demo(tmp_path / "a" / "landing", **SMALL)
    assert again.files == demo.files
    first = _all_bytes(demo)
    assert first == _all_bytes(again)
    other = generate_demo(tmp_path / "b" / "landing", **{**SMALL, "seed": 8})
    second = _all_bytes(other)
    assert first["demo_truth/events.parquet"] != second["demo_truth/events.parquet"]
    # Everything differs but the settings file and a file or two that are tiny either way.
    shared = set(first) & set(second)
    assert sum(first[name] != second[name] for name in shared) >= len(shared) - 3


def test_the_month_is_written_in_the_vendors_export_shapes(demo):
    assert demo.truth_dir == demo.landing_root.parent / "demo_truth"
    assert demo.settings_path == demo.landing_root.parent / "pushassist.yaml"
    ga4 = [GA4_FILE.fullmatch(f) for f in demo.files if f.startswith("ga4/")]
    braze = [BRAZE_FILE.fullmatch(f) for f in demo.files if f.startswith("braze/")]
    canonical = [f for f in demo.files if f.startswith("canonical/")]
    assert all(ga4) and all(braze) and len(ga4) + len(braze) + len(canonical) == len(demo.files)
    # One GA4 export per day, most as NDJSON and one or two as Parquet.
    days = [date(demo.start.year, 1, 1) + timedelta(days=d) for d in range(SMALL["days"])]
    assert [m.group(3) for m in ga4] == [f"{d:%Y%m%d}" for d in days]
    assert all(m.group(1, 2) == (m.group(3)[:4], m.group(3)[4:6]) for m in ga4)
    formats = Counter(m.group(4) for m in ga4)
    assert formats["json"] > formats["parquet"] >= 1
    assert {m.group(1) for m in braze} == {
        PUSH + "Send",
        PUSH + "Bounce",
        PUSH + "Open",
        PUSH + "InfluencedOpen",
        PUSH + "IosForeground",
        "users.campaigns.EnrollInControl",
        CUSTOM_EVENT,
        "users.behaviors.pushnotification.TokenStateChange",
    }
    assert len(canonical) == 1 and CANONICAL_FILE.fullmatch(canonical[0])
    # Most of the month is GA4 and Braze.
    assert demo.rows_by_format["canonical/jsonl"] < demo.rows_written / 100

    # NDJSON writes INT64 as strings, Parquet as integers in the nested export schema.
    json_file = demo.landing_root / next(m.group(0) for m in ga4 if m.group(4) == "json")
    line = json.loads(json_file.read_text().splitlines()[0])
    assert isinstance(line["event_timestamp"], str) and isinstance(line["event_params"], list)
    ints = [p["value"]["int_value"] for p in line["event_params"] if p["value"]["int_value"]]
    assert ints and all(isinstance(v, str) for v in ints)
    parquet = demo.landing_root / next(m.group(0) for m in ga4 if m.group(4) == "parquet")
    schema = pq.read_schema(parquet)
    assert schema.field("event_timestamp").type == pa.int64()
    value = schema.field("event_params").type.value_type.field("value").type
    assert value.field("int_value").type == pa.int64()
    assert pa.types.is_struct(schema.field("collected_traffic_source").type)

    # Currents: a writer schema per file, times in whole seconds, and the Send schema gaining
    # fields half way through the period (schema drift the adapter must tolerate).
    sends = sorted((m for m in braze if m.group(1) == PUSH + "Send"), key=lambda m: m.group(2))
    versions = []
    for match in sends:
        with (demo.landing_root / match.group(0)).open("rb") as handle:
            reader = fastavro.reader(handle)
            fields = [f["name"] for f in reader.writer_schema["fields"]]
            assert isinstance(next(iter(reader))["time"], int)
        versions.append("locale_key" in fields)
    assert versions[0] is False and versions[-1] is True and versions == sorted(versions)


def test_a_file_holds_its_own_day_and_a_few_late_events_of_the_day_before(demo, files):
    late = 0
    for row in files["rows"]:
        if "broken" in row:
            continue
        if match := GA4_FILE.fullmatch(row["file"]):
            file_day = datetime.strptime(match.group(3), "%Y%m%d").date()
        elif match := BRAZE_FILE.fullmatch(row["file"]):
            file_day = date.fromisoformat(match.group(2))
        else:
            continue
        event_day = datetime.fromtimestamp(row["time"] / MICROS, UTC).date()
        assert event_day in (file_day, file_day - timedelta(days=1)), row
        late += event_day != file_day
    # Late rows are moved events; a duplicate copy may also land in the next day's file.
    assert demo.late_rows >= 1
    assert demo.late_rows <= late <= demo.late_rows + demo.duplicate_rows


# -- the summary against the files -----------------------------------------------------------


def test_summary_counts_match_the_files(demo, files):
    assert demo.rows_written == len(files["rows"])
    assert demo.broken_rows == files["broken"]
    assert set(demo.broken_rows) == {
        "ga4_invalid_json",
        "ga4_missing_event_timestamp",
        "ga4_timestamp_in_milliseconds",
        "ga4_missing_event_name",
        "ga4_no_identifier",
        "braze_missing_id",
    }
    assert demo.duplicate_rows == len(files["duplicates"]) > 0
    assert demo.events == len(files["staged"]) == len(files["truth"])
    assert demo.rows_written == demo.events + demo.duplicate_rows + sum(demo.broken_rows.values())
    by_format = Counter(
        ("ga4/ndjson" if r["file"].endswith(".json") else "ga4/parquet")
        if r["source"] == "ga4"
        else {"braze": "braze/avro", "canonical": "canonical/jsonl"}[r["source"]]
        for r in files["rows"]
    )
    assert demo.rows_by_format == dict(by_format)
    others = [r for r in files["staged"].values() if r["name"] == "other"]
    assert demo.unknown_event_rows == len(others)
    assert {r["native"] for r in others} == {
        "app_rating",
        CUSTOM_EVENT,
        "users.behaviors.pushnotification.TokenStateChange",
    }
    people = set(files["person"].values())
    assert demo.people == len(people) and SMALL["people"] * 0.8 < len(people) <= SMALL["people"]
    conversions = files["conversions"].values()
    assert demo.conversions == dict(Counter(c["conversion_type"] for c in conversions))
    assert set(demo.conversions) == {"purchase", "subscription", "lead"}
    assert demo.push_roles == dict(Counter(c["push_role"] for c in conversions))
    assert demo.duplicate_order_events >= 1
    messages = {(r["source"], r["message"]) for r in files["staged"].values() if r.get("message")}
    assert demo.messages_by_system == {
        "braze": sum(s == "braze" for s, _ in messages),
        "fcm": sum(s == "ga4" for s, _ in messages),
    }


def test_truth_names_the_person_of_every_staged_row_and_nothing_else(files):
    assert set(files["person"]) == set(files["staged"])
    for truth in files["truth"]:
        row = files["staged"][(truth["source_file"], truth["source_row"])]
        assert (truth["source"], truth["event_name"]) == (row["source"], row["name"])
        assert int(truth["event_time"].timestamp() * MICROS) == row["time"]
        # The id the source gives the event, where it has one; GA4 rows have none.
        expected = None if row["source"] == "ga4" else row["identity"]
        assert truth["event_id"] == expected


def test_duplicates_are_events_exported_again(files):
    kinds = Counter()
    for staged, copy in files["duplicates"]:
        same = {k: v for k, v in staged.items() if k not in ("file", "row", "params")}
        assert same == {k: v for k, v in copy.items() if k not in ("file", "row", "params")}
        kinds[(staged["source"], staged["file"][-4:], copy["file"][-4:])] += 1
    # GA4 rows exported twice, also across the NDJSON and Parquet shapes; Braze records
    # delivered twice (the same `id`).
    assert kinds[("ga4", "json", "json")] and kinds[("braze", "avro", "avro")]
    assert kinds[("ga4", "json", "quet")] and kinds[("ga4", "quet", "json")]


def test_truth_covers_every_conversion_once_after_order_dedupe(files):
    settings = parse_settings({"sources": {"braze": {"custom_events": CUSTOM_EVENTS}}})
    type_of = {e: name for name, d in settings.conversions.items() for e in d.events}
    kept, seen = {}, set()
    ordered = sorted(files["staged"].values(), key=lambda r: (r["time"], r["file"], r["row"]))
    for row in ordered:
        ctype = type_of.get(row["name"])
        if ctype is None:
            continue
        if row.get("order_id"):
            if (ctype, row["order_id"]) in seen:
                continue
            seen.add((ctype, row["order_id"]))
        kept[(row["file"], row["row"])] = (ctype, row)
    by_place = {(c["source_file"], c["source_row"]): c for c in files["conversions"].values()}
    assert set(kept) == set(by_place)
    for place, (ctype, row) in kept.items():
        truth = by_place[place]
        assert truth["conversion_type"] == ctype
        assert truth["true_person"] == files["person"][place]
        assert truth["source"] == row["source"]
        assert truth["order_id"] == row.get("order_id")
        # Braze custom events carry their price only in free-form properties: worth 0.
        assert Decimal(str(truth["value"])) == (row.get("revenue") or Decimal(0))
        assert truth["lookback_days"] == settings.conversions[ctype].lookback_days
        assert truth["push_role"] in ("last_touch", "assist", "none")
        assert (truth["assist_kind"] is not None) == (truth["push_role"] == "assist")
        assert (truth["last_touch_channel"] == PUSH_CHANNEL) == (truth["push_role"] == "last_touch")
        assert (truth["push_touch_count"] > 0) == (truth["push_role"] != "none")
    sources = Counter((c["conversion_type"], c["source"]) for c in files["conversions"].values())
    assert {k for k in sources} >= {
        ("purchase", "ga4"),
        ("lead", "ga4"),
        ("subscription", "braze"),
        ("subscription", "canonical"),
    }
    assert any(Decimal(str(c["value"])) > 0 for c in files["conversions"].values())


# -- identity --------------------------------------------------------------------------------


def test_the_identity_rules_recover_every_true_person(files):
    """Resolve people the way the spec says (links through shared ids, junk ids never link,
    a shared device's events go to the latest login before them) and compare with the truth."""
    junk_values = {v.lower() for v in Settings().identity.junk_values}

    def junk(value: str | None) -> bool:
        return value is None or value.lower() in junk_values or not value.strip("0-")

    rows = sorted(files["staged"].values(), key=lambda r: (r["time"], r["file"], r["row"]))

    def user(row):
        return None if junk(row.get("user_id")) else row["user_id"]

    def ids(row):
        return [f"{k}:{row[k]}" for k in ("anonymous_id", "device_id") if not junk(row.get(k))]

    users_of = defaultdict(set)
    for row in rows:
        for i in ids(row):
            if user(row):
                users_of[i].add(user(row))
    shared = {i for i, users in users_of.items() if len(users) > 1}
    # The story tablet: one app instance two users logged in on.
    assert shared == {"anonymous_id:5707a1e0000000000000000000000ab1"}

    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            x = parent[x]
        return x

    logins = defaultdict(list)
    for row in rows:
        nodes = [f"u:{user(row)}"] if user(row) else []
        nodes += [i for i in ids(row) if i not in shared]
        for node in nodes[1:]:
            parent[find(node)] = find(nodes[0])
        for i in ids(row):
            if i in shared and user(row):
                logins[i].append((row["time"], user(row)))
    component = {}
    for row in rows:
        place = (row["file"], row["row"])
        if user(row):
            node = f"u:{user(row)}"
        elif [i for i in ids(row) if i not in shared]:
            node = [i for i in ids(row) if i not in shared][0]
        else:
            device = ids(row)[0]
            k = bisect.bisect_right([t for t, _ in logins[device]], row["time"])
            assert k, "a shared device's event before any login on it"
            node = f"u:{logins[device][k - 1][1]}"
        component[place] = find(node)
    persons_of = defaultdict(set)
    for place, comp in component.items():
        persons_of[comp].add(files["person"][place])
    assert all(len(p) == 1 for p in persons_of.values())
    assert len(persons_of) == len(set(files["person"].values()))

    # The data exercises the guards: a placeholder user id written by several people, and
    # anonymous history on the web (backward stitching) and on a second device.
    junk_people = defaultdict(set)
    for row in rows:
        if row.get("user_id") and junk(row["user_id"]):
            junk_people[row["user_id"]].add(_person_of(files, row))
    assert set(junk_people) == {"0", "null", "anonymous"}
    assert max(len(p) for p in junk_people.values()) >= 2
    logins_seen = [r for r in rows if r["name"] == "identify"]
    assert len(logins_seen) > 10 and all(user(r) for r in logins_seen)
    known = {_person_of(files, r) for r in rows if user(r)}
    assert {_person_of(files, r) for r in rows} - known, "anonymous visitors"
    stitched = Counter(
        r["platform"]
        for r in rows
        if r["source"] == "ga4" and not user(r) and _person_of(files, r) in known
    )
    assert stitched["web"] > 0 and stitched["ios"] + stitched["android"] > 0
    # Several devices per person: a user seen on more than one app instance or browser.
    surfaces = defaultdict(set)
    for row in rows:
        if row["source"] == "ga4":
            surfaces[_person_of(files, row)].add(row["anonymous_id"])
    assert max(len(s) for s in surfaces.values()) >= 3


# -- the stories, reasoned by hand -----------------------------------------------------------

# conversion key: (person, push_role, assist_kind, last touch channel, push touches, GA)
STORIES = {
    # Push click on day 1, purchase through email on day 2.
    "story_click_assist_purchase": (
        "person_story_click_assist", "assist", "click", "Email", 1, True,
    ),
    # Web push sent, never opened; purchase after a Google visit the next day.
    "story_impression_assist_purchase": (
        "person_story_impression_assist", "assist", "impression", "Organic Search", 1, False,
    ),
    # The session an FCM push open started carries no utm: still push's touch, so push is last.
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
    for key, expected in STORIES.items():
        truth = files["conversions"][key]
        got = (
            truth["true_person"],
            truth["push_role"],
            truth["assist_kind"],
            truth["last_touch_channel"],
            truth["push_touch_count"],
            truth["ga_assist"],
        )
        assert got == expected, key


def test_story_events_say_what_the_answers_assume(files):
    by_key = files["by_key"]
    story = {t["key"]: t for t in files["truth"] if t["key"].startswith("story_")}
    # Story people have only their scripted events, so the touches below are all they have.
    story_people = {t["true_person"] for t in story.values()}
    assert all(t["key"] in story for t in files["truth"] if t["true_person"] in story_people)

    def row(key: str) -> dict:
        return by_key[key]

    def gap(a: str, b: str) -> timedelta:
        return timedelta(microseconds=row(b)["time"] - row(a)["time"])

    window = timedelta(minutes=Settings().attribution.push_open_session_window_minutes)
    # Click assist: a Braze open, and the app session 30 s after it (inside the window); the
    # order is reported twice and the truth keeps the earlier event.
    assert row("story_click_assist_01")["native"] == PUSH + "Open"
    assert row("story_click_assist_02")["native"] == "session_start"
    assert timedelta(0) <= gap("story_click_assist_01", "story_click_assist_02") <= window
    twice = [r for r in files["staged"].values() if r.get("order_id") == "ord_story_1"]
    assert len(twice) == 2 and min(twice, key=lambda r: r["time"]) is row(
        "story_click_assist_purchase"
    )
    assert "story_click_assist_purchase_again" not in files["conversions"]

    # Push-opened Direct: an FCM open, then a session without any source 40 s later; the next
    # day a Braze open and a session 5 minutes late.
    opened, direct = row("story_push_direct_02"), row("story_push_direct_03")
    assert (opened["source"], opened["native"]) == ("ga4", "notification_open")
    assert direct["native"] == "session_start"
    assert not any(direct.get(k) for k in ("utm_source", "utm_medium", "referrer"))
    assert gap("story_push_direct_02", "story_push_direct_03") <= window
    assert row("story_push_direct_subscription")["native"] == CUSTOM_EVENT
    assert gap("story_push_direct_06", "story_push_direct_07") > window

    # Lookback edges: 7 days + 1 s (out) and exactly 7 days (in, inclusive).
    seven = timedelta(days=Settings().conversions["purchase"].lookback_days)
    outside = gap("story_outside_lookback_01", "story_outside_lookback_purchase")
    assert outside == seven + timedelta(seconds=1)
    assert row("story_boundary_influenced_01")["native"] == PUSH + "InfluencedOpen"
    assert gap("story_boundary_influenced_01", "story_boundary_influenced_purchase") == seven

    # Impression assist: the only push event is a web push send, and the visit is anonymous.
    message = row("story_impression_assist_00")["message"]
    events = [r["native"] for r in files["staged"].values() if r.get("message") == message]
    assert events == [PUSH + "Send"] and row("story_impression_assist_00")["platform"] == "web"
    assert row("story_impression_assist_01")["user_id"] is None

    # Shared tablet: only the logins carry a user id; Y's login comes between the purchases.
    tablet = row("story_x_login")["anonymous_id"]
    on_tablet = sorted(
        (r for r in files["staged"].values() if r["anonymous_id"] == tablet),
        key=lambda r: r["time"],
    )
    assert [r["user_id"] for r in on_tablet if r["user_id"]] == ["u_story_x", "u_story_y"]
    order = [r for r in on_tablet if r["name"] in ("identify", "purchase")]
    assert order == [
        row("story_x_login"),
        row("story_shared_x_purchase"),
        row("story_y_login"),
        row("story_shared_y_purchase"),
    ]


# -- other things the truth depends on -------------------------------------------------------


def test_push_opened_direct_sessions_are_counted_from_the_rows(demo, files):
    window = Settings().attribution.push_open_session_window_minutes * 60 * MICROS
    opens = defaultdict(list)
    for row in files["staged"].values():
        if row["name"] == "push_opened":
            opens[_person_of(files, row)].append(row["time"])
    opened = direct = 0
    sources = Counter()
    for row in files["staged"].values():
        if row["name"] != "session_start":
            continue
        person = _person_of(files, row)
        if any(0 <= row["time"] - o <= window for o in opens[person]):
            opened += 1
            if not (row.get("utm_source") or row.get("utm_medium")):
                direct += 1
                sources[row["platform"]] += 1
    assert (demo.push_opened_sessions, demo.push_opened_direct_sessions) == (opened, direct)
    assert 0.15 < demo.push_as_direct_rate < 0.45
    # Mostly app sessions: a deep link that lost its utm.
    assert sources["ios"] + sources["android"] > sources["web"]


def test_each_push_message_comes_from_one_system(files):
    braze = [r for r in files["staged"].values() if r["source"] == "braze" and r.get("message")]
    fcm = [r for r in files["staged"].values() if r["source"] == "ga4" and r.get("message")]
    assert braze and fcm
    assert {r["campaign"] for r in fcm} <= set(FCM_CAMPAIGNS)
    assert not {r["campaign"] for r in braze} & set(FCM_CAMPAIGNS)
    assert not {r["message"] for r in braze} & {r["message"] for r in fcm}
    # FCM campaigns are composed for the Android app; Braze sends app and web push.
    assert {r["platform"] for r in fcm} == {"android"}
    assert {r["platform"] for r in braze} == {"ios", "android", "web"}


def test_the_global_control_group_gets_no_push(files):
    rows = files["staged"].values()
    control = {_person_of(files, r) for r in rows if r.get("holdout") == "control"}
    pushed = {_person_of(files, r) for r in rows if r["name"] in ("push_sent", "push_delivered")}
    assert control and not control & pushed
    assert 0.03 < len(control) / len(control | pushed) < 0.2


def test_the_settings_file_maps_the_braze_custom_events(demo, files):
    written = yaml.safe_load(demo.settings_path.read_text())
    assert written == demo.settings
    settings = parse_settings(written)
    assert settings.sources.braze.custom_events == CUSTOM_EVENTS
    assert settings.first_partition_date == demo.start
    assert set(CUSTOM_EVENTS.values()) <= set(EVENT_NAMES)
    custom = Counter(r["custom"] for r in files["staged"].values() if r["native"] == CUSTOM_EVENT)
    assert set(custom) == {*CUSTOM_EVENTS, "added_to_wishlist"}


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


class _Records(logging.Handler):
    """Collects log records (the suite may run without pytest's logging plugin)."""

    def __init__(self):
        super().__init__(level=logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_command_line_writes_files_and_logs_without_printing(tmp_path, capsys):
    landing = tmp_path / "landing"
    records = _Records()
    logger = logging.getLogger("pipeline.demo")
    logger.addHandler(records)
    previous = logger.level
    logger.setLevel(logging.INFO)
    try:
        code = main(["--landing", str(landing), "--people", "20", "--days", "3", "--seed", "3"])
    finally:
        logger.removeHandler(records)
        logger.setLevel(previous)
    assert code == 0
    assert len(list((landing / "ga4").rglob("events_*"))) == 3
    assert list((landing / "braze").rglob("*.avro"))
    assert (tmp_path / "demo_truth" / "conversions.parquet").is_file()
    assert (tmp_path / "pushassist.yaml").is_file()
    assert any("demo: wrote" in m for m in records.messages)
    assert capsys.readouterr().out == ""


def test_a_rerun_replaces_its_own_files_and_truth_must_stay_outside(tmp_path):
    landing = tmp_path / "landing"
    generate_demo(landing, people=20, days=3)
    summary = generate_demo(landing, people=20, days=2)
    on_disk = sorted(p.relative_to(landing).as_posix() for p in landing.rglob("*") if p.is_file())
    assert on_disk == sorted(summary.files)
    with pytest.raises(ValueError, match="outside the landing root"):
        generate_demo(landing, people=20, days=2, truth_dir=landing / "truth")
    with pytest.raises(ValueError, match="outside the landing root"):
        generate_demo(landing, people=20, days=2, settings_path=landing / "pushassist.yaml")
