"""Braze Currents adapter: Braze's public sample files and our own Avro fixtures.

The sample files are read in place from ../shared/samples/braze_currents (Braze's licence allows
them as test fixtures only, so they are never copied into the repository). Our own fixtures in
tests/fixtures/braze/ are written by `write_fixtures` below; regenerate them with
`.venv/bin/python tests/test_adapter_braze.py` after changing it. Every expected value here was
worked out by hand from the JSON renderings or the fixture definitions.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import fastavro
import pytest
from conftest import run_ingest

from pipeline import adapters, ingest
from pipeline.adapters import braze
from pipeline.identity import resolve_identity
from pipeline.settings import IdentitySettings

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "braze"
SAMPLE_ID = "f47ac10b-58cc-4372-a567-0e02b2c3d479"
SAMPLE_BRAZE_ID = "639a35d192b0df004d06514c"
# time 2033802504 = 23539 days (2034-06-13) + 32904 s (09:08:24) after the epoch.
SAMPLE_TIME = "2034-06-13T09:08:24Z"
LEGACY = "legacy_s3_dataexport.S3.integration.599f118afbe76a01c513c63c+2+0000035465.avro"

# Braze ids of our fixture people: alice and carol are known users, B and D anonymous profiles.
ALICE, B, CAROL, D = (f"65f0000000000000000{x}01" for x in ("0a", "0b", "0c", "0d"))


def read(path: Path) -> tuple[list[dict], list[dict]]:
    rows, rejects = braze.read(path.read_bytes(), str(path), lambda name: None)
    return rows.to_pylist(), rejects.to_pylist()


def by_id(rows: list[dict]) -> dict[str, dict]:
    return {r["event_id"]: r for r in rows}


def props(row: dict) -> dict:
    return json.loads(row["properties"])


# --- Braze's public samples ----------------------------------------------------------------


@pytest.fixture
def samples(shared_dir: Path) -> Path:
    folder = shared_dir / "samples" / "braze_currents"
    if not folder.exists():
        pytest.skip(f"{folder} is absent: the Braze Currents samples are not here")
    return folder


MAPPED_SAMPLES = {
    "users.messages.pushnotification.Send": "push_sent",
    "users.messages.pushnotification.Open": "push_opened",
    "users.messages.pushnotification.Bounce": "push_bounced",
    "users.messages.pushnotification.IosForeground": "push_delivered",
    "users.behaviors.Purchase": "purchase",
    "users.behaviors.app.SessionStart": "session_start",
    "users.campaigns.EnrollInControl": "holdout_assigned",
    "users.UserOrphan": "identity_merge",
    "users.UserDeleteRequest": "deletion_request",
}


def test_every_sample_file_maps_each_record(samples):
    files = sorted((samples / "Avro").glob("*.avro")) + [samples / "legacy_2017" / LEGACY]
    assert len(files) == 95
    for path in files:
        rows, rejects = read(path)
        with path.open("rb") as handle:
            records = sum(1 for _ in fastavro.reader(handle))
        # Each sample holds one placeholder record; the 2017 export holds 12 real-looking sends.
        assert (len(rows), len(rejects)) == ((12, 0) if path.name == LEGACY else (1, 0)), path
        assert len(rows) + len(rejects) == records
        assert [r["source_row"] for r in rows] == list(range(1, records + 1))
        event_type = path.stem if path.name != LEGACY else "users.messages.pushnotification.Send"
        expected = MAPPED_SAMPLES.get(event_type, "other")
        assert {r["event_name"] for r in rows} == {expected}, path
        for row in rows:
            assert row["source"] == "braze"
            assert props(row)["braze_event_type"] == event_type
            assert json.loads(row["raw"])["id"] == row["event_id"]
            if expected == "other":
                assert props(row)["original_event_name"] in (event_type, "name")


def unwrap(value):
    """avro-tools writes a union value as {"type": value}."""
    if isinstance(value, dict) and len(value) == 1:
        return next(iter(value.values()))
    return value


def test_sample_ids_match_the_json_renderings(samples):
    for rendering in sorted((samples / "JSON").glob("*.json")):
        record = {k: unwrap(v) for k, v in json.loads(rendering.read_text()).items()}
        (row,) = read(samples / "Avro" / f"{rendering.stem}.avro")[0]
        assert row["event_id"] == record["id"]
        assert row["device_id"] == record.get("device_id")
        if rendering.stem == "users.UserOrphan":
            assert row["user_id"] is None
            assert row["anonymous_id"] == f"braze:{record['orphaned_by_id']}"
        else:
            assert row["user_id"] == record.get("external_user_id")
            braze_id = record.get("user_id")
            assert row["anonymous_id"] == (f"braze:{braze_id}" if braze_id else None)


def test_sample_values_by_hand(samples):
    avro = samples / "Avro"
    (send,) = read(avro / "users.messages.pushnotification.Send.avro")[0]
    assert send["event_id"] == SAMPLE_ID
    assert send["event_time"] == SAMPLE_TIME
    assert send["user_id"] == "external_user_id"
    assert send["anonymous_id"] == f"braze:{SAMPLE_BRAZE_ID}"
    assert send["device_id"] == "device_id"
    assert send["platform"] == "android"
    assert send["campaign_id"] == SAMPLE_ID
    # dispatch_id 639a35d192b0df004d06514c, then the Braze user id (the same placeholder).
    assert send["message_id"] == f"{SAMPLE_BRAZE_ID}:{SAMPLE_BRAZE_ID}"
    assert send["push_kind"] == "app"
    assert props(send)["campaign_name"] == "campaign_name"
    assert "push_token" not in props(send)

    (opened,) = read(avro / "users.messages.pushnotification.Open.avro")[0]
    assert opened["event_name"] == "push_opened"
    assert opened["message_id"] == send["message_id"]

    (purchase,) = read(avro / "users.behaviors.Purchase.avro")[0]
    # price 3.140000104904175 is the float32 nearest 3.14.
    assert (purchase["revenue"], purchase["currency"]) == ("3.14", "USD")
    assert purchase["order_id"] is None
    assert props(purchase)["product_id"] == "product_id"
    assert props(purchase)["properties"] == {
        "stringProperty": "properties",
        "numberProperty": 1,
        "listProperty": ["a"],
    }

    (holdout,) = read(avro / "users.campaigns.EnrollInControl.avro")[0]
    assert holdout["event_name"] == "holdout_assigned"
    assert (holdout["holdout_group"], holdout["campaign_id"]) == ("control", SAMPLE_ID)
    assert holdout["message_id"] is None

    (orphan,) = read(avro / "users.UserOrphan.avro")[0]
    assert orphan["event_name"] == "identity_merge"
    assert orphan["user_id"] is None
    assert orphan["anonymous_id"] == f"braze:{SAMPLE_BRAZE_ID}"  # orphaned_by_id
    assert orphan["device_id"] == "device_id"
    assert props(orphan)["merged_user_id"] == "external_user_id"
    assert props(orphan)["merged_anonymous_id"] == f"braze:{SAMPLE_BRAZE_ID}"

    (session,) = read(avro / "users.behaviors.app.SessionStart.avro")[0]
    assert (session["event_name"], session["session_id"]) == ("session_start", SAMPLE_ID)

    (conversion,) = read(avro / "users.campaigns.Conversion.avro")[0]
    assert conversion["event_name"] == "other"
    assert conversion["revenue"] is None
    assert props(conversion)["original_event_name"] == "users.campaigns.Conversion"
    assert props(conversion)["conversion_behavior"] == "conversion_behavior"

    (deletion,) = read(avro / "users.UserDeleteRequest.avro")[0]
    assert deletion["event_name"] == "deletion_request"
    assert (deletion["user_id"], deletion["anonymous_id"]) == (None, f"braze:{SAMPLE_BRAZE_ID}")


def test_legacy_2017_export_takes_its_type_from_the_schema(samples):
    rows, rejects = read(samples / "legacy_2017" / LEGACY)
    assert rejects == []
    first = rows[0]
    assert first["event_id"] == "8adc1855-3392-4d58-b2e3-994299b7e024"
    # 1510628494 = 17484 days (2017-11-14) + 10894 s (03:01:34).
    assert first["event_time"] == "2017-11-14T03:01:34Z"
    assert first["event_name"] == "push_sent"
    assert first["user_id"] == "RaghavNarain"
    assert first["anonymous_id"] == "braze:594925ec0b4f0d15d6d6d8f7"
    assert first["campaign_id"] == "36e64171-7a8e-43a7-92b4-9cd86aadb83e"
    # 2017 exports have no dispatch_id: no message id to join on.
    assert first["message_id"] is None
    assert first["device_id"] is None


def test_samples_through_ingest_conserve_rows(samples, tmp_path):
    landing = tmp_path / "landing" / "braze"
    landing.mkdir(parents=True)
    for name in (
        "users.messages.pushnotification.Send",
        "users.messages.pushnotification.Open",
        "users.behaviors.Purchase",
        "users.campaigns.EnrollInControl",
        "users.UserOrphan",
    ):
        shutil.copy(samples / "Avro" / f"{name}.avro", landing)
    shutil.copy(samples / "legacy_2017" / LEGACY, landing)
    con, totals = run_ingest(tmp_path / "landing", dt.date(2017, 1, 1), dt.date(2034, 12, 31))
    # The five placeholder samples share one id: the first file in path order is staged and the
    # other four are duplicates; the 12 sends of 2017 are distinct.
    assert totals == {"read": 17, "staged": 13, "quarantined": 0, "duplicate": 4}
    assert totals["read"] == totals["staged"] + totals["quarantined"] + totals["duplicate"]
    kept = con.execute(
        "select event_name, source_file from staging.events where event_id = ?", [SAMPLE_ID]
    ).fetchall()
    assert [(name, file.rsplit("/", 1)[-1]) for name, file in kept] == [
        ("identity_merge", "users.UserOrphan.avro")
    ]
    days = con.execute("select distinct event_date from staging.events order by 1").fetchall()
    assert days == [(dt.date(2017, 11, 14),), (dt.date(2034, 6, 13),)]


# --- Our own fixtures -----------------------------------------------------------------------

SEND = "users.messages.pushnotification.Send"
SEND_FOLDER = f"event_type={SEND}/date=2024-03-01"
T0 = 1709287200  # 2024-03-01T10:00:00Z


def _req(name: str, kind: str = "string") -> dict:
    return {"name": name, "type": kind}


def _opt(name: str, kind: str = "string") -> dict:
    return {"name": name, "type": ["null", kind], "default": None}


def _schema(event_type: str, *fields: dict) -> dict:
    return {"type": "record", "name": f"dataexport.S3.inner.{event_type}", "fields": list(fields)}


_BASE = (_req("id"), _req("user_id"), _opt("external_user_id"), _req("time", "int"))
_PUSH = (_opt("campaign_id"), _opt("dispatch_id"), _opt("device_id"), _opt("platform"))


def _fixture_files() -> dict[str, tuple[dict, list[dict]]]:
    """Relative path -> (writer schema, records) of every fixture file."""
    send = {"campaign_id": "camp-spring", "dispatch_id": "disp-001"}
    # The older Send schema has no platform and no device_id; the newer adds them and Canvas ids.
    send_v1 = _schema(SEND, *_BASE, _opt("campaign_id"), _opt("dispatch_id"))
    send_v2 = _schema(
        SEND, *_BASE, *_PUSH, _opt("canvas_id"), _opt("canvas_step_id"), _opt("push_token")
    )
    purchase_v1 = _schema(
        "users.behaviors.Purchase",
        _req("id"),
        _req("user_id"),
        _opt("external_user_id"),
        _opt("time", "long"),
        _req("product_id"),
        _req("price", "float"),
        _req("currency"),
    )
    purchase_v2 = _schema(
        "users.behaviors.Purchase",
        *_BASE,
        _req("product_id"),
        _req("price", "double"),
        _opt("quantity", "int"),
        _opt("order_id"),
        _req("currency"),
    )
    buy = {"user_id": ALICE, "external_user_id": "alice", "product_id": "p-1", "currency": "USD"}
    custom = _schema(
        "users.behaviors.CustomEvent", *_BASE, _req("name"), _req("properties"), _opt("platform")
    )
    orphan = _schema("users.UserOrphan", *_BASE, _opt("device_id"), _req("orphaned_by_id"))
    session = _schema(
        "users.behaviors.app.SessionStart", *_BASE, _req("session_id"), _opt("device_id")
    )
    return {
        f"{SEND_FOLDER}/send_v1.avro": (
            send_v1,
            [
                {"id": "send-a1", "user_id": ALICE, "external_user_id": "alice", "time": T0} | send,
                {"id": "send-dup", "user_id": B, "time": T0 + 1} | send,
            ],
        ),
        f"{SEND_FOLDER}/send_v2.avro": (
            send_v2,
            [
                # Currents delivered this send again, in the newer schema.
                {"id": "send-dup", "user_id": B, "time": T0 + 1, "platform": "web"}
                | send
                | {"device_id": "dev-b-web", "push_token": "secret"},
                {
                    "id": "send-c1",
                    "user_id": CAROL,
                    "external_user_id": "carol",
                    "time": T0 + 2,
                    "platform": "ios",
                    "device_id": "dev-c-iphone",
                    "dispatch_id": "disp-002",
                    "canvas_id": "canvas-welcome",
                    "canvas_step_id": "step-1",
                },
                {"id": "send-k1", "user_id": B, "time": T0 + 3, "platform": "kindle"} | send,
            ],
        ),
        "users.messages.pushnotification.Open.avro": (
            _schema("users.messages.pushnotification.Open", *_BASE, *_PUSH),
            [
                {"id": "open-a1", "user_id": ALICE, "external_user_id": "alice", "time": T0 + 300}
                | send
                | {"device_id": "dev-a-ios", "platform": "ios"}
            ],
        ),
        "users.messages.pushnotification.InfluencedOpen.avro": (
            _schema("users.messages.pushnotification.InfluencedOpen", *_BASE, *_PUSH),
            [{"id": "infl-b1", "user_id": B, "time": T0 + 600, "platform": "web"} | send],
        ),
        "users.messages.pushnotification.IosForeground.avro": (
            _schema("users.messages.pushnotification.IosForeground", *_BASE, *_PUSH),
            [
                {
                    "id": "fg-c1",
                    "user_id": CAROL,
                    "external_user_id": "carol",
                    "time": T0 + 5,
                    "platform": "ios",
                    "dispatch_id": "disp-002",
                }
            ],
        ),
        "users.behaviors.Purchase.avro": (
            purchase_v1,
            [
                {"id": "buy-a1", "time": T0 + 3600, "price": 19.999} | buy,
                {"id": "buy-a2", "time": T0 + 3601, "price": 0.125} | buy,
                {"id": "", "time": T0 + 3602, "price": 1.0} | buy,
                {"id": "buy-no-time", "time": None, "price": 1.0} | buy,
                {"id": "buy-far", "time": 99999999999999, "price": 1.0} | buy,
                {"id": "buy-nan", "time": T0 + 3603, "price": float("nan")} | buy,
            ],
        ),
        "purchase_v2/users.behaviors.Purchase.avro": (
            purchase_v2,
            [
                {
                    "id": "buy-b1",
                    "user_id": B,
                    "time": T0 + 7200,
                    "product_id": "p-2",
                    "price": 2.5,
                    "quantity": 3,
                    "order_id": "order-9",
                    "currency": "EUR",
                }
            ],
        ),
        "users.behaviors.CustomEvent.avro": (
            custom,
            [
                {
                    "id": "custom-a1",
                    "user_id": ALICE,
                    "external_user_id": "alice",
                    "time": T0 + 60,
                    "name": "subscription_started",
                    "properties": '{"plan": "gold", "seats": null}',
                    "platform": "Android",
                },
                {
                    "id": "custom-a2",
                    "user_id": ALICE,
                    "external_user_id": "alice",
                    "time": T0 + 61,
                    "name": "viewed_banner",
                    "properties": "not json",
                },
            ],
        ),
        "users.UserOrphan.avro": (
            orphan,
            # Anonymous profile D, on carol's iPad, was merged into carol's profile.
            [
                {
                    "id": "orphan-1",
                    "user_id": D,
                    "time": T0 + 30,
                    "device_id": "dev-c-ipad",
                    "orphaned_by_id": CAROL,
                }
            ],
        ),
        # A 2017-style object name that does not say the event type: the schema does.
        "dataexport.S3.integration.fixture+0+0000000001.avro": (
            session,
            [
                {
                    "id": "sess-d1",
                    "user_id": D,
                    "time": T0 - 3600,
                    "session_id": "s-1",
                    "device_id": "dev-c-ipad",
                }
            ],
        ),
    }


def write_fixtures(root: Path) -> None:
    """Write every fixture file under root; a fixed sync marker makes the bytes reproducible."""
    for relative, (schema, records) in _fixture_files().items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as handle:
            fastavro.writer(handle, schema, records, sync_marker=b"pushassist-braze")


def test_fixture_files_match_their_script(tmp_path):
    write_fixtures(tmp_path)
    written = {p.relative_to(tmp_path): p.read_bytes() for p in tmp_path.rglob("*.avro")}
    committed = {p.relative_to(FIXTURES): p.read_bytes() for p in FIXTURES.rglob("*.avro")}
    assert committed == written, "regenerate with .venv/bin/python tests/test_adapter_braze.py"


def test_schema_versions_in_one_folder():
    old_rows, old_rejects = read(FIXTURES / SEND_FOLDER / "send_v1.avro")
    new_rows, new_rejects = read(FIXTURES / SEND_FOLDER / "send_v2.avro")
    assert old_rejects == new_rejects == []
    old, new = by_id(old_rows), by_id(new_rows)
    # The older version has no platform or device: unknown, app push, no device id.
    assert old["send-a1"]["event_name"] == "push_sent"
    assert (old["send-a1"]["platform"], old["send-a1"]["push_kind"]) == ("unknown", "app")
    assert old["send-a1"]["device_id"] is None
    assert old["send-a1"]["message_id"] == f"disp-001:{ALICE}"
    assert old["send-a1"]["event_time"] == "2024-03-01T10:00:00Z"
    assert new["send-dup"]["platform"] == new["send-dup"]["push_kind"] == "web"
    assert new["send-dup"]["device_id"] == "dev-b-web"
    assert "push_token" not in props(new["send-dup"])
    # A Canvas send without a campaign: the Canvas stands for the campaign, the step is kept.
    assert new["send-c1"]["campaign_id"] == "canvas-welcome"
    assert props(new["send-c1"])["canvas_step_id"] == "step-1"
    assert new["send-c1"]["message_id"] == f"disp-002:{CAROL}"
    assert (new["send-k1"]["platform"], new["send-k1"]["push_kind"]) == ("unknown", "app")


def test_push_engagement_joins_its_send_by_message_id():
    (opened,) = read(FIXTURES / "users.messages.pushnotification.Open.avro")[0]
    (influenced,) = read(FIXTURES / "users.messages.pushnotification.InfluencedOpen.avro")[0]
    (foreground,) = read(FIXTURES / "users.messages.pushnotification.IosForeground.avro")[0]
    assert (opened["event_name"], opened["message_id"]) == ("push_opened", f"disp-001:{ALICE}")
    assert (influenced["event_name"], influenced["message_id"]) == (
        "push_influenced_open",
        f"disp-001:{B}",
    )
    assert influenced["push_kind"] == "web"
    assert (foreground["event_name"], foreground["message_id"]) == (
        "push_delivered",
        f"disp-002:{CAROL}",
    )


def test_purchase_revenue_in_cents_and_rejects_with_reasons():
    rows, rejects = read(FIXTURES / "users.behaviors.Purchase.avro")
    rows = by_id(rows)
    # 19.999 as float32 is 19.9990005...; its shortest text 19.999 rounds half up to 20.00.
    assert rows["buy-a1"]["revenue"] == "20.00"
    assert rows["buy-a2"]["revenue"] == "0.13"  # 0.125 exactly, half up
    assert rows["buy-nan"]["revenue"] == "nan"  # passed on for ingest to quarantine
    assert rows["buy-a1"]["order_id"] is None
    assert props(rows["buy-a1"])["product_id"] == "p-1"
    assert [(r["source_row"], r["reason"]) for r in rejects] == [
        (3, "the record has no id, so it cannot be deduplicated"),
        (4, "the record has no time"),
        (5, "time 99999999999999 is not a UNIX time in seconds"),
    ]
    assert json.loads(rejects[2]["raw"])["id"] == "buy-far"

    (quantity,) = read(FIXTURES / "purchase_v2" / "users.behaviors.Purchase.avro")[0]
    assert (quantity["revenue"], quantity["currency"]) == ("7.50", "EUR")  # 2.5 x 3
    assert quantity["order_id"] == "order-9"


def test_custom_events_are_other_unless_mapped_by_the_setting():
    path = FIXTURES / "users.behaviors.CustomEvent.avro"
    options = {"custom_events": {"subscription_started": "subscription_start"}}
    table, _ = adapters.read("braze", path.read_bytes(), str(path), lambda name: None, options)
    rows = by_id(table.to_pylist())
    unmapped = by_id(read(path)[0])
    assert unmapped["custom-a1"]["event_name"] == "other"
    started, banner = rows["custom-a1"], rows["custom-a2"]
    assert started["event_name"] == "subscription_start"
    assert started["platform"] == "android"
    assert props(started)["custom_event_name"] == "subscription_started"
    assert props(started)["properties"] == {"plan": "gold"}
    assert banner["event_name"] == "other"
    assert props(banner)["original_event_name"] == "viewed_banner"
    assert props(banner)["properties"] == "not json"


@pytest.mark.parametrize(
    ("path", "schema_name", "expected"),
    [
        (
            f"s3://b/currents/dataexport.prod-01.S3.integration.x/event_type={SEND}/"
            "date=2024-03-01-10/x/prod-01/0_1_abc.avro",
            "",
            SEND,
        ),
        ("landing/braze/2024/users.behaviors.Purchase.avro", "", "users.behaviors.Purchase"),
        ("landing/braze/users.UserOrphan/part-0001.avro", "", "users.UserOrphan"),
        (
            "landing/braze/dataexport.S3.integration.abc+2+0000035465.avro",
            "dataexport.S3.inner.users.behaviors.app.SessionStart",
            "users.behaviors.app.SessionStart",
        ),
        ("landing/braze/export.avro", "Mystery", "Mystery"),
    ],
)
def test_event_type_from_path_then_schema(path, schema_name, expected):
    assert braze.event_type_of(path, {"name": schema_name}) == expected


def test_a_file_that_is_not_avro_fails_naming_the_file():
    with pytest.raises(ingest.UnreadableFileError, match="broken.avro"):
        braze.read(b"not an avro file", "landing/braze/broken.avro", lambda name: None)


def test_fixtures_through_ingest_and_identity(tmp_path):
    shutil.copytree(FIXTURES, tmp_path / "landing" / "braze")
    march = (dt.date(2024, 3, 1), dt.date(2024, 3, 31))
    con, totals = run_ingest(tmp_path / "landing", *march)
    # 19 records: 3 rejected by the adapter, 1 NaN revenue quarantined by ingest, the second
    # copy of send-dup counted as a duplicate.
    assert totals == {"read": 19, "staged": 14, "quarantined": 4, "duplicate": 1}
    reasons = con.execute(
        "select source_row, reason from quality.quarantined_events order by source_row"
    ).fetchall()
    assert reasons == [
        (3, "the record has no id, so it cannot be deduplicated"),
        (4, "the record has no time"),
        (5, "time 99999999999999 is not a UNIX time in seconds"),
        (6, "revenue 'nan' is not a number"),
    ]
    kept = con.execute("select source_file from staging.events where event_id = 'send-dup'")
    assert kept.fetchone()[0].endswith("send_v1.avro")
    revenue = con.execute("select revenue from staging.events where event_id = 'buy-a1'")
    assert float(revenue.fetchone()[0]) == 20.0

    # The orphan event ties profile D's device to carol's profile, so D's anonymous session
    # belongs to carol.
    resolve_identity(con, IdentitySettings())
    persons = dict(
        con.execute(
            "select event_id, person_id from core.event_persons "
            "where event_id in ('sess-d1', 'orphan-1', 'send-c1', 'send-a1')"
        ).fetchall()
    )
    assert persons["sess-d1"] == persons["orphan-1"] == persons["send-c1"]
    assert persons["send-a1"] != persons["send-c1"]


if __name__ == "__main__":
    write_fixtures(FIXTURES)
