"""A short plain-text report of what a run produced, read back from the warehouse.

`python -m pipeline.report [--warehouse FILE] [--truth DIR]`: the figures a data team looks at
first. With `--truth` (the demo generator's answer key) it also says how far the pipeline agrees
with the known truth.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import duckdb

from pipeline.settings import load_settings


def _one(con: duckdb.DuckDBPyConnection, sql: str) -> tuple:
    return con.execute(sql).fetchall()[0]


def _table_exists(con: duckdb.DuckDBPyConnection, qualified: str) -> bool:
    schema, name = qualified.split(".")
    found = con.execute(
        "select count(*) from information_schema.tables where table_schema = ? and table_name = ?",
        [schema, name],
    ).fetchall()[0][0]
    return bool(found)


def headline(con: duckdb.DuckDBPyConnection) -> dict[str, float]:
    """The demo's headline figures, summed over every day in the warehouse."""
    read, staged, quarantined, duplicate = _one(
        con,
        """
        select sum(rows_read), sum(rows_staged), sum(rows_quarantined), sum(rows_duplicate)
        from quality.ingest_counts
        """,
    )
    (persons,) = _one(con, "select count(distinct person_id) from core.event_persons")
    figures = _one(
        con,
        """
        select
            sum(conversions),
            sum(push_last_touch_conversions),
            sum(push_assisted_conversions),
            sum(click_assisted_conversions),
            sum(influenced_assisted_conversions),
            sum(impression_assisted_conversions),
            sum(ga_assisted_conversions),
            sum(stitched_assisted_conversions),
            sum(assisted_revenue),
            sum(last_touch_revenue)
        from marts.push_assisted_conversions_daily
        """,
    )
    names = (
        "conversions",
        "push_last_touch_conversions",
        "push_assisted_conversions",
        "click_assisted_conversions",
        "influenced_assisted_conversions",
        "impression_assisted_conversions",
        "ga_assisted_conversions",
        "stitched_assisted_conversions",
        "assisted_revenue",
        "last_touch_revenue",
    )
    result = {
        "rows_read": read,
        "rows_staged": staged,
        "rows_quarantined": quarantined,
        "rows_duplicate": duplicate,
        "persons": persons,
        **dict(zip(names, figures, strict=True)),
    }
    return {k: float(v or 0) for k, v in result.items()}


# The truth names each event by the raw row that holds it: its file relative to the landing root
# and its 1-based line or record number. GA4 rows carry no id (the adapter derives one from their
# content), so the row is the only key the generator knows for sure. Each truth file is matched to
# the staged file whose path ends with it (the landing root may be relative, absolute or a URL),
# and the staged event at that row gives the pipeline's own event id.
_LOCATE_SQL = """
    truth_files as (
        select distinct source_file as relative_file
        from truth
    ),
    files as (
        select s.source_file, t.relative_file
        from (select distinct source_file from staging.events) as s
        join truth_files as t
            on s.source_file = t.relative_file
            or ends_with(s.source_file, '/' || t.relative_file)
    ),
    located as (
        select t.*, e.event_id as staged_event_id
        from truth as t
        join files as f
            on f.relative_file = t.source_file
        join staging.events as e
            on e.source_file = f.source_file
            and e.source_row = t.source_row
            -- The same row, read by the adapter of its source.
            and e.source = t.source
    )
"""


def truth_agreement(con: duckdb.DuckDBPyConnection, truth_dir: Path) -> dict[str, float]:
    """Share of conversions and events on which the pipeline agrees with the generator.

    Truth rows are found in `staging.events` by file and row (see _LOCATE_SQL), conversions then
    in `core.conversion_paths` by the staged event's id, and persons in `core.event_persons`.
    A conversion or event the pipeline did not stage counts as a disagreement.
    """
    conversions = truth_dir / "conversions.parquet"
    events = truth_dir / "events.parquet"
    out: dict[str, float] = {}
    if conversions.exists():
        row = con.execute(
            f"""
            with truth as (select * from read_parquet(?)),
            {_LOCATE_SQL}
            select
                count(*),
                count(p.conversion_id),
                count(*) filter (where p.push_role = t.push_role),
                count(*) filter (where p.assist_kind is not distinct from t.assist_kind),
                count(*) filter (where p.last_touch_channel = t.last_touch_channel),
                count(*) filter (where p.ga_assist = t.ga_assist),
                count(*) filter (where p.push_touch_count = t.push_touch_count)
            from truth as t
            left join located as l
                using (source_file, source_row)
            left join core.conversion_paths as p
                on p.conversion_event_id = l.staged_event_id
                -- Where the source has ids of its own (Braze, canonical), they must agree too.
                and p.conversion_event_id = coalesce(t.conversion_event_id, l.staged_event_id)
            """,
            [str(conversions)],
        ).fetchall()[0]
        total = row[0] or 1
        out.update(
            truth_conversions=row[0],
            conversions_found=row[1] / total,
            push_role_matches=row[2] / total,
            assist_kind_matches=row[3] / total,
            last_touch_channel_matches=row[4] / total,
            ga_assist_matches=row[5] / total,
            push_touch_count_matches=row[6] / total,
        )
    if events.exists():
        # A person is recovered when the pipeline's person holds exactly the true person's events.
        row = con.execute(
            f"""
            with truth as (select * from read_parquet(?)),
            {_LOCATE_SQL},
            joined as (
                select l.true_person, p.person_id
                from located as l
                join core.event_persons as p
                    on p.source = l.source
                    and p.event_id = l.staged_event_id
            ),
            pairs as (
                select person_id, count(distinct true_person) as true_people
                from joined
                group by person_id
            ),
            owners as (
                select true_person, count(distinct person_id) as persons
                from joined
                group by true_person
            )
            select
                (select count(*) from truth),
                count(*),
                count(*) filter (
                    where person_id in (select person_id from pairs where true_people = 1)
                        and true_person in (select true_person from owners where persons = 1)
                )
            from joined
            """,
            [str(events)],
        ).fetchall()[0]
        out.update(
            truth_events=row[0],
            events_found=row[1] / (row[0] or 1),
            events_person_recovered=row[2] / (row[1] or 1),
        )
    return out


def render(figures: dict[str, float], agreement: dict[str, float]) -> str:
    f = figures
    ratio = (
        f["push_assisted_conversions"] / f["push_last_touch_conversions"]
        if f["push_last_touch_conversions"]
        else None
    )
    lines = [
        "pushassist report",
        "=================",
        f"rows read {f['rows_read']:,.0f}: staged {f['rows_staged']:,.0f}, quarantined "
        f"{f['rows_quarantined']:,.0f}, duplicates {f['rows_duplicate']:,.0f}",
        f"persons resolved: {f['persons']:,.0f}",
        f"conversions: {f['conversions']:,.0f}",
        f"  push as credited last touch: {f['push_last_touch_conversions']:,.0f} "
        f"(revenue {f['last_touch_revenue']:,.2f})",
        f"  push-assisted (headline): {f['push_assisted_conversions']:,.0f} "
        f"(revenue {f['assisted_revenue']:,.2f})",
        f"    by click {f['click_assisted_conversions']:,.0f}, influenced open "
        f"{f['influenced_assisted_conversions']:,.0f}; impression-only "
        f"{f['impression_assisted_conversions']:,.0f} (reported apart)",
        f"  assisted / last-touch ratio: {'n/a' if ratio is None else f'{ratio:.2f}'}",
        f"  GA-style push assists: {f['ga_assisted_conversions']:,.0f}",
        f"  push-assisted only through identity stitching: "
        f"{f['stitched_assisted_conversions']:,.0f}",
    ]
    if agreement:
        lines += ["", "agreement with the demo generator's truth"]
        for key, value in agreement.items():
            text = f"{value:,.0f}" if key.startswith("truth_") else f"{value:.2%}"
            lines.append(f"  {key}: {text}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warehouse", help="DuckDB file (default: from the settings)")
    parser.add_argument("--truth", type=Path, help="demo truth folder, to compare against")
    args = parser.parse_args(argv)
    warehouse = args.warehouse or load_settings().warehouse_path
    if not Path(warehouse).exists():
        sys.stderr.write(f"no warehouse at {warehouse}: run the job first\n")
        return 1
    con = duckdb.connect(warehouse, read_only=True)
    if not _table_exists(con, "marts.push_assisted_conversions_daily"):
        sys.stderr.write(f"{warehouse} has no marts yet: the job has not finished\n")
        return 1
    agreement = truth_agreement(con, args.truth) if args.truth else {}
    sys.stdout.write(render(headline(con), agreement))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
