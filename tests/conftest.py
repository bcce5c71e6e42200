"""Shared helpers: run the whole Dagster job in-process on a temporary landing root."""

import datetime as dt
import json
from collections.abc import Mapping
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from pipeline import ingest
from pipeline.definitions import JOB_NAME, build_definitions
from pipeline.schedules import range_tags
from pipeline.settings import parse_settings

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED = REPO_ROOT.parent / "shared"


def run_job(
    tmp_path: Path,
    start: dt.date,
    end: dt.date,
    settings: Mapping[str, object] | None = None,
    **overrides,
) -> tuple[duckdb.DuckDBPyConnection, list[str]]:
    """Materialize every asset for [start, end] in one run.

    `settings` is a settings mapping (as a settings file holds it, e.g. the one the demo
    generator writes); keyword overrides win over it. The landing root is `tmp_path/landing`
    and the warehouse is in `tmp_path`, whatever either says.

    Returns a read-only connection to the warehouse and the names of the checks that failed.
    """
    warehouse = tmp_path / "warehouse.duckdb"
    values = {"first_partition_date": "2024-01-01", **(settings or {}), **overrides}
    parsed = parse_settings(
        {
            **values,
            "landing_root": str(tmp_path / "landing"),
            "warehouse_path": str(warehouse),
        }
    )
    settings_file = tmp_path / "settings.json"
    settings_file.write_text(json.dumps(parsed.model_dump(mode="json")))
    defs = build_definitions(parsed, str(settings_file))
    with dg.instance_for_test() as instance:
        result = defs.resolve_job_def(JOB_NAME).execute_in_process(
            instance=instance, tags=range_tags(start, end), raise_on_error=True
        )
        assert result.success
        failed = [c.check_name for c in result.get_asset_check_evaluations() if not c.passed]
    con = duckdb.connect(str(warehouse), read_only=True)
    con.execute("set TimeZone = 'UTC'")
    return con, failed


def run_ingest(
    landing: Path,
    start: dt.date,
    end: dt.date,
    *,
    first_date: dt.date | None = None,
    con: duckdb.DuckDBPyConnection | None = None,
) -> tuple[duckdb.DuckDBPyConnection, dict[str, int]]:
    """Ingest every file under `landing` and write the [start, end] days, as the asset does."""
    con = con or duckdb.connect()
    con.execute("set TimeZone = 'UTC'")
    fs, base = ingest.open_landing(str(landing))
    ingest.stage_raw_rows(con, fs, ingest.list_files(fs, base))
    ingest.type_rows(con, "UTC")
    ingest.split_rows(con, first_date or start)
    return con, ingest.write_range(con, start, end)


@pytest.fixture
def shared_dir() -> Path:
    if not SHARED.exists():
        pytest.skip(f"{SHARED} is absent: the shared samples and reference cases are not here")
    return SHARED
