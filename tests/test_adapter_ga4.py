"""GA4 / Firebase export adapter: public export samples, our own fixtures, Parquet, and ingest."""

import datetime as dt
import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import run_ingest

from pipeline import ingest
from pipeline.adapters import ga4
from pipeline.tables import CANONICAL_COLUMNS, EVENT_NAMES

FIXTURE = Path(__file__).parent / "fixtures" / "ga4" / "events_20240305.ndjson"
APP_INSTANCE = "5f1e3c9a7b2d4e6f8a0b1c2d3e4f5a6b"
OUTPUT_COLUMNS = {c.name for c in CANONICAL_COLUMNS} - {"source_file"} | {"raw"}

# Rows staged and rejected per public sample file (every line is a well-formed event).
SAMPLE_COUNTS = {
    "event_id_input.ndjson": (2, 0),
    "events_with_where.ndjson": (2, 0),
    "item_params_input.ndjson": (1, 0),
    "purchase_input.ndjson": (1, 0),
    "source_medium_input.ndjson": (3, 0),
    "url_gclid_input.ndjson": (1, 0),
}

# The BigQuery export schema written to Parquet (the columns these tests need).
PARAM_VALUE = pa.struct(
    [
        ("string_value", pa.string()),
        ("int_value", pa.int64()),
        ("float_value", pa.float64()),
        ("double_value", pa.float64()),
    ]
)
PARQUET_SCHEMA = pa.schema(
    [
        ("event_date", pa.string()),
        ("event_timestamp", pa.int64()),
        ("event_name", pa.string()),
        ("event_params", pa.list_(pa.struct([("key", pa.string()), ("value", PARAM_VALUE)]))),
        ("event_bundle_sequence_id", pa.int64()),
        ("user_id", pa.string()),
        ("user_pseudo_id", pa.string()),
        ("stream_id", pa.string()),
        ("platform", pa.string()),
        (
            "ecommerce",
            pa.struct([("purchase_revenue", pa.float64()), ("transaction_id", pa.string())]),
        ),
        (
            "collected_traffic_source",
            pa.struct(
                [
                    ("manual_source", pa.string()),
                    ("manual_medium", pa.string()),
                    ("manual_campaign_name", pa.string()),
                    ("manual_content", pa.string()),
                    ("manual_term", pa.string()),
                    ("gclid", pa.string()),
                ]
            ),
        ),
    ]
)


def read(data: bytes, path: str = "landing/ga4/events_20240305.ndjson"):
    return ga4.read(data, path, lambda name: None)


def read_path(path: Path):
    return read(path.read_bytes(), str(path))


def by_row(table: pa.Table) -> dict[int, dict]:
    return {row["source_row"]: row for row in table.to_pylist()}


def props(row: dict) -> dict:
    return json.loads(row["properties"])


def ndjson(*records: dict) -> bytes:
    return "\n".join(json.dumps(r) for r in records).encode() + b"\n"


def param(key, string=None, integer=None, double=None) -> dict:
    value = {"string_value": string, "int_value": integer, "float_value": None}
    return {"key": key, "value": value | {"double_value": double}}


def parquet_bytes(records: list[dict], schema: pa.Schema = PARQUET_SCHEMA) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pylist(records, schema=schema), sink)
    return sink.getvalue().to_pybytes()


def typed(record: dict) -> dict:
    """A JSON export row as the Parquet export holds it: INT64 as numbers, not strings."""
    record = dict(record)
    for name in ("event_timestamp", "event_bundle_sequence_id"):
        record[name] = int(record[name])
    record["event_params"] = [
        {**p, "value": {**p["value"], "int_value": _int(p["value"]["int_value"])}}
        for p in record["event_params"]
    ]
    if record.get("ecommerce"):
        revenue = record["ecommerce"].get("purchase_revenue")
        record["ecommerce"] = record["ecommerce"] | {
            "purchase_revenue": None if revenue is None else float(revenue)
        }
    return record


def _int(value):
    return None if value is None else int(value)


@pytest.fixture
def samples(shared_dir) -> Path:
    folder = shared_dir / "samples" / "ga4_export"
    if not folder.exists():
        pytest.skip(f"{folder} is absent: the public GA4 export samples are not here")
    return folder


# Public samples (github.com/ArtemKorneevGA/dataform-ga4-sessions, MIT), read in place.


def test_every_sample_row_is_staged_or_rejected(samples):
    assert sorted(p.name for p in samples.glob("*.ndjson")) == sorted(SAMPLE_COUNTS)
    for name, counts in SAMPLE_COUNTS.items():
        rows, rejects = read_path(samples / name)
        lines = [line for line in (samples / name).read_text().splitlines() if line.strip()]
        assert (rows.num_rows, rejects.num_rows) == counts, name
        assert set(rows.column_names) <= OUTPUT_COLUMNS
        for row in rows.to_pylist():
            assert row["source"] == "ga4"
            assert row["event_name"] in EVENT_NAMES
            assert row["raw"] == lines[row["source_row"] - 1]
            assert row["anonymous_id"] and row["event_id"].startswith("ga4_")


def test_sample_event_ids_are_stable_and_tell_events_apart(samples):
    first, _ = read_path(samples / "event_id_input.ndjson")
    again, _ = read_path(samples / "event_id_input.ndjson")
    assert first.column("event_id").to_pylist() == again.column("event_id").to_pylist()
    # Same user, microsecond, name and batch: only engagement_time_msec and
    # event_tag_timestamp differ, so they are two events.
    one, two = first.column("event_id").to_pylist()
    assert one != two
    # The same purchase exported in three files (one with item params added) is one event;
    # the second purchase of events_with_where is 1 microsecond later, another event.
    purchase = read_path(samples / "purchase_input.ndjson")[0].column("event_id")[0].as_py()
    items = read_path(samples / "item_params_input.ndjson")[0].column("event_id")[0].as_py()
    where = read_path(samples / "events_with_where.ndjson")[0].column("event_id").to_pylist()
    assert purchase == items == where[0]
    assert where[1] != purchase


def test_sample_time_identity_session_and_other_event(samples):
    row = by_row(read_path(samples / "event_id_input.ndjson")[0])[1]
    # event_timestamp "1702643009060308" microseconds = 2023-12-15 12:23:29.060308 UTC.
    assert row["event_time"] == "2023-12-15T12:23:29.060308Z"
    assert row["anonymous_id"] == "107079580.1702642286"
    assert row["user_id"] is None and "device_id" not in row
    assert row["platform"] == "web"
    assert row["session_id"] == "107079580.1702642286.1702642286"
    assert row["referrer"] == "https://www.test.com/de-de/"
    assert row["landing_url"] == "https://www.test.com/de-de/kontakt/"
    assert row["event_name"] == "other"
    assert props(row)["original_event_name"] == "form_visibility"
    assert props(row)["params"]["engagement_time_msec"] == 17415


def test_sample_purchase_revenue_currency_and_order(samples):
    row = by_row(read_path(samples / "purchase_input.ndjson")[0])[1]
    assert row["event_name"] == "purchase"
    assert row["event_time"] == "2023-12-15T14:45:59.604143Z"
    # ecommerce.purchase_revenue "31.0" (the value param is the int 31), currency param EUR.
    assert (row["revenue"], row["currency"], row["order_id"]) == ("31.00", "EUR", "257059")
    assert props(row)["items"] == 2
    # The second row's transaction_id param says 257050 but its ecommerce record says 257059:
    # the ecommerce record wins, as it does in GA4's own reports.
    second = by_row(read_path(samples / "events_with_where.ndjson")[0])[2]
    assert second["order_id"] == "257059"


def test_sample_session_traffic_comes_from_collected_traffic_source(samples):
    rows = by_row(read_path(samples / "source_medium_input.ndjson")[0])
    for row in rows.values():
        assert (row["utm_source"], row["utm_medium"]) == ("google", "organic")
        assert (row["utm_campaign"], row["utm_term"]) == ("(organic)", "(not provided)")
        assert props(row)["traffic_source_from"] == "collected_traffic_source"
    # Row 2's event params say campaign cpc_campaign: the collected record wins as a whole.
    assert rows[2]["utm_campaign"] == "(organic)"


def test_sample_gclid_becomes_click_id(samples):
    rows = by_row(read_path(samples / "source_medium_input.ndjson")[0])
    assert rows[1]["click_id"] is None
    assert rows[2]["click_id"] == "gclid:12345"  # from the gclid event param
    url = by_row(read_path(samples / "url_gclid_input.ndjson")[0])[1]
    assert url["click_id"] == "gclid:12345"  # from page_location ...?gclid=12345


def test_samples_through_ingest(samples, tmp_path):
    landing = tmp_path / "landing"
    (landing / "ga4").mkdir(parents=True)
    for name in SAMPLE_COUNTS:
        shutil.copy(samples / name, landing / "ga4" / name)
    con, totals = run_ingest(landing, dt.date(2023, 10, 1), dt.date(2023, 12, 31))
    assert totals["read"] == totals["staged"] + totals["quarantined"] + totals["duplicate"]
    # The purchase exported three times is staged once.
    assert totals == {"read": 10, "staged": 8, "quarantined": 0, "duplicate": 2}
    purchases = con.execute(
        "select revenue::varchar, currency, order_id, event_time from staging.events "
        "where event_name = 'purchase' order by event_time"
    ).fetchall()
    assert [p[:3] for p in purchases] == [("31.00", "EUR", "257059")] * 2
    assert purchases[0][3] == dt.datetime(2023, 12, 15, 14, 45, 59, 604143, tzinfo=dt.UTC)


# Our fixtures, written from the public GA4 BigQuery export schema and the list of Firebase
# automatically collected events (see tests/fixtures/ga4/README.md).


@pytest.fixture
def fixture_rows():
    rows, rejects = read_path(FIXTURE)
    return by_row(rows), by_row(rejects)


def test_fixture_counts_and_reject_reasons(fixture_rows):
    rows, rejects = fixture_rows
    lines = FIXTURE.read_text().splitlines()
    assert len(rows) + len(rejects) == len(lines) == 15
    assert {n: r["reason"] for n, r in rejects.items()} == {
        11: "event_timestamp is missing",
        12: "line is not valid JSON",
        13: "event_name is missing",
        14: "event_timestamp 1709640300 is not in microseconds since 1970 "
        "(seconds or milliseconds?)",
    }
    assert all(r["raw"] == lines[n - 1] for n, r in rejects.items())


def test_fixture_fcm_notification_events(fixture_rows):
    rows, _ = fixture_rows
    receive, opened, foreground, dismiss = rows[1], rows[2], rows[4], rows[5]
    assert [r["event_name"] for r in (receive, opened, foreground, dismiss)] == [
        "push_delivered",
        "push_opened",
        "push_delivered",
        "push_dismissed",
    ]
    for row in (receive, opened, foreground, dismiss):
        assert (row["push_kind"], row["platform"], row["anonymous_id"]) == (
            "app",
            "android",
            APP_INSTANCE,
        )
    # message_name (the composer's notification name) wins over the analytics label.
    assert receive["campaign_id"] == opened["campaign_id"] == "spring_sale_push"
    assert foreground["campaign_id"] == "order_update"  # label only
    assert dismiss["campaign_id"] == "weekly_digest"
    # The receive and the open of one message on one app instance share the message id.
    assert receive["message_id"] == opened["message_id"] == f"7364512098123456789:{APP_INSTANCE}"
    assert props(foreground)["original_event_name"] == "notification_foreground"
    assert props(dismiss)["params"]["topic"] == "/topics/news"


def test_fixture_session_start_carries_its_source_and_medium(fixture_rows):
    rows, _ = fixture_rows
    row = rows[3]
    assert row["event_name"] == "session_start"
    assert row["event_time"] == "2024-03-05T10:05:00.250000Z"
    assert row["session_id"] == f"{APP_INSTANCE}.1709633100"
    assert (row["utm_source"], row["utm_medium"], row["utm_campaign"]) == (
        "firebase",
        "notification",
        "spring_sale",
    )
    assert rows[2]["session_id"] == row["session_id"]  # the open is in the session it started


def test_fixture_purchase_value_as_double_int_and_ecommerce(fixture_rows):
    rows, _ = fixture_rows
    # value in double_value, ecommerce.transaction_id "(not set)": the param's id is used.
    assert (rows[6]["revenue"], rows[6]["currency"], rows[6]["order_id"]) == (
        "49.99",
        "EUR",
        "T-1001",
    )
    # value in int_value (as a string), no ecommerce record.
    assert (rows[7]["revenue"], rows[7]["order_id"]) == ("20.00", "T-1002")
    # ecommerce.purchase_revenue 15.5 beats the value param; no usable transaction id.
    assert (rows[8]["revenue"], rows[8]["currency"], rows[8]["order_id"]) == (
        "15.50",
        "USD",
        None,
    )


def test_fixture_int64_as_strings_or_numbers(fixture_rows):
    rows, _ = fixture_rows
    assert rows[1]["event_time"] == "2024-03-05T10:00:00.000000Z"  # "1709632800000000"
    web = rows[15]  # INT64 as JSON numbers
    assert web["event_time"] == "2024-03-05T12:06:40.123456Z"
    assert web["session_id"] == "1187654321.1709640000.1709640390"
    # No collected_traffic_source: the session's last-click manual campaign.
    assert (web["utm_source"], web["utm_medium"], web["utm_campaign"], web["utm_content"]) == (
        "newsletter",
        "email",
        "march_digest",
        "hero_banner",
    )
    assert web["referrer"] == "https://mail.example.net/"


def test_fixture_login_links_user_and_other_events_keep_their_name(fixture_rows):
    rows, _ = fixture_rows
    assert (rows[9]["event_name"], rows[9]["user_id"], rows[9]["anonymous_id"]) == (
        "identify",
        "user-42",
        APP_INSTANCE,
    )
    assert rows[10]["event_name"] == "other"
    assert props(rows[10])["original_event_name"] == "first_open"


def test_event_names_map_to_the_canonical_vocabulary():
    names = [*ga4.EVENT_MAP, "scroll", "user_engagement", "first_visit"]
    records = [
        {"event_timestamp": str(1709632800000000 + i), "event_name": name, "user_pseudo_id": "a"}
        for i, name in enumerate(names)
    ]
    rows, rejects = read(ndjson(*records))
    assert rejects.num_rows == 0
    mapped = dict(zip(names, rows.column("event_name").to_pylist(), strict=True))
    assert mapped == ga4.EVENT_MAP | {"scroll": "other", "user_engagement": "other"} | {
        "first_visit": "other"
    }


def test_param_slots_are_coalesced_and_normalised():
    base = {"event_timestamp": 1709632800000000, "event_name": "purchase", "user_pseudo_id": "a"}
    as_string = base | {"event_params": [param("value", integer="5")]}
    as_number = base | {"event_params": [param("value", integer=5)]}
    as_float = base | {"event_params": [param("value", double="5.5")], "user_pseudo_id": "b"}
    rows, _ = read(ndjson(as_string, as_number, as_float))
    ids = rows.column("event_id").to_pylist()
    assert ids[0] == ids[1] != ids[2]
    assert rows.column("revenue").to_pylist() == ["5.00", "5.00", "5.50"]


def test_parquet_export_maps_like_ndjson_and_keeps_event_ids():
    purchase = json.loads(FIXTURE.read_text().splitlines()[5])
    page_view = {
        "event_timestamp": 1709640500000000,
        "event_name": "page_view",
        "user_pseudo_id": "1187654321.1709640000",
        "platform": "WEB",
        "event_params": [
            param("ga_session_id", integer=1709640390),
            param("page_location", string="https://shop.example.com/?gclid=Cj0KCQ"),
        ],
        "collected_traffic_source": {
            "manual_source": "google",
            "manual_medium": "cpc",
            "manual_campaign_name": "brand",
            "gclid": "Cj0KCQ",
        },
    }
    data = parquet_bytes([typed(purchase), page_view])
    rows, rejects = read(data, "landing/ga4/events_20240305.parquet")
    assert rejects.num_rows == 0
    parquet = by_row(rows)
    ndjson_purchase = by_row(read_path(FIXTURE)[0])[6]
    # A re-export of the same event in the other format gets the same id and values.
    for column in ("event_id", "event_time", "revenue", "currency", "order_id", "session_id"):
        assert parquet[1][column] == ndjson_purchase[column], column
    assert json.loads(parquet[1]["raw"])["event_timestamp"] == 1709636700000000
    assert (parquet[2]["utm_source"], parquet[2]["utm_medium"]) == ("google", "cpc")
    assert (parquet[2]["utm_campaign"], parquet[2]["click_id"]) == ("brand", "gclid:Cj0KCQ")
    assert parquet[2]["session_id"] == "1187654321.1709640000.1709640390"


def test_parquet_timestamp_typed_event_time_is_read_as_microseconds():
    schema = pa.schema(
        [
            ("event_timestamp", pa.timestamp("us", tz="UTC")),
            ("event_name", pa.string()),
            ("user_pseudo_id", pa.string()),
        ]
    )
    moment = dt.datetime(2024, 3, 5, 10, 0, 0, 123456, tzinfo=dt.UTC)
    record = {"event_timestamp": moment, "event_name": "screen_view", "user_pseudo_id": "a"}
    rows, _ = read(parquet_bytes([record], schema), "events_20240305.parquet")
    assert rows.column("event_time").to_pylist() == ["2024-03-05T10:00:00.123456Z"]


def test_unreadable_parquet_names_the_file():
    with pytest.raises(ingest.UnreadableFileError, match="ga4/events_20240305.parquet"):
        read(b"not parquet", "landing/ga4/events_20240305.parquet")


def test_fixtures_through_ingest(tmp_path):
    landing = tmp_path / "landing"
    (landing / "ga4").mkdir(parents=True)
    shutil.copy(FIXTURE, landing / "ga4" / FIXTURE.name)
    # The Parquet export of the same day repeats the value-as-double purchase.
    purchase = json.loads(FIXTURE.read_text().splitlines()[5])
    (landing / "ga4" / "events_20240305.parquet").write_bytes(parquet_bytes([typed(purchase)]))
    march = (dt.date(2024, 3, 1), dt.date(2024, 3, 31))
    con, totals = run_ingest(landing, *march)
    assert totals == {"read": 16, "staged": 11, "quarantined": 4, "duplicate": 1}
    reasons = con.execute(
        "select source_row, reason from quality.quarantined_events order by source_row"
    ).fetchall()
    # Only the adapter's own rejects: nothing it mapped broke the canonical schema.
    assert [n for n, _ in reasons] == [11, 12, 13, 14]
    staged = con.execute(
        "select event_name, count(*) from staging.events group by 1 order by 1"
    ).fetchall()
    assert dict(staged) == {
        "identify": 1,
        "other": 1,
        "page_view": 1,
        "purchase": 3,
        "push_delivered": 2,
        "push_dismissed": 1,
        "push_opened": 1,
        "session_start": 1,
    }


def _purchase_line(value_slot: dict) -> bytes:
    row = {
        "event_date": "20240305",
        "event_timestamp": "1709654400000000",
        "event_name": "purchase",
        "user_pseudo_id": "p1",
        "event_params": [
            {"key": "value", "value": value_slot},
            {"key": "currency", "value": {"string_value": "EUR"}},
            {"key": "transaction_id", "value": {"string_value": "T4"}},
        ],
    }
    return (json.dumps(row) + "\n").encode()


def test_an_empty_string_slot_does_not_hide_the_number_in_another():
    empty_string = {"string_value": "", "int_value": "40", "float_value": None}
    rows, rejects = ga4.read(_purchase_line(empty_string), "events_20240305.json", None)
    assert rows.column("revenue").to_pylist() == ["40.00"]
    assert rejects.num_rows == 0


def test_a_value_that_is_no_number_reaches_ingest_as_it_is(tmp_path):
    folder = tmp_path / "ga4"
    folder.mkdir()
    (folder / "events_20240305.json").write_bytes(_purchase_line({"string_value": "abc"}))
    con, totals = run_ingest(tmp_path, dt.date(2024, 3, 5), dt.date(2024, 3, 5))
    assert totals == {"read": 1, "staged": 0, "quarantined": 1, "duplicate": 0}
    reasons = con.execute("select reason from quality.quarantined_events").fetchall()
    assert reasons == [("revenue 'abc' is not a number",)]
