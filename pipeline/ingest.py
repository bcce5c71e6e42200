"""Reading raw files into canonical events: parse, validate, deduplicate, quarantine.

Files are listed and opened through pyarrow's filesystem layer, so a local folder and an object
store URL (`s3://...`, `gs://...`) go through the same code. Every row read ends in exactly one
place: `staging.events`, `quality.quarantined_events`, or the duplicate count; the counts per day
and file are kept in `quality.ingest_counts` so that a check can prove nothing was lost.

Parsing and type conversion are set-based (Arrow and DuckDB SQL); the canonical schema is a
pandera schema applied to the typed frame, whose failure cases become quarantine reasons.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import PurePosixPath

import duckdb
import numpy as np
import pandas as pd
import pandera.pandas as pa
import pyarrow as pa_arrow
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.fs as pa_fs
import pyarrow.parquet as pq

from pipeline import adapters
from pipeline.adapters import SOURCES
from pipeline.tables import (
    CANONICAL_COLUMNS,
    EVENT_NAMES,
    INGEST_COUNTS,
    QUARANTINED_EVENTS,
    STAGING_EVENTS,
)

# Columns a raw canonical file may carry (lineage columns are added here, never read).
RAW_COLUMNS = [c.name for c in CANONICAL_COLUMNS if c.name not in ("source_file", "source_row")]
IDENTIFIER_COLUMNS = ("user_id", "anonymous_id", "device_id")
PLATFORMS = ("ios", "android", "web", "unknown")
PUSH_KINDS = ("app", "web")
HOLDOUT_GROUPS = ("control", "treatment")

JSON_SUFFIXES = (".jsonl", ".ndjson", ".json")
CSV_SUFFIXES = (".csv",)


class UnreadableFileError(RuntimeError):
    """A landing file that cannot be read at all; its partition fails with the file named.

    The message starts with the file's path, then ": " and the reason.
    """

    @property
    def path(self) -> str:
        return str(self).partition(": ")[0]


@dataclass(frozen=True)
class LandingFile:
    path: str
    size: int
    source: str


def open_landing(root: str) -> tuple[pa_fs.FileSystem, str]:
    """The filesystem and base path of a landing root: a local folder or an object-store URL."""
    if "://" in root:
        return pa_fs.FileSystem.from_uri(root)
    return pa_fs.LocalFileSystem(), str(PurePosixPath(root))


def list_files(
    fs: pa_fs.FileSystem, base: str, sources: tuple[str, ...] = SOURCES
) -> list[LandingFile]:
    """Data files under `base/<source>/` for each source folder, at any depth, in stable order.

    The folder a file lands in says which adapter reads it (the landing layout in the README).
    """
    files = []
    for source in sources:
        selector = pa_fs.FileSelector(f"{base}/{source}", recursive=True, allow_not_found=True)
        suffixes = adapters.suffixes(source)
        files += [
            LandingFile(info.path, info.size, source)
            for info in fs.get_file_info(selector)
            if info.type == pa_fs.FileType.File and info.path.lower().endswith(suffixes)
        ]
    return sorted(files, key=lambda f: (f.source, f.path))


def _with_lineage(table: pa_arrow.Table, path: str, fmt: str) -> pa_arrow.Table:
    n = table.num_rows
    return table.append_column(
        "source_file", pa_arrow.array([path] * n, pa_arrow.string())
    ).append_column("format", pa_arrow.array([fmt] * n, pa_arrow.string()))


def read_json_file(data: bytes, path: str) -> pa_arrow.Table:
    # utf-8-sig drops the byte-order mark some editors put before the first line.
    text = data.decode("utf-8-sig", errors="replace")
    lines = pa_arrow.array(text.splitlines(), pa_arrow.string())
    numbers = pa_arrow.array(range(1, len(lines) + 1), pa_arrow.int64())
    keep = pc.not_equal(pc.utf8_length(pc.utf8_trim_whitespace(lines)), 0)
    table = pa_arrow.table({"raw": pc.filter(lines, keep), "source_row": pc.filter(numbers, keep)})
    return _with_lineage(table, path, "json")


def csv_header(data: bytes, delimiter: str = ",") -> list[str]:
    """Column names from the first line of a delimited file."""
    first_line = data.split(b"\n", 1)[0].decode("utf-8-sig", errors="replace").strip()
    return [name.strip().strip('"') for name in first_line.split(delimiter)]


def read_delimited(
    data: bytes, path: str, delimiter: str = ",", kind: str = "CSV"
) -> tuple[pa_arrow.Table, pa_arrow.Table]:
    """Good rows as strings with `source_row`, and the rows with the wrong number of fields
    (`source_row`, `raw`, `reason`), to be quarantined as read.

    source_row is the line number, counting the header as line 1; it is exact for files whose
    fields hold no line breaks. Tab-separated exports do not quote (their JSON fields hold bare
    double quotes), so quoting applies to commas only.
    """
    rejected: list[tuple[int, str, str]] = []

    def on_invalid(row) -> str:
        rejected.append(
            (
                row.number or 0,
                row.text,
                f"expected {row.expected_columns} fields, found {row.actual_columns}",
            )
        )
        return "skip"

    # A byte-order mark (Excel's "CSV UTF-8") would glue itself to the first column's name.
    data = data.removeprefix(b"\xef\xbb\xbf")
    header = csv_header(data, delimiter)
    if not data.strip():
        empty = pa_arrow.table({"source_row": pa_arrow.array([], pa_arrow.int64())})
        return empty, adapters.rejects_table()
    try:
        table = pa_csv.read_csv(
            pa_arrow.py_buffer(data),
            # A single-threaded read reports each invalid row's physical line number.
            read_options=pa_csv.ReadOptions(use_threads=False),
            parse_options=pa_csv.ParseOptions(
                delimiter=delimiter,
                quote_char='"' if delimiter == "," else False,
                invalid_row_handler=on_invalid,
            ),
            convert_options=pa_csv.ConvertOptions(
                column_types={name: pa_arrow.string() for name in header},
                strings_can_be_null=True,
            ),
        )
    except pa_arrow.ArrowInvalid as exc:
        raise UnreadableFileError(f"{path}: cannot be read as {kind}: {exc}") from exc
    bad_lines = np.array([n for n, _, _ in rejected], dtype=np.int64)
    # Line numbers of the good rows: every data line (2, 3, ...) that was not rejected.
    total = table.num_rows + len(bad_lines)
    good_lines = np.setdiff1d(np.arange(2, total + 2, dtype=np.int64), bad_lines)
    table = table.append_column(
        "source_row", pa_arrow.array(good_lines[: table.num_rows], pa_arrow.int64())
    )
    return table, adapters.rejects_table(*zip(*rejected, strict=True) if rejected else ())


def read_csv_file(data: bytes, path: str) -> tuple[pa_arrow.Table, pa_arrow.Table]:
    """A canonical CSV file: rows and rejects (see read_delimited), with their lineage."""
    table, rejects = read_delimited(data, path)
    return _with_lineage(table, path, "csv"), _with_lineage(rejects, path, "csv")


def read_parquet_file(data: bytes, path: str) -> pa_arrow.Table:
    try:
        table = pq.read_table(pa_arrow.BufferReader(data))
    except (pa_arrow.ArrowInvalid, OSError) as exc:
        raise UnreadableFileError(f"{path}: cannot be read as Parquet: {exc}") from exc
    columns = {}
    for name in table.column_names:
        column = table.column(name)
        if pa_arrow.types.is_timestamp(column.type):
            # ISO text keeps the instant exact whatever unit the writer used (%S has the fraction).
            # A timestamp without a zone is taken as UTC, as the canonical format says.
            zone = "%z" if column.type.tz else ""
            column = pc.strftime(column, format=f"%Y-%m-%dT%H:%M:%S{zone}")
        elif not pa_arrow.types.is_string(column.type):
            try:
                column = column.cast(pa_arrow.string())
            except (pa_arrow.ArrowInvalid, pa_arrow.ArrowNotImplementedError):
                column = pa_arrow.array(
                    [None if v is None else json.dumps(v, default=str) for v in column.to_pylist()],
                    pa_arrow.string(),
                )
        columns[name] = column
    table = pa_arrow.table(columns)
    table = table.append_column(
        "source_row", pa_arrow.array(range(1, table.num_rows + 1), pa_arrow.int64())
    )
    return _with_lineage(table, path, "parquet")


def _field_exprs(fmt: str, present: set[str]) -> dict[str, str]:
    """SQL that reads each canonical column, as text, from a JSON line or a table row."""
    exprs = {}
    for name in RAW_COLUMNS:
        if fmt == "json" and name == "properties":
            # properties may be an object or a string that holds JSON.
            expr = (
                "case when json_type(raw -> '$.properties') = 'VARCHAR' "
                "then raw ->> '$.properties' else (raw -> '$.properties')::varchar end"
            )
        elif fmt == "json":
            expr = f"raw ->> '$.{name}'"
        else:
            expr = name if name in present else "null"
        exprs[name] = f"cast({expr} as varchar)"
    return exprs


def _read_sibling(fs: pa_fs.FileSystem, path: str, name: str) -> bytes | None:
    sibling = f"{PurePosixPath(path).parent}/{name}"
    if fs.get_file_info(sibling).type != pa_fs.FileType.File:
        return None
    with fs.open_input_file(sibling) as handle:
        return handle.read()


def stage_raw_rows(
    con: duckdb.DuckDBPyConnection,
    fs: pa_fs.FileSystem,
    files: list[LandingFile],
    source_options: Mapping[str, Mapping[str, object]] | None = None,
):
    """Read every file into the temp table `raw_rows` (all canonical columns as text).

    Rows that cannot even be parsed (a line that is not a JSON object, a CSV row with the wrong
    number of fields) carry `parse_error`.
    """
    con.execute("drop table if exists raw_rows")
    con.execute(
        "create temp table raw_rows ("
        + ", ".join(f"{name} varchar" for name in RAW_COLUMNS)
        + ", raw varchar, source_file varchar, source_row bigint, parse_error varchar)"
    )
    for file in files:
        try:
            with fs.open_input_file(file.path) as handle:
                data = handle.read()
        except OSError as exc:
            raise UnreadableFileError(f"{file.path}: cannot be opened: {exc}") from exc
        lower = file.path.lower()
        if file.source != "canonical":
            rows, rejects = adapters.read(
                file.source,
                data,
                file.path,
                partial(_read_sibling, fs, file.path),
                (source_options or {}).get(file.source),
            )
            _insert_table(con, _with_lineage(rows, file.path, file.source))
            _insert_rejects(con, _with_lineage(rejects, file.path, file.source), file.source)
        elif lower.endswith(JSON_SUFFIXES):
            _insert_json(con, read_json_file(data, file.path))
        elif lower.endswith(CSV_SUFFIXES):
            good, rejects = read_csv_file(data, file.path)
            _insert_table(con, good)
            _insert_rejects(con, rejects)
        else:
            _insert_table(con, read_parquet_file(data, file.path))


def _insert_json(con: duckdb.DuckDBPyConnection, table: pa_arrow.Table) -> None:
    fields = ",\n".join(
        f"case when parse_error is null then {expr} end as {name}"
        for name, expr in _field_exprs("json", set()).items()
    )
    con.register("json_lines", table)
    con.execute(
        f"""
        insert into raw_rows
        with parsed as (
            select
                raw,
                source_file,
                source_row,
                case
                    when not json_valid(raw) then 'line is not valid JSON'
                    when json_type(raw::json) <> 'OBJECT' then 'line is JSON but not an object'
                end as parse_error
            from json_lines
        )
        select
            {fields},
            raw,
            source_file,
            source_row,
            parse_error
        from parsed
        """
    )
    con.unregister("json_lines")


def _insert_table(con: duckdb.DuckDBPyConnection, table: pa_arrow.Table) -> None:
    present = set(table.column_names)
    con.register("table_rows", table)
    lineage = ("source_file", "source_row", "format")
    struct_fields = ", ".join(
        f"'{name}': \"{name}\"" for name in table.column_names if name not in lineage
    )
    # Adapters hand over the raw record as they read it; for a table row it is the row as JSON.
    if "raw" in present:
        raw_expr = "raw"
    elif struct_fields:
        raw_expr = f"to_json({{{struct_fields}}})::varchar"
    else:
        raw_expr = "'{}'"
    con.execute(
        f"""
        insert into raw_rows
        select
            {", ".join(f"{e} as {n}" for n, e in _field_exprs("table", present).items())},
            {raw_expr} as raw,
            source_file,
            source_row,
            null as parse_error
        from table_rows
        """
    )
    con.unregister("table_rows")


def _insert_rejects(
    con: duckdb.DuckDBPyConnection, table: pa_arrow.Table, source: str | None = None
) -> None:
    """Rows that could not be read at all, with their reason. `source` names the adapter that
    rejected them: nothing of the row itself can, and without it the row would pass for a
    canonical one in the quarantine."""
    if table.num_rows == 0:
        return
    con.register("rejected_rows", table)
    columns = ", ".join(
        "$source as source" if n == "source" else f"null as {n}" for n in RAW_COLUMNS
    )
    con.execute(
        f"""
        insert into raw_rows
        select
            {columns},
            raw,
            source_file,
            source_row,
            reason
        from rejected_rows
        """,
        {"source": source},
    )
    con.unregister("rejected_rows")


# Columns whose values are a small vocabulary: compared in lower case, as event names are.
LOWER_CASE_COLUMNS = ("platform", "push_kind", "holdout_group")


def _text_sql(name: str) -> str:
    # Tabs and line breaks around a value are as empty as spaces.
    value = f"nullif(trim({name}, ' \t\r\n'), '')"
    return f"lower({value}) as {name}" if name in LOWER_CASE_COLUMNS else f"{value} as {name}"


def type_rows(con: duckdb.DuckDBPyConnection, timezone: str) -> None:
    """Convert `raw_rows` to canonical types in the temp table `typed_rows`.

    Values that do not convert become a `type_error` reason rather than a silent null.
    """
    event_names = ", ".join(f"'{name}'" for name in EVENT_NAMES)
    text_columns = [
        name
        for name in RAW_COLUMNS
        if name not in ("event_time", "revenue", "event_name", "source", "properties")
    ]
    con.execute("drop table if exists typed_rows")
    con.execute(
        f"""
        create temp table typed_rows as
        with cleaned as (
            select
                *,
                nullif(trim(event_time), '') as event_time_text,
                nullif(trim(revenue), '') as revenue_text,
                nullif(trim(event_name), '') as event_name_text,
                nullif(trim(properties), '') as properties_text
            from raw_rows
        ),
        converted as (
            select
                *,
                try_cast(event_time_text as timestamptz) as event_time_value,
                try_cast(revenue_text as decimal(18, 2)) as revenue_value,
                properties_text is null
                    or (json_valid(properties_text) and json_type(properties_text) = 'OBJECT')
                    as properties_ok
            from cleaned
        )
        select
            {", ".join(_text_sql(n) for n in text_columns)},
            coalesce(nullif(trim(source), ''), 'canonical') as source,
            event_time_value as event_time,
            case
                when event_name_text is null then null
                when lower(event_name_text) in ({event_names}) then lower(event_name_text)
                else 'other'
            end as event_name,
            revenue_value as revenue,
            case
                when not properties_ok then null
                when event_name_text is not null
                    and lower(event_name_text) not in ({event_names})
                    then json_merge_patch(
                        coalesce(properties_text, '{{}}'),
                        json_object('original_event_name', event_name_text)
                    )::varchar
                else properties_text
            end as properties,
            raw,
            source_file,
            source_row,
            (event_time_value at time zone '{timezone}')::date as event_date,
            concat_ws(
                '; ',
                parse_error,
                case
                    when parse_error is null
                        and event_time_text is not null
                        and event_time_value is null
                    then 'event_time ''' || event_time_text || ''' is not a timestamp'
                end,
                case
                    when parse_error is null
                        and revenue_text is not null
                        and revenue_value is null
                    then 'revenue ''' || revenue_text || ''' is not a number'
                end,
                case
                    when parse_error is null and not properties_ok
                    then 'properties is not a JSON object'
                end
            ) as type_error
        from converted
        """
    )


def canonical_schema() -> pa.DataFrameSchema:
    """The canonical event schema (SPEC 2.2) as a pandera schema on the typed frame."""

    def one_of(values: tuple[str, ...]) -> pa.Check:
        return pa.Check.isin(list(values), error=f"is not one of {', '.join(values)}")

    text = {"dtype": object, "nullable": True}
    columns = {name: pa.Column(**text) for name in RAW_COLUMNS}
    columns.update(
        {
            "event_id": pa.Column(object, nullable=False),
            "source": pa.Column(object, nullable=False),
            "event_time": pa.Column("datetime64[us, UTC]", nullable=False, coerce=True),
            "event_name": pa.Column(object, one_of(EVENT_NAMES), nullable=False),
            "platform": pa.Column(object, one_of(PLATFORMS), nullable=True),
            "push_kind": pa.Column(object, one_of(PUSH_KINDS), nullable=True),
            "holdout_group": pa.Column(object, one_of(HOLDOUT_GROUPS), nullable=True),
            "revenue": pa.Column(object, nullable=True),
        }
    )
    has_identifier = pa.Check(
        lambda df: df[list(IDENTIFIER_COLUMNS)].notna().any(axis=1),
        name="has_identifier",
        error="has none of user_id, anonymous_id, device_id",
    )
    return pa.DataFrameSchema(columns, checks=[has_identifier], strict=False)


def _reason(column: object, check: str, failure: object) -> str:
    if check == "not_nullable":
        return f"{column} is missing"
    if "has none of" in check:
        return "has none of user_id, anonymous_id, device_id"
    if check.startswith("isin") or check.startswith("is not one of"):
        return f"{column} {failure!r} {check if check.startswith('is not') else 'is not allowed'}"
    if check.startswith("coerce_dtype") or check.startswith("dtype"):
        return f"{column} {failure!r} has the wrong type"
    return f"{column} {failure!r} fails {check}"


def validation_reasons(frame: pd.DataFrame) -> pd.Series:
    """One reason string per failing row of the typed frame (index aligned), from pandera."""
    try:
        canonical_schema().validate(frame, lazy=True)
    except pa.errors.SchemaErrors as exc:
        cases = exc.failure_cases
        cases = cases[cases["index"].notna()]
        reasons = [
            _reason(col, str(check), failure)
            for col, check, failure in zip(
                cases["column"], cases["check"], cases["failure_case"], strict=True
            )
        ]
        texts = pd.Series(reasons, index=cases["index"].astype(int).to_numpy())
        return texts.groupby(level=0).agg(lambda s: "; ".join(dict.fromkeys(s)))
    return pd.Series(dtype=object)


def split_rows(con: duckdb.DuckDBPyConnection, first_date: dt.date) -> dict[str, int]:
    """Decide where every typed row goes: staged, quarantined or duplicate (temp table `routed`).

    A quarantined row whose time is unreadable is counted on the first day of its file's readable
    events, so that each partition's conservation adds up and a re-run lands it in the same place.
    Raises UnreadableFileError for a file with rows none of which has a readable time.
    """
    frame = con.execute(
        "select row_number() over () - 1 as _i, * exclude (type_error, raw) from typed_rows "
        "where type_error = ''"
    ).df()
    frame = frame.set_index("_i")
    reasons = validation_reasons(frame.drop(columns=["source_file", "source_row", "event_date"]))
    failed = pd.DataFrame(
        {
            "source_file": frame.loc[reasons.index, "source_file"].to_numpy(),
            "source_row": frame.loc[reasons.index, "source_row"].to_numpy(),
            "schema_error": reasons.to_numpy(),
        }
    )
    con.register("schema_failures", failed)
    con.execute(
        f"""
        create or replace temp table routed as
        with reasons as (
            select
                t.*,
                concat_ws('; ', nullif(t.type_error, ''), f.schema_error) as reason
            from typed_rows as t
            left join schema_failures as f
                using (source_file, source_row)
        ),
        file_days as (
            select source_file, min(event_date) as first_day
            from reasons
            where event_date is not null
            group by source_file
        ),
        ranked as (
            select
                r.*,
                coalesce(r.event_date, d.first_day, date '{first_date.isoformat()}') as row_date,
                case
                    when r.reason = '' then row_number() over (
                        partition by r.source, r.event_id, r.reason = ''
                        order by r.source_file, r.source_row
                    )
                end as copy_number
            from reasons as r
            left join file_days as d
                using (source_file)
        )
        select
            * exclude (row_date),
            row_date as event_date_routed,
            case
                when reason <> '' then 'quarantined'
                when copy_number > 1 then 'duplicate'
                else 'staged'
            end as destination
        from ranked
        """
    )
    con.unregister("schema_failures")
    # A file none of whose rows has a readable time is not a file of events in a shape we
    # know (epoch numbers, a JSON array, another delimiter, random bytes): it fails by name
    # rather than being quarantined on a day nobody runs. A vendor file its adapter rejected
    # whole, with a reason (a lookup table landed among event tables), stays quarantined, and
    # the files_without_events check names it on every run.
    unreadable = con.execute(
        """
        select source_file, count(*) as rows, mode(reason) as reason
        from routed
        group by source_file
        having count(event_date) = 0
            and bool_or(source = 'canonical' or event_id is not null)
        order by source_file
        limit 1
        """
    ).fetchall()
    if unreadable:
        path, count, reason = unreadable[0]
        raise UnreadableFileError(
            f"{path}: none of its {count} rows could be read as an event (for example: "
            f"{reason}); check the file's format and the landing folder it is in"
        )
    rows = con.execute("select destination, count(*) from routed group by 1").fetchall()
    return dict(rows)


def write_range(con: duckdb.DuckDBPyConnection, start: dt.date, end: dt.date) -> dict[str, int]:
    """Replace the [start, end] slice of the staging, quarantine and count tables."""
    for table in (STAGING_EVENTS, QUARANTINED_EVENTS, INGEST_COUNTS):
        con.execute(f"create schema if not exists {table.schema}")
        con.execute(table.create_sql())
    bounds = [start, end]
    staged_columns = ", ".join(STAGING_EVENTS.column_names)
    # Delete then insert: a re-run of a day replaces exactly that day and nothing else.
    con.execute("delete from staging.events where event_date between ? and ?", bounds)
    con.execute(
        f"""
        insert into staging.events ({staged_columns})
        select {staged_columns}
        from routed
        where destination = 'staged'
            and event_date between ? and ?
        order by event_time, source, event_id
        """,
        bounds,
    )
    con.execute("delete from quality.quarantined_events where event_date between ? and ?", bounds)
    con.execute(
        """
        insert into quality.quarantined_events
        select source, source_file, source_row, raw, reason, event_date_routed
        from routed
        where destination = 'quarantined'
            and event_date_routed between ? and ?
        order by source_file, source_row
        """,
        bounds,
    )
    con.execute("delete from quality.ingest_counts where event_date between ? and ?", bounds)
    con.execute(
        """
        insert into quality.ingest_counts
        select
            event_date_routed,
            source_file,
            count(*),
            count(*) filter (where destination = 'staged'),
            count(*) filter (where destination = 'quarantined'),
            count(*) filter (where destination = 'duplicate')
        from routed
        where event_date_routed between ? and ?
        group by all
        order by 1, 2
        """,
        bounds,
    )
    totals = con.execute(
        """
        select
            coalesce(sum(rows_read), 0),
            coalesce(sum(rows_staged), 0),
            coalesce(sum(rows_quarantined), 0),
            coalesce(sum(rows_duplicate), 0)
        from quality.ingest_counts
        where event_date between ? and ?
        """,
        bounds,
    ).fetchall()[0]
    return dict(zip(("read", "staged", "quarantined", "duplicate"), map(int, totals), strict=True))
