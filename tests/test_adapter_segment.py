"""Segment adapter: the public warehouse sample, our own fixtures (JSON lines and a warehouse
table written from Segment's Spec), and the real ingest path."""

import datetime as dt
import json
import shutil
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest
from conftest import run_ingest

from pipeline.adapters import segment
from pipeline.tables import CANONICAL_COLUMNS

FIXTURES = Path(__file__).parent / "fixtures" / "segment"
OUTPUT_COLUMNS = {c.name for c in CANONICAL_COLUMNS} - {"source_file"} | {"raw"}


def read_file(path: Path) -> tuple[pa.Table, pa.Table]:
    return segment.read(path.read_bytes(), str(path), lambda name: None)


def by_id(rows: pa.Table) -> dict[str, dict]:
    """Rows by event id; of duplicate ids, the first in the file."""
    found: dict[str, dict] = {}
    for row in rows.to_pylist():
        found.setdefault(row["event_id"], row)
    return found


# --- the public sample (dbt-labs/segment, Apache-2.0), read in place ---------------------------


def test_sample_pages_row_is_a_web_page_view(shared_dir):
    rows, rejects = read_file(shared_dir / "samples" / "segment" / "example_segment_pages.csv")
    assert rows.num_rows == 1
    assert rejects.num_rows == 0
    row = rows.to_pylist()[0]
    assert row["source_row"] == 2
    assert row["event_id"] == "ajs-9527e97fc714abe02a23b3d24cf09a36"
    assert row["source"] == "segment"
    assert row["event_name"] == "page_view"
    # `timestamp` (not received_at or sent_at), a warehouse time without zone, read as UTC.
    assert row["event_time"] == "2015-02-23T22:28:55.000000Z"
    assert row["user_id"] == "97980cfea0067"
    assert row["anonymous_id"] == "507f191e810c19729de860ea"
    assert row["platform"] == "web"
    assert row["session_id"] is None
    assert (row["utm_source"], row["utm_medium"], row["utm_campaign"]) == (
        "facebook",
        "social",
        "autumn_collection_2015",
    )
    assert (row["utm_term"], row["utm_content"]) == ("foo", "bar")
    assert row["referrer"] == "https://www.google.com/"
    assert row["landing_url"] == "https://www.getdbt.com/"
    assert json.loads(row["properties"]) == {
        "url": "https://www.getdbt.com/",
        "path": "/product",
        "title": "Product",
        "search": "?name=ferret",
        "referrer": "https://www.google.com/",
    }
    assert json.loads(row["raw"])["context_ip"] == "8.8.8.8"


def test_sample_lookup_table_rows_are_rejected_with_a_reason(shared_dir):
    # The referrer lookup beside the sample is no event table: every row is rejected, none lost.
    rows, rejects = read_file(shared_dir / "samples" / "segment" / "referrer_mapping.csv")
    assert rows.num_rows == 0
    assert rejects.num_rows == 1803
    assert set(rejects.column("reason").to_pylist()) == {
        "not a Segment event table: the header has no id or timestamp column"
    }
    first = rejects.to_pylist()[0]
    assert first["source_row"] == 2
    assert json.loads(first["raw"]) == {
        "medium": "email",
        "source": "Outlook.com",
        "host": "mail.live.com",
    }


def test_samples_through_ingest_conserve_every_row(shared_dir, tmp_path):
    landing = tmp_path / "landing"
    (landing / "segment").mkdir(parents=True)
    for name in ("example_segment_pages.csv", "referrer_mapping.csv"):
        shutil.copy(shared_dir / "samples" / "segment" / name, landing / "segment" / name)
    # The referrer lookup is not an event table: the adapter rejects all of it, with why.
    con, totals = run_ingest(
        landing, dt.date(2015, 1, 1), dt.date(2015, 12, 31), first_date=dt.date(2015, 1, 1)
    )
    assert totals == {"read": 1804, "staged": 1, "quarantined": 1803, "duplicate": 0}
    staged = con.execute(
        "select event_id, event_time, event_date, source_file from staging.events"
    ).fetchall()
    assert staged == [
        (
            "ajs-9527e97fc714abe02a23b3d24cf09a36",
            dt.datetime(2015, 2, 23, 22, 28, 55, tzinfo=dt.UTC),
            dt.date(2015, 2, 23),
            str(landing / "segment" / "example_segment_pages.csv"),
        )
    ]
    bad = con.execute(
        "select * from quality.ingest_counts "
        "where rows_read <> rows_staged + rows_quarantined + rows_duplicate"
    ).fetchall()
    assert bad == []


# --- our fixtures --------------------------------------------------------------------------------


def test_every_fixture_line_is_mapped_or_rejected():
    rows, rejects = read_file(FIXTURES / "messages.jsonl")
    # 22 non-blank lines: 17 mapped (one a re-sent duplicate), 5 rejected.
    assert rows.num_rows == 17
    assert set(rows.column_names) <= OUTPUT_COLUMNS | {"source_row"}
    assert rows.schema.field("source_row").type == pa.int64()
    assert all(
        rows.schema.field(c).type in (pa.string(), pa.null())
        for c in rows.column_names
        if c != "source_row"
    )
    names = {r["event_id"]: r["event_name"] for r in rows.to_pylist()}
    assert names == {
        "seg-page-1": "page_view",
        "seg-identify-1": "identify",
        "seg-alias-1": "identify",
        "seg-push-received-1": "push_delivered",
        "seg-push-tapped-1": "push_opened",
        "seg-push-bounced-1": "push_bounced",
        "seg-screen-1": "screen_view",
        "seg-product-viewed-1": "product_view",
        "seg-product-added-1": "add_to_cart",
        "seg-checkout-1": "checkout_start",
        "seg-order-1": "purchase",
        "seg-order-2": "purchase",
        "seg-order-3": "purchase",
        "seg-app-opened-1": "other",
        "seg-signed-up-1": "identify",
        "seg-group-1": "other",
    }
    assert rejects.select(["source_row", "reason"]).to_pylist() == [
        {"source_row": 18, "reason": "line is not valid JSON"},
        {"source_row": 19, "reason": "line is JSON but not an object"},
        {"source_row": 20, "reason": "messageId is missing"},
        {"source_row": 21, "reason": "timestamp is missing"},
        {"source_row": 22, "reason": "timestamp 'yesterday' is not an ISO-8601 time"},
    ]
    assert rejects.column("raw")[0].as_py() == "this is not json"


def test_page_carries_its_traffic_source():
    page = by_id(read_file(FIXTURES / "messages.jsonl")[0])["seg-page-1"]
    assert page["source_row"] == 1
    assert page["event_time"] == "2024-01-02T09:00:00.000000Z"  # timestamp, not receivedAt
    assert page["anonymous_id"] == "anon-1"
    assert page["platform"] == "web"
    assert page["utm_source"] == "newsletter"
    assert page["utm_medium"] == "email"
    assert page["utm_campaign"] == "jan_sale"  # context.campaign.name
    assert (page["utm_content"], page["utm_term"]) == ("hero", "shoes")
    assert page["referrer"] == "https://mail.example/"
    assert page["landing_url"].startswith("https://shop.example/?utm_source=newsletter")
    assert page["click_id"] == "gclid:Cj0KabcD"
    assert json.loads(page["properties"])["name"] == "Home"


def test_alias_links_the_previous_id_to_the_user():
    rows = by_id(read_file(FIXTURES / "messages.jsonl")[0])
    alias = rows["seg-alias-1"]
    assert (alias["event_name"], alias["user_id"], alias["anonymous_id"]) == (
        "identify",
        "user-1",
        "anon-2",
    )
    assert json.loads(alias["properties"]) == {
        "previous_id": "anon-2",
        "alias_anonymous_id": "anon-3",
    }
    identify = rows["seg-identify-1"]
    assert (identify["user_id"], identify["anonymous_id"]) == ("user-1", "anon-1")


def test_push_received_and_tapped_are_one_app_message():
    rows = by_id(read_file(FIXTURES / "messages.jsonl")[0])
    received, tapped = rows["seg-push-received-1"], rows["seg-push-tapped-1"]
    # 08:00+01:00 is 07:00 UTC.
    assert received["event_time"] == "2024-01-03T07:00:00.000000Z"
    assert tapped["event_time"] == "2024-01-03T07:02:00.000000Z"
    for row in (received, tapped):
        assert row["message_id"] == "msg-42"
        assert row["campaign_id"] == "Referral Flow"  # the mobile spec sends only the name
        assert row["push_kind"] == "app"
        assert row["platform"] == "ios"
        assert row["device_id"] == "idfv-1"  # context.device.id, not the zeroed advertisingId
        assert row["user_id"] == "user-1"
    bounced = rows["seg-push-bounced-1"]
    assert (bounced["campaign_id"], bounced["platform"], bounced["message_id"]) == (
        "cmp-7",
        "android",
        None,
    )
    # Other events carry no push fields.
    assert rows["seg-page-1"]["push_kind"] is None


def test_order_revenue_excludes_shipping_and_tax_and_currency_defaults_to_usd():
    rows = by_id(read_file(FIXTURES / "messages.jsonl")[0])
    rows.update(by_id(read_file(FIXTURES / "order_completed.csv")[0]))
    orders = {
        key: (rows[key]["revenue"], rows[key]["currency"], rows[key]["order_id"])
        for key in ("seg-order-1", "seg-order-2", "seg-order-3", "wh-order-1", "wh-order-2")
    }
    assert orders == {
        # revenue 25 with total 30, shipping 3, tax 2: revenue is taken as it is.
        "seg-order-1": ("25", "EUR", "order-1"),
        # no currency: USD.
        "seg-order-2": ("10.5", "USD", "order-2"),
        # no revenue: total 30 - shipping 3 - tax 2; currency upper-cased.
        "seg-order-3": ("25.00", "EUR", "order-3"),
        "wh-order-1": ("42.50", "GBP", "order-9"),
        "wh-order-2": ("5", "USD", "order-10"),
    }
    # Currency is for conversions only.
    assert rows["seg-checkout-1"]["currency"] is None


def test_unknown_tracks_and_calls_are_other_with_their_name():
    rows = by_id(read_file(FIXTURES / "messages.jsonl")[0])
    opened = json.loads(rows["seg-app-opened-1"]["properties"])
    assert opened == {"from_background": True, "original_event_name": "Application Opened"}
    assert json.loads(rows["seg-group-1"]["properties"]) == {"original_event_name": "group"}
    signed_up = rows["seg-signed-up-1"]
    assert (signed_up["user_id"], signed_up["anonymous_id"]) == ("user-3", "anon-4")


def test_warehouse_track_table_is_read_by_its_columns():
    rows, rejects = read_file(FIXTURES / "order_completed.csv")
    assert rejects.num_rows == 0
    first = by_id(rows)["wh-order-1"]
    assert first["event_name"] == "purchase"
    assert first["event_time"] == "2024-01-04T10:00:00.000000Z"
    assert (first["platform"], first["device_id"]) == ("android", "android-9")
    assert json.loads(first["properties"])["shipping"] == "5"


def test_fixtures_through_ingest(tmp_path):
    landing = tmp_path / "landing"
    shutil.copytree(FIXTURES, landing / "segment")
    con, totals = run_ingest(landing, dt.date(2024, 1, 1), dt.date(2024, 1, 31))
    # 22 JSON lines + 2 warehouse rows; the re-sent seg-page-1 is a duplicate.
    assert totals == {"read": 24, "staged": 18, "quarantined": 5, "duplicate": 1}
    purchases = con.execute(
        "select event_id, revenue, currency from staging.events "
        "where event_name = 'purchase' order by event_id"
    ).fetchall()
    assert purchases == [
        ("seg-order-1", Decimal("25.00"), "EUR"),
        ("seg-order-2", Decimal("10.50"), "USD"),
        ("seg-order-3", Decimal("25.00"), "EUR"),
        ("wh-order-1", Decimal("42.50"), "GBP"),
        ("wh-order-2", Decimal("5.00"), "USD"),
    ]
    # The first copy of the duplicate is kept (line 1, with its campaign).
    kept = con.execute(
        "select source_row, utm_campaign from staging.events where event_id = 'seg-page-1'"
    ).fetchall()
    assert kept == [(1, "jan_sale")]
    reasons = con.execute(
        "select source_row, reason from quality.quarantined_events order by source_row"
    ).fetchall()
    assert [r for _, r in reasons] == [
        "line is not valid JSON",
        "line is JSON but not an object",
        "messageId is missing",
        "timestamp is missing",
        "timestamp 'yesterday' is not an ISO-8601 time",
    ]
    bad = con.execute(
        "select * from quality.ingest_counts "
        "where rows_read <> rows_staged + rows_quarantined + rows_duplicate"
    ).fetchall()
    assert bad == []


@pytest.mark.parametrize(
    ("name", "text", "reason"),
    [
        ("events.csv", "id,timestamp,user_id\nx1,2024-01-02,u1\n", "cannot tell the table kind"),
        ("pages.csv", "timestamp,user_id\n2024-01-02,u1\n", "the header has no id column"),
    ],
)
def test_unusable_warehouse_tables_reject_every_row(tmp_path, name, text, reason):
    path = tmp_path / name
    path.write_text(text)
    rows, rejects = read_file(path)
    assert rows.num_rows == 0
    assert rejects.num_rows == 1
    assert reason in rejects.column("reason")[0].as_py()
