"""Ingest: raw landing files to validated, deduplicated canonical events (SPEC 2, 3.1)."""

import datetime as dt

import dagster as dg
import duckdb

from assets.common import asset_key, daily_run_args, materialized, spec
from checks.common import CheckDef, count_check, result, threshold_severity
from pipeline import ingest
from pipeline.adapters import SOURCES
from pipeline.partitions import partition_days
from pipeline.settings import Settings
from pipeline.tables import INGEST_COUNTS, QUARANTINED_EVENTS, STAGING_EVENTS
from resources import SettingsResource, Warehouse

EVENTS = asset_key(STAGING_EVENTS)

CONSERVATION = CheckDef(
    "row_conservation",
    "Every row read is staged, quarantined or counted as a duplicate: rows read = staged + "
    "quarantined + duplicates, per day and file.",
)
UNIQUE_IDS = CheckDef("no_duplicate_event_ids", "No (source, event_id) is staged twice.")
NOT_EMPTY = CheckDef(
    "partition_not_empty", "Every day of the run has staged events: an empty day is an outage."
)
NO_FUTURE = CheckDef(
    "no_future_events",
    "No event in any landing file is later than the time of the run (clock skew or a bad "
    "timestamp): such rows fall on days no run covers yet.",
    dg.AssetCheckSeverity.WARN,
)
QUARANTINE_RATE = CheckDef(
    "quarantine_rate",
    "Share of rows read that were quarantined, against the WARN and ERROR thresholds of the "
    "settings (checks.quarantine_rate).",
    thresholded=True,
)
FILES_WITHOUT_EVENTS = CheckDef(
    "files_without_events",
    "No landing file is rejected whole by its adapter (for example a lookup table landed among "
    "event tables): such a file's rows are quarantined on the first partition day, where no "
    "daily run looks, so this check names them on every run.",
    dg.AssetCheckSeverity.WARN,
)
SCHEMA = CheckDef(
    "canonical_schema",
    "Staged rows conform to the canonical event schema (pandera), re-validated after writing.",
)
CHECKS = (
    CONSERVATION,
    UNIQUE_IDS,
    NOT_EMPTY,
    NO_FUTURE,
    FILES_WITHOUT_EVENTS,
    QUARANTINE_RATE,
    SCHEMA,
)


def evaluate_checks(
    con: duckdb.DuckDBPyConnection, settings: Settings, start: dt.date, end: dt.date
):
    days = [start, end]
    yield count_check(
        con,
        CONSERVATION,
        EVENTS,
        """
        select *
        from quality.ingest_counts
        where event_date between ? and ?
            and rows_read <> rows_staged + rows_quarantined + rows_duplicate
        """,
        days,
        start,
        end,
    )
    yield count_check(
        con,
        UNIQUE_IDS,
        EVENTS,
        """
        select source, event_id, count(*) as copies
        from staging.events
        where event_date between ? and ?
        group by all
        having count(*) > 1
        """,
        days,
        start,
        end,
    )
    yield count_check(
        con,
        NOT_EMPTY,
        EVENTS,
        """
        select d::date as empty_day
        from generate_series(?::date, ?::date, interval 1 day) as g(d)
        where d::date not in (select distinct event_date from staging.events)
        """,
        days,
        start,
        end,
    )
    yield count_check(
        con,
        NO_FUTURE,
        EVENTS,
        """
        select event_id, source, event_time, source_file, source_row
        from routed
        where event_time > now()
        order by event_time desc
        """,
        [],
        start,
        end,
    )
    yield count_check(
        con,
        FILES_WITHOUT_EVENTS,
        EVENTS,
        """
        select source_file, count(*) as rows, mode(reason) as reason
        from routed
        group by source_file
        having count(event_date) = 0
        order by source_file
        """,
        [],
        start,
        end,
    )
    read, quarantined = con.execute(
        """
        select coalesce(sum(rows_read), 0), coalesce(sum(rows_quarantined), 0)
        from quality.ingest_counts
        where event_date between ? and ?
        """,
        days,
    ).fetchall()[0]
    rate = quarantined / read if read else 0.0
    limits = settings.checks.quarantine_rate
    severity = threshold_severity(rate, limits.warn, limits.error)
    reasons_sql = """
        select reason, count(*) as rows, any_value(source_file) as example_file,
            min(source_row) as example_row
        from quality.quarantined_events
        where event_date between ? and ?
        group by reason
        order by rows desc
    """
    yield result(
        QUARANTINE_RATE,
        EVENTS,
        passed=severity is None,
        severity=severity,
        start=start,
        end=end,
        samples=con.execute(f"{reasons_sql} limit 5", days).df().to_markdown(index=False)
        if quarantined
        else "",
        quarantine_rate=float(rate),
        rows_read=int(read),
        rows_quarantined=int(quarantined),
        warn_above=limits.warn,
        error_above=limits.error,
    )
    staged = con.execute(
        "select * exclude (event_date) from staging.events where event_date between ? and ?", days
    ).df()
    reasons = ingest.validation_reasons(staged.drop(columns=["source_file", "source_row"]))
    yield result(
        SCHEMA,
        EVENTS,
        passed=reasons.empty,
        start=start,
        end=end,
        samples=staged.loc[reasons.index[:5], ["event_id", "source_file", "source_row"]]
        .assign(reason=reasons.iloc[:5].to_numpy())
        .to_markdown(index=False)
        if not reasons.empty
        else "",
        offending_count=len(reasons),
    )


def build(settings: Settings, partitions: dg.PartitionsDefinition) -> list:
    @dg.multi_asset(
        name="ingest_events",
        specs=[
            spec(STAGING_EVENTS, "ingest"),
            spec(QUARANTINED_EVENTS, "ingest"),
            spec(INGEST_COUNTS, "ingest"),
        ],
        check_specs=[c.spec(EVENTS) for c in CHECKS],
        **daily_run_args(partitions),
    )
    def ingest_events(
        context: dg.AssetExecutionContext, warehouse: Warehouse, settings: SettingsResource
    ):
        """Read every source folder under the landing root, validate and deduplicate."""
        config = settings.get()
        start, end = partition_days(context)
        fs, base = ingest.open_landing(config.landing_root)
        files = ingest.list_files(fs, base)
        if not files:
            raise dg.Failure(
                f"no data files under {config.landing_root}: files must sit in a source folder "
                f"({', '.join(f'{name}/' for name in SOURCES)}) below the landing root (see the "
                "README's landing layout)"
            )
        context.log.info(f"reading {len(files)} files under {config.landing_root}")
        with warehouse.get_connection() as con:
            try:
                ingest.stage_raw_rows(con, fs, files, config.sources.options())
                ingest.type_rows(con, config.reporting_timezone)
                routed = ingest.split_rows(con, config.first_partition_date)
            except ingest.UnreadableFileError as exc:
                raise dg.Failure(str(exc), metadata={"file": exc.path}) from exc
            context.log.info(f"rows across all files: {routed}")
            totals = ingest.write_range(con, start, end)
            context.log.info(f"{start} to {end}: {totals}")
            per_file = con.execute(
                """
                select source_file, sum(rows_read) as read, sum(rows_staged) as staged,
                    sum(rows_quarantined) as quarantined, sum(rows_duplicate) as duplicate
                from quality.ingest_counts
                where event_date between ? and ?
                group by all
                order by all
                """,
                [start, end],
            ).df()
            yield materialized(
                con,
                STAGING_EVENTS,
                "event_date",
                start,
                end,
                "event_time",
                files_read=len(files),
                rows_read=totals["read"],
                rows_duplicate=totals["duplicate"],
                rows_per_file=dg.MetadataValue.md(per_file.to_markdown(index=False)),
            )
            yield materialized(
                con, QUARANTINED_EVENTS, "event_date", start, end, "source_file, source_row"
            )
            yield materialized(con, INGEST_COUNTS, "event_date", start, end)
            yield from evaluate_checks(con, config, start, end)

    return [ingest_events]
