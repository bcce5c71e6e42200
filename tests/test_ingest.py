"""Ingest: every row read is staged, quarantined with a reason, or counted as a duplicate."""

import datetime as dt
import json

import pandas as pd
import pytest
from conftest import run_ingest as ingest_landing

from pipeline import ingest

JAN = (dt.date(2024, 1, 1), dt.date(2024, 1, 31))


def event(event_id, time="2024-01-02T10:00:00Z", name="session_start", **fields):
    return {"event_id": event_id, "event_time": time, "event_name": name, "user_id": "u1"} | fields


def run_ingest(landing, start=JAN[0], end=JAN[1], con=None):
    return ingest_landing(landing, start, end, first_date=JAN[0], con=con)


def write_jsonl(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")


@pytest.fixture
def landing(tmp_path):
    write_jsonl(
        tmp_path / "canonical" / "2024" / "01" / "events.jsonl",
        [
            event("e1", name="purchase", revenue=12.5, properties={"coupon": "X"}),
            event("e1", name="purchase", revenue=12.5),  # exact duplicate id
            "not json at all",
            "",
            event("e2", time="yesterday"),
            event("e3", name="app_rating"),
            event("e4", user_id=None),  # no identifier at all
            event("e5", platform="xbox"),
            "[1, 2]",
            event("e6", time="2024-01-03T23:59:59Z", revenue="ten"),
            event("e7", time="2024-01-03T08:00:00+02:00"),
        ],
    )
    (tmp_path / "canonical" / "more.csv").write_text(
        "event_id,event_time,event_name,anonymous_id\n"
        "c1,2024-01-02T09:00:00Z,page_view,a1\n"
        "c2,2024-01-02T09:00:00Z\n"
        "c3,2024-01-04T09:00:00Z,session_start,a2\n"
    )
    frame = pd.DataFrame(
        {
            "event_id": ["p1", "p2"],
            "event_time": pd.to_datetime(["2024-01-05T00:00:00Z", "2024-01-05T01:00:00Z"]),
            "event_name": ["push_opened", "push_sent"],
            "device_id": ["d1", None],
        }
    )
    frame.to_parquet(tmp_path / "canonical" / "push.parquet")
    return tmp_path


def quarantine(con):
    rows = con.execute(
        "select source_file, source_row, reason from quality.quarantined_events "
        "order by source_file, source_row"
    ).fetchall()
    return [(file.rsplit("/", 1)[-1], row, reason) for file, row, reason in rows]


def test_rows_are_staged_quarantined_or_duplicates(landing):
    con, totals = run_ingest(landing)
    # 10 non-blank JSON lines + 3 CSV rows + 2 Parquet rows.
    assert totals == {"read": 15, "staged": 6, "quarantined": 8, "duplicate": 1}
    staged = dict(con.execute("select event_id, event_name from staging.events").fetchall())
    assert staged == {
        "e1": "purchase",
        "e3": "other",
        "e7": "session_start",
        "c1": "page_view",
        "c3": "session_start",
        "p1": "push_opened",
    }


def test_quarantine_reasons_name_file_row_and_cause(landing):
    con, _ = run_ingest(landing)
    assert quarantine(con) == [
        ("events.jsonl", 3, "line is not valid JSON"),
        ("events.jsonl", 5, "event_time 'yesterday' is not a timestamp"),
        ("events.jsonl", 7, "has none of user_id, anonymous_id, device_id"),
        ("events.jsonl", 8, "platform 'xbox' is not one of ios, android, web, unknown"),
        ("events.jsonl", 9, "line is JSON but not an object"),
        ("events.jsonl", 10, "revenue 'ten' is not a number"),
        ("more.csv", 3, "expected 4 fields, found 2"),
        ("push.parquet", 2, "has none of user_id, anonymous_id, device_id"),
    ]


def test_values_are_typed_and_lineage_kept(landing):
    con, _ = run_ingest(landing)
    row = con.execute(
        "select revenue, properties, source_row, event_date from staging.events "
        "where event_id = 'e1'"
    ).fetchall()[0]
    assert row[0] == pytest.approx(12.5)
    assert json.loads(row[1]) == {"coupon": "X"}
    assert row[2] == 1
    assert row[3] == dt.date(2024, 1, 2)
    # The unknown name is kept as `other` with the original in properties.
    props = con.execute("select properties from staging.events where event_id = 'e3'").fetchall()
    assert json.loads(props[0][0]) == {"original_event_name": "app_rating"}
    # An offset time is converted to UTC: 08:00+02:00 is 06:00Z on the 3rd.
    (when,) = con.execute("select event_time from staging.events where event_id = 'e7'").fetchall()[
        0
    ]
    assert when == dt.datetime(2024, 1, 3, 6, tzinfo=dt.UTC)


def test_conservation_per_day_and_file(landing):
    con, _ = run_ingest(landing)
    bad = con.execute(
        "select * from quality.ingest_counts "
        "where rows_read <> rows_staged + rows_quarantined + rows_duplicate"
    ).fetchall()
    assert bad == []
    # The undatable row ("yesterday") is counted on its file's first readable day.
    days = con.execute(
        "select event_date from quality.quarantined_events where source_row = 5"
    ).fetchall()
    assert days == [(dt.date(2024, 1, 2),)]


def test_rerunning_a_day_replaces_only_that_day(landing):
    con, _ = run_ingest(landing)
    before = con.execute("select count(*) from staging.events").fetchall()[0][0]
    con, totals = run_ingest(landing, dt.date(2024, 1, 3), dt.date(2024, 1, 3), con=con)
    after = con.execute("select count(*) from staging.events").fetchall()[0][0]
    assert after == before
    assert totals == {"read": 2, "staged": 1, "quarantined": 1, "duplicate": 0}  # e7 and e6


def test_unreadable_file_is_named(tmp_path):
    (tmp_path / "canonical").mkdir()
    (tmp_path / "canonical" / "broken.parquet").write_bytes(b"this is not parquet")
    with pytest.raises(ingest.UnreadableFileError, match="broken.parquet"):
        run_ingest(tmp_path)


def test_missing_canonical_folder_reads_nothing(tmp_path):
    fs, base = ingest.open_landing(str(tmp_path))
    assert ingest.list_files(fs, base) == []


def test_rows_an_adapter_rejects_are_quarantined_under_its_source(landing):
    """A GA4 line that is not JSON, or has no event_timestamp, is a GA4 row in the quarantine,
    not a canonical one: the adapter, not the row, says where it came from."""
    good = {
        "event_timestamp": "1704189600000000",
        "event_name": "page_view",
        "user_pseudo_id": "123.456",
        "event_params": [],
    }
    no_time = {k: v for k, v in good.items() if k != "event_timestamp"}
    write_jsonl(landing / "ga4" / "events_20240102.json", [good, '{"event_name": "page_v', no_time])
    con, _ = run_ingest(landing)
    rows = con.execute(
        "select source, source_row, reason from quality.quarantined_events "
        "where source_file like '%/ga4/%' order by source_row"
    ).fetchall()
    assert rows == [
        ("ga4", 2, "line is not valid JSON"),
        ("ga4", 3, "event_timestamp is missing"),
    ]
    canonical = con.execute(
        "select distinct source from quality.quarantined_events where source_file like '%.jsonl'"
    ).fetchall()
    assert canonical == [("canonical",)]


@pytest.mark.parametrize(
    ("name", "content"),
    [
        (
            "epoch.jsonl",
            b'{"event_id": "e1", "event_time": 1709640000, "event_name": "purchase",'
            b' "user_id": "u1"}\n',
        ),
        ("array.json", b'[\n  {"event_id": "e1"},\n  {"event_id": "e2"}\n]\n'),
        ("semicolons.csv", b"event_id;event_time;event_name;user_id\ne1;2024-01-02;page_view;u\n"),
        ("random.jsonl", bytes(range(256)) * 4),
    ],
)
def test_a_file_without_one_readable_event_fails_by_name(tmp_path, name, content):
    (tmp_path / "canonical").mkdir()
    (tmp_path / "canonical" / name).write_bytes(content)
    with pytest.raises(ingest.UnreadableFileError, match=f"{name}: none of its") as error:
        run_ingest(tmp_path)
    assert error.value.path.endswith(name)


def test_byte_order_marks_and_empty_files(tmp_path):
    folder = tmp_path / "canonical"
    folder.mkdir()
    # Excel's "CSV UTF-8": ids that look like numbers must stay text, and stay distinct.
    (folder / "excel.csv").write_bytes(
        b"\xef\xbb\xbfevent_id,event_time,event_name,user_id\n"
        b"007,2024-01-02T10:00:00Z,page_view,a\n"
        b"7,2024-01-02T10:00:00Z,page_view,b\n"
        b"0007,2024-01-02T10:00:00Z,page_view,c\n"
    )
    (folder / "bom.jsonl").write_bytes(b"\xef\xbb\xbf" + json.dumps(event("j1")).encode() + b"\n")
    (folder / "empty.csv").write_bytes(b"")
    (folder / "empty.jsonl").write_bytes(b"")
    con, totals = run_ingest(tmp_path)
    assert totals == {"read": 4, "staged": 4, "quarantined": 0, "duplicate": 0}
    ids = sorted(r[0] for r in con.execute("select event_id from staging.events").fetchall())
    assert ids == ["0007", "007", "7", "j1"]


def test_vocabularies_ignore_case_and_blank_ids_are_missing(tmp_path):
    write_jsonl(
        tmp_path / "canonical" / "odd.jsonl",
        [
            event("v1", platform="iOS", push_kind="App"),
            event("v2", user_id="\t"),
            event("v3", properties=[1, 2]),
        ],
    )
    con, _ = run_ingest(tmp_path)
    assert con.execute(
        "select platform, push_kind from staging.events where event_id = 'v1'"
    ).fetchall() == [("ios", "app")]
    assert [reason for _, _, reason in quarantine(con)] == [
        "has none of user_id, anonymous_id, device_id",
        "properties is not a JSON object",
    ]
