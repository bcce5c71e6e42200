"""What every asset attaches to its materialization: row counts, column docs, a preview."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import duckdb

from pipeline.tables import Table

# Every asset that writes to DuckDB shares one pool: DuckDB allows a single writing process, so
# the pool (limited to 1 in dagster.yaml) keeps two runs from writing at once.
WAREHOUSE_POOL = "duckdb_warehouse"
OWNER = "team:analytics-engineering"


def daily_run_args(partitions: dg.PartitionsDefinition) -> dict:
    """What every warehouse asset shares: the daily partitions, single-run backfills (a range
    of days is one run, set-based over all its days) and the warehouse pool."""
    return {
        "partitions_def": partitions,
        "backfill_policy": dg.BackfillPolicy.single_run(),
        "pool": WAREHOUSE_POOL,
    }


def asset_key(table: Table) -> dg.AssetKey:
    return dg.AssetKey([table.schema, table.name])


def column_schema(table: Table) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[dg.TableColumn(c.name, c.type, description=c.description) for c in table.columns]
    )


def table_asset_args(table: Table, group: str) -> dict:
    """What the UI shows of a table's asset: description, group, owner, kinds and columns."""
    return {
        "description": f"{table.description}\n\nGrain: one row per {table.grain}.",
        "group_name": group,
        "owners": [OWNER],
        "kinds": {"duckdb", "sql"},
        "metadata": {
            "dagster/column_schema": column_schema(table),
            "dagster/table_name": f"pushassist.{table.qualified_name}",
        },
    }


def spec(table: Table, group: str, *, deps: list | None = None) -> dg.AssetSpec:
    """The asset spec of one table written by a multi-asset."""
    return dg.AssetSpec(key=asset_key(table), deps=deps or [], **table_asset_args(table, group))


def materialized(
    con: duckdb.DuckDBPyConnection,
    table: Table,
    date_column: str,
    start: dt.date,
    end: dt.date,
    preview_order: str | None = None,
    **figures,
) -> dg.MaterializeResult:
    """The materialization of a table's [start, end] slice, with counts and a short preview."""
    where = f"where {date_column} between ? and ?"
    rows = con.execute(f"select count(*) from {table.qualified_name} {where}", [start, end])
    row_count = int(rows.fetchall()[0][0])
    preview = con.execute(
        f"select * from {table.qualified_name} {where} "
        f"order by {preview_order or date_column} limit 10",
        [start, end],
    ).df()
    metadata = {
        "dagster/row_count": row_count,
        "days": f"{start.isoformat()} to {end.isoformat()}",
        "preview": dg.MetadataValue.md(preview.astype(str).to_markdown(index=False)),
        **{k: (int(v) if isinstance(v, int | bool) else v) for k, v in figures.items()},
    }
    return dg.MaterializeResult(asset_key=asset_key(table), metadata=metadata)
