"""Building check results that an on-call engineer can act on from the UI alone."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import dagster as dg
import duckdb

SAMPLE_ROWS = 5


@dataclass(frozen=True)
class CheckDef:
    """A check's name, what it guards, and how bad a failure is."""

    name: str
    description: str
    severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR
    # A check with WARN and ERROR thresholds reports the severity its rate reached.
    thresholded: bool = False

    @property
    def blocking(self) -> bool:
        # A check that can fail as ERROR stops the stages after it: building metrics on broken
        # input would publish wrong numbers. A WARN failure never blocks.
        return self.thresholded or self.severity == dg.AssetCheckSeverity.ERROR

    def spec(self, asset: dg.AssetKey) -> dg.AssetCheckSpec:
        return dg.AssetCheckSpec(
            self.name, asset=asset, description=self.description, blocking=self.blocking
        )


def sample_markdown(con: duckdb.DuckDBPyConnection, sql: str, params=None) -> str:
    """A few offending rows as a markdown table (empty text when there are none)."""
    frame = con.execute(f"select * from ({sql}) limit {SAMPLE_ROWS}", params or []).df()
    if frame.empty:
        return ""
    return frame.astype(str).to_markdown(index=False)


def result(
    check: CheckDef,
    asset: dg.AssetKey,
    *,
    passed: bool,
    start: dt.date,
    end: dt.date,
    severity: dg.AssetCheckSeverity | None = None,
    samples: str = "",
    **figures,
) -> dg.AssetCheckResult:
    metadata: dict = {"days": f"{start.isoformat()} to {end.isoformat()}", **figures}
    if samples:
        metadata["offending_rows"] = dg.MetadataValue.md(samples)
    return dg.AssetCheckResult(
        check_name=check.name,
        asset_key=asset,
        passed=bool(passed),
        severity=severity or check.severity,
        description=check.description,
        metadata=metadata,
    )


def count_check(
    con: duckdb.DuckDBPyConnection,
    check: CheckDef,
    asset: dg.AssetKey,
    offending_sql: str,
    params: list,
    start: dt.date,
    end: dt.date,
) -> dg.AssetCheckResult:
    """Pass when `offending_sql` returns no row; report how many it returns and a sample."""
    count = con.execute(f"select count(*) from ({offending_sql})", params).fetchall()[0][0]
    return result(
        check,
        asset,
        passed=count == 0,
        start=start,
        end=end,
        samples=sample_markdown(con, offending_sql, params) if count else "",
        offending_count=int(count),
    )


def threshold_severity(rate: float, warn: float, error: float) -> dg.AssetCheckSeverity | None:
    """None when the rate is under both thresholds, else the severity it reached."""
    if rate > error:
        return dg.AssetCheckSeverity.ERROR
    if rate > warn:
        return dg.AssetCheckSeverity.WARN
    return None
