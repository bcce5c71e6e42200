"""Check results say what failed, how much, and show offending rows; thresholds pick severity."""

import datetime as dt
import os

import dagster as dg
import duckdb
import pytest
from conftest import REPO_ROOT

from checks.common import CheckDef, count_check, threshold_severity

DAY = dt.date(2024, 1, 5)
ASSET = dg.AssetKey(["core", "things"])
CHECK = CheckDef("no_negative", "No thing is negative.")


def test_failing_count_check_reports_count_and_sample():
    con = duckdb.connect()
    con.execute("create table things as select * from range(10) as t(x)")
    result = count_check(con, CHECK, ASSET, "select x from things where x < ?", [3], DAY, DAY)
    assert result.passed is False
    assert result.severity == dg.AssetCheckSeverity.ERROR
    assert result.metadata["offending_count"].value == 3
    sample = result.metadata["offending_rows"].value
    assert sample.splitlines() == ["|   x |", "|----:|", "|   0 |", "|   1 |", "|   2 |"]
    assert result.metadata["days"].value == "2024-01-05 to 2024-01-05"


def test_passing_count_check_has_no_sample():
    con = duckdb.connect()
    con.execute("create table things as select * from range(10) as t(x)")
    result = count_check(con, CHECK, ASSET, "select x from things where x < ?", [0], DAY, DAY)
    assert result.passed is True
    assert "offending_rows" not in result.metadata


@pytest.mark.parametrize(
    ("rate", "expected"),
    [
        (0.0, None),
        (0.01, None),  # at the WARN threshold: not above it
        (0.02, dg.AssetCheckSeverity.WARN),
        (0.10, dg.AssetCheckSeverity.WARN),
        (0.11, dg.AssetCheckSeverity.ERROR),
    ],
)
def test_thresholds(rate, expected):
    assert threshold_severity(rate, warn=0.01, error=0.10) == expected


def test_error_and_thresholded_checks_block_downstream_warn_checks_do_not():
    assert CheckDef("a", "a").blocking
    assert CheckDef("b", "b", thresholded=True).blocking
    assert not CheckDef("c", "c", dg.AssetCheckSeverity.WARN).blocking


def test_instance_limits_the_warehouse_pool_to_one(monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(REPO_ROOT / "dagster_home"))
    with dg.DagsterInstance.from_config(os.environ["DAGSTER_HOME"]) as instance:
        assert instance.get_concurrency_config().pool_config.default_pool_limit == 1
