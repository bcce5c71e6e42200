"""Snowplow adapter: the public dbt-snowplow seeds, our own fixtures (written from Snowplow's
canonical event model), split context tables, and the real ingest path."""

import collections
import datetime as dt
import json
import shutil
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest
from conftest import run_ingest

from pipeline.adapters import snowplow
from pipeline.tables import CANONICAL_COLUMNS

FIXTURES = Path(__file__).parent / "fixtures" / "snowplow"
OUTPUT_COLUMNS = {c.name for c in CANONICAL_COLUMNS} - {"source_file"} | {"raw"}
WEB = ("dbt-snowplow-web", "snowplow_web_events.csv")
ECOMMERCE = ("dbt-snowplow-ecommerce", "snowplow_ecommerce_events.csv")
# The duplicate event ids the web seed holds on purpose (each twice).
WEB_DUPLICATES = {
    "17e6ae5e-d694-4241-8663-4118e950fc38",
    "1b4b3b57-3cb7-4df2-a7fd-526afa9e3c76",
    "9e983d4a-e07c-4858-8e97-bdb7feb31241",
}


def read_file(path: Path) -> tuple[pa.Table, pa.Table]:
    """Read a file as ingest does: siblings come from the same folder."""

    def sibling(name: str) -> bytes | None:
        other = path.parent / name
        return other.read_bytes() if other.exists() else None

    return snowplow.read(path.read_bytes(), str(path), sibling)


def by_id(rows: pa.Table) -> dict[str, dict]:
    """Rows by event id; of duplicate ids, the first in the file."""
    found: dict[str, dict] = {}
    for row in rows.to_pylist():
        found.setdefault(row["event_id"], row)
    return found


@pytest.fixture
def samples(shared_dir) -> Path:
    return shared_dir / "samples" / "snowplow"


# --- the public samples (dbt-snowplow-web and -ecommerce seeds), read in place ------------------


def test_every_sample_file_is_mapped_or_rejected(samples):
    for folder in ("dbt-snowplow-web", "dbt-snowplow-ecommerce"):
        for path in sorted((samples / folder).glob("*.csv")):
            rows, rejects = read_file(path)
            lines = len(path.read_text().splitlines()) - 1
            if path.name.endswith("_events.csv"):
                assert rows.num_rows + rejects.num_rows == lines, path.name
                assert rejects.num_rows == 0, path.name
            else:
                # Context tables hold no events of their own.
                assert (rows.num_rows, rejects.num_rows) == (0, 0), path.name


def test_web_sample(samples):
    rows, _ = read_file(samples.joinpath(*WEB))
    assert rows.num_rows == 161
    assert set(rows.column_names) <= OUTPUT_COLUMNS | {"source_row"}
    names = collections.Counter(rows.column("event_name").to_pylist())
    assert names == {"page_view": 50, "other": 111}
    assert set(rows.column("platform").to_pylist()) == {"web"}
    # Duplicate ids are kept for ingest to count.
    ids = collections.Counter(rows.column("event_id").to_pylist())
    assert {i for i, n in ids.items() if n > 1} == WEB_DUPLICATES
    assert ids["9e983d4a-e07c-4858-8e97-bdb7feb31241"] == 2

    paid = by_id(rows)["5a605238-df42-4d91-a567-e47c8c27a4ff"]
    assert paid["source_row"] == 32
    assert paid["event_time"] == "2021-03-04T21:39:49.485000Z"  # derived_tstamp
    assert paid["user_id"] == "long session"
    assert paid["anonymous_id"] == (
        "4f011c929234934761dfff0bca3b5509a1b6d139560439e894a8d26a363654ad"
    )
    assert (paid["utm_source"], paid["utm_medium"], paid["utm_campaign"]) == (
        "google-ad",
        "ppc",
        "data-utilization",
    )
    assert paid["click_id"] == "gclid:EAIaIQobChMI2K3yxpmp7wIVqhkGAB0wLAicEAAYAiAAEgKyYfD_BwE"
    assert paid["referrer"] == "https://www.google.co.uk"
    assert paid["landing_url"].startswith("https://snowplowanalytics.com/resources/data-util")
    assert paid["device_id"] is None
    props = json.loads(paid["properties"])
    assert props["mkt_network"] == "Google"
    assert props["network_userid"].startswith("fb2bde33")


def test_ecommerce_sample(samples):
    rows, _ = read_file(samples.joinpath(*ECOMMERCE))
    assert rows.num_rows == 835
    names = collections.Counter(rows.column("event_name").to_pylist())
    assert names == {
        "other": 583,
        "product_view": 179,
        "add_to_cart": 38,
        "checkout_start": 19,  # checkout_step actions at step 1
        "purchase": 15,
        "page_view": 1,
    }
    assert collections.Counter(rows.column("platform").to_pylist()) == {"web": 825, "android": 10}
    found = by_id(rows)

    # A transaction action: revenue 13 with shipping 1 (a 12 EUR hat) from the split context.
    hat = found["a64a0af6-639e-4735-b06c-7cc4e2ca0c17"]
    assert hat["event_name"] == "purchase"
    assert hat["event_time"] == "2022-12-22T13:25:42.138000Z"
    assert (hat["revenue"], hat["currency"], hat["order_id"]) == ("12.00", "EUR", "TtlZ3b")
    assert hat["anonymous_id"] == (
        "31cb1a4bfecf9361e583c5da7ec9ad7153d2bec1e588dd7f0e1676ea4b58d8b8"
    )
    assert hat["session_id"] == ("0a42e1e29bd84c4f87003cb8c4c7098e31a93eed89b10f10c83e0c9c3810318d")
    props = json.loads(hat["properties"])
    assert props["transaction_revenue"] == "13"
    assert props["ecommerce_user_id"] == "U12345"

    # The Android tracker's events: ids from the client_session context, a USD transaction.
    android = found["11b3a24b-deda-4871-aa6b-d6142cb126fd"]
    assert (android["event_name"], android["platform"]) == ("add_to_cart", "android")
    assert android["anonymous_id"] == "a16349a5-b57e-4afe-9737-87cd074b9edd"
    assert android["session_id"] == "c04bddd7-81ad-4f02-a468-f53a47079637"
    usd = found["ab06d353-d71a-4e3a-88d5-92e4b92043d4"]
    assert (usd["revenue"], usd["currency"], usd["order_id"]) == ("231231.00", "USD", "id-123")

    # An action with no type in either layout stays `other`, with its original name.
    untyped = json.loads(found["313a1cfb-720a-4310-813b-f8145a3bb95b"]["properties"])
    assert untyped["original_event_name"] == "snowplow_ecommerce_action"
    assert "action_type" not in untyped


def test_samples_through_ingest(samples, tmp_path):
    landing = tmp_path / "landing" / "snowplow"
    shutil.copytree(samples / "dbt-snowplow-web", landing / "web")
    shutil.copytree(samples / "dbt-snowplow-ecommerce", landing / "ecommerce")
    con, totals = run_ingest(tmp_path / "landing", dt.date(2020, 1, 1), dt.date(2022, 12, 31))
    # 161 + 835 events; the three duplicate ids of the web seed are counted as duplicates, and
    # one ecommerce row (app `skip-me`) has no identifier at all.
    assert totals == {"read": 996, "staged": 992, "quarantined": 1, "duplicate": 3}
    per_file = con.execute(
        """
        select
            regexp_extract(source_file, '[^/]+$'),
            sum(rows_read),
            sum(rows_staged),
            sum(rows_quarantined),
            sum(rows_duplicate)
        from quality.ingest_counts
        group by 1
        order by 1
        """
    ).fetchall()
    assert per_file == [
        ("snowplow_ecommerce_events.csv", 835, 834, 1, 0),
        ("snowplow_web_events.csv", 161, 158, 0, 3),
    ]
    duplicates = con.execute("select event_id from routed where destination = 'duplicate'")
    assert {r[0] for r in duplicates.fetchall()} == WEB_DUPLICATES
    quarantined = con.execute(
        "select source_row, reason from quality.quarantined_events"
    ).fetchall()
    assert quarantined == [(836, "has none of user_id, anonymous_id, device_id")]
    revenue = con.execute(
        "select sum(revenue) from staging.events where event_name = 'purchase' and currency = 'EUR'"
    ).fetchall()[0][0]
    # 14 EUR transactions, each net of its shipping: 1234567.89 - 3, three 13 - 1, five 26 - 1,
    # three 18 - 3 and two 43 - 3.
    assert revenue == Decimal("1234564.89") + 36 + 125 + 45 + 80
    bad = con.execute(
        "select * from quality.ingest_counts "
        "where rows_read <> rows_staged + rows_quarantined + rows_duplicate"
    ).fetchall()
    assert bad == []


# --- our fixtures --------------------------------------------------------------------------------


def test_fixture_rows_are_mapped_or_rejected():
    rows, rejects = read_file(FIXTURES / "events.csv")
    assert rows.num_rows == 8
    assert {r["event_id"]: r["event_name"] for r in rows.to_pylist()} == {
        "sp-page-1": "page_view",
        "sp-transaction-1": "purchase",
        "sp-transaction-item-1": "other",
        "sp-ping-1": "other",
        "sp-screen-1": "screen_view",
        "sp-ecommerce-transaction-1": "purchase",
        "sp-ecommerce-add-1": "add_to_cart",
    }
    assert rejects.select(["source_row", "reason"]).to_pylist() == [
        {"source_row": 7, "reason": "event_id is missing"},
        {
            "source_row": 8,
            "reason": "no usable timestamp: derived_tstamp missing, collector_tstamp missing",
        },
        {
            "source_row": 9,
            "reason": "no usable timestamp: derived_tstamp 'later', collector_tstamp 'soon'",
        },
        {"source_row": 11, "reason": "expected 29 fields, found 6"},
    ]


def test_page_view_traffic_source_and_duplicate_id():
    rows, _ = read_file(FIXTURES / "events.csv")
    pages = [r for r in rows.to_pylist() if r["event_id"] == "sp-page-1"]
    assert [p["source_row"] for p in pages] == [2, 5]
    page = pages[0]
    assert page["event_time"] == "2024-01-05T10:00:00.123000Z"
    assert (page["anonymous_id"], page["session_id"], page["user_id"]) == (
        "cookie-1",
        "session-1",
        None,
    )
    assert (page["utm_source"], page["utm_medium"], page["utm_campaign"]) == (
        "google",
        "cpc",
        "winter",
    )
    assert (page["utm_content"], page["utm_term"]) == ("ad-1", "boots")
    assert page["click_id"] == "gclid:EAIaIQ"
    assert page["referrer"] == "https://www.google.com/"


def test_legacy_transaction_revenue_is_net_of_tax_and_shipping():
    found = by_id(read_file(FIXTURES / "events.csv")[0])
    sale = found["sp-transaction-1"]
    # tr_total 35.00 - tr_tax 3.00 - tr_shipping 2.00, in tr_currency.
    assert (sale["revenue"], sale["currency"], sale["order_id"]) == ("30.00", "GBP", "tr-1")
    assert sale["user_id"] == "user-7"
    props = json.loads(sale["properties"])
    assert (props["tr_total"], props["tr_tax"], props["tr_shipping"]) == ("35.00", "3.00", "2.00")
    item = json.loads(found["sp-transaction-item-1"]["properties"])
    assert item["original_event_name"] == "transaction_item"


def test_contexts_from_split_tables_and_inline_columns():
    found = by_id(read_file(FIXTURES / "events.csv")[0])
    sale = found["sp-ecommerce-transaction-1"]  # action and transaction in split tables
    assert (sale["revenue"], sale["currency"], sale["order_id"]) == ("16.00", "EUR", "T-1")
    added = found["sp-ecommerce-add-1"]  # action inline, in an unstruct_event column
    assert added["event_name"] == "add_to_cart"
    assert added["revenue"] is None


def test_time_falls_back_to_collector_and_platform_from_tracker():
    found = by_id(read_file(FIXTURES / "events.csv")[0])
    ping = found["sp-ping-1"]
    assert ping["event_time"] == "2024-01-05T11:00:00.000000Z"
    assert json.loads(ping["properties"])["event_time_source"] == "collector_tstamp"
    screen = found["sp-screen-1"]
    assert (screen["platform"], screen["user_id"], screen["anonymous_id"]) == (
        "ios",
        "user-8",
        None,
    )


def test_context_table_alone_holds_no_events():
    rows, rejects = read_file(FIXTURES / "com_snowplowanalytics_snowplow_ecommerce_action_1.csv")
    assert (rows.num_rows, rejects.num_rows) == (0, 0)


def test_fixtures_through_ingest(tmp_path):
    shutil.copytree(FIXTURES, tmp_path / "landing" / "snowplow")
    con, totals = run_ingest(tmp_path / "landing", dt.date(2024, 1, 1), dt.date(2024, 1, 31))
    # 12 data rows (the two context tables add none); sp-page-1 twice.
    assert totals == {"read": 12, "staged": 7, "quarantined": 4, "duplicate": 1}
    kept = con.execute(
        "select source_row, event_time from staging.events where event_id = 'sp-page-1'"
    ).fetchall()
    assert kept == [(2, dt.datetime(2024, 1, 5, 10, 0, 0, 123000, tzinfo=dt.UTC))]
    sales = con.execute(
        "select event_id, revenue, currency from staging.events "
        "where event_name = 'purchase' order by event_id"
    ).fetchall()
    assert sales == [
        ("sp-ecommerce-transaction-1", Decimal("16.00"), "EUR"),
        ("sp-transaction-1", Decimal("30.00"), "GBP"),
    ]


def test_headerless_file_is_rejected_line_by_line(tmp_path):
    path = tmp_path / "enriched.tsv"
    path.write_text("shop\tweb\t2024-01-05 10:00:00\n\nshop\tweb\t2024-01-05 10:01:00\n")
    rows, rejects = read_file(path)
    assert rows.num_rows == 0
    assert rejects.column("source_row").to_pylist() == [1, 3]
    assert "no event_id column" in rejects.column("reason")[0].as_py()


def test_bad_revenue_is_passed_on_for_ingest_to_quarantine(tmp_path):
    path = tmp_path / "events.csv"
    path.write_text(
        "event,event_id,derived_tstamp,domain_userid,tr_orderid,tr_total,tr_tax,tr_currency\n"
        "transaction,t1,2024-01-05 10:00:00,c1,o1,ten,1,USD\n"
    )
    rows, _ = read_file(path)
    assert rows.column("revenue").to_pylist() == ["ten"]
