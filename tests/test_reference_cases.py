"""The heuristic models against published and derived numbers from other attribution tools.

Cases live in ../shared/reference-cases/ (relative to the repo root), in the paths format of
SPEC 4.3. Each runs through `attribute_paths` with the settings that reproduce its source's
rules, and the test id names those settings. Every case runs, none is skipped: the credit
models (the data-driven markov, shapley and fractribution included), GA's assist counts (the
paths interface's `assists`) and all of Snowplow's published path transforms.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from pipeline.attribution import HEURISTIC_MODELS, MODEL_ALIASES, attribute_paths
from pipeline.attribution import build_paths as build
from pipeline.models import DATA_DRIVEN_MODELS
from pipeline.settings import AttributionSettings
from pipeline.tables import CONVERSIONS, TOUCHES

ROOT = Path(__file__).resolve().parents[1]
CASES_DIR = ROOT.parent / "shared" / "reference-cases"
MISSING = f"reference cases not found at {CASES_DIR} (../shared/reference-cases/)"

# Snowplow's dbt package: `exposure_path` collapses consecutive repeats, its last touch does
# not pass Direct over, and paths look back 30 days.
SNOWPLOW = {"path_transform": "exposure", "last_touch_rule": "last_click", "lookback_days": 30}
# Google's definitions give no lookback for their worked examples (one spans 38 days), so the
# paths are taken whole; the half life and weights come from each case.
GOOGLE: dict = {}
SOURCE_SETTINGS = {
    "snowplow_dbt_attribution.json": SNOWPLOW,
    "google_definitions_derived.json": GOOGLE,
}
# Snowplow's transform names -> the settings that give the same transformed path
SNOWPLOW_TRANSFORMS: dict[str, dict] = {
    "unique_path": {"path_transform": "none"},
    "exposure_path": {"path_transform": "exposure"},
    "first_path": {"path_transform": "first"},
    "frequency_path (fractribution only)": {"path_transform": "frequency"},
    "trim_long_path_1": {"path_transform": "trim_long_path", "path_lookback_steps": 1},
    "trim_long_path_2": {"path_transform": "trim_long_path", "path_lookback_steps": 2},
    "remove_if_not_all_Direct": {"path_transform": "remove_if_not_all_direct"},
    "remove_if_last_and_not_all_Direct": {"path_transform": "remove_if_last_and_not_all_direct"},
}
# The assists cases' `params.paths`: which path transform the case's paths were read with
ASSISTS_PATHS = {"collapsed_paths": "exposure", "raw_paths": "none"}


def load_files() -> dict[str, dict]:
    if not CASES_DIR.is_dir():
        return {}
    return {p.name: json.loads(p.read_text()) for p in sorted(CASES_DIR.glob("*.json"))}


FILES = load_files()


def case_params(file_name: str, case: dict) -> dict:
    """The engine params matching the source's semantics and the case's own parameters."""
    params = dict(SOURCE_SETTINGS.get(file_name, {}))
    given = case.get("params") or {}
    weights = given.get("position_weights", given.get("weights"))
    if weights is not None:
        params["position_weights"] = weights
    for key in ("half_life_days", "lookback_days", "markov_order"):
        if key in given:
            params[key] = given[key]
    return params


def setting_label(params: dict, model: str) -> str:
    """The settings a case runs with, for its test id."""
    shown = {"lookback_days": "none", **params}
    weights = shown.pop("position_weights", None)
    if weights is not None and model == "position_based":
        shown["position_weights"] = "/".join(str(w) for w in weights)
    return ",".join(f"{k}={v}" for k, v in sorted(shown.items()))


def credit_cases() -> list:
    """One pytest param per (case, model); skipped ones carry their reason."""
    if not FILES:
        return [pytest.param(None, None, None, None, marks=pytest.mark.skip(reason=MISSING))]
    params = []
    for file_name, data in FILES.items():
        source = file_name.removesuffix(".json")
        for case in data["cases"]:
            if case["model"] in ("path_transform", "assists"):
                continue  # not models: test_published_path_transforms and test_assists_case
            engine_params = case_params(file_name, case)
            if "expected_by_model" in case:
                runs = list(case["expected_by_model"].items())
            else:
                runs = [(case["model"], case.get("expected"))]
            for model, expected in runs:
                test_id = f"{source}:{case['id']}:{model}[{setting_label(engine_params, model)}]"
                reason = skip_reason(model)
                marks = [pytest.mark.skip(reason=reason)] if reason else []
                params.append(
                    pytest.param(case, model, engine_params, expected, id=test_id, marks=marks)
                )
    return params


def skip_reason(model: str) -> str | None:
    if model in HEURISTIC_MODELS or model in MODEL_ALIASES or model in DATA_DRIVEN_MODELS:
        return None
    return f"model {model!r} is not one this engine knows"


def assert_credits(actual: dict[str, float], expected: dict[str, float], tolerance: float):
    for channel, value in expected.items():
        assert actual.get(channel, 0.0) == pytest.approx(value, abs=tolerance), channel
    # nothing credited outside the channels the case expects
    extra = {c: v for c, v in actual.items() if c not in expected and abs(v) > tolerance}
    assert extra == {}


@pytest.mark.parametrize(("case", "model", "params", "expected"), credit_cases())
def test_reference_case(case, model, params, expected):
    document = {"model": model, "params": params, "paths": case["paths"]}
    result = attribute_paths(document)
    # a case says when its expected figures are conversions rather than value
    units = "conversions" if "conversion" in str(case.get("units", "")) else "credits"
    assert_credits(result[units], expected, case["tolerance"])
    # channel-level figures of the data-driven models, when the case publishes them
    for figure in ("removal_effects", "shapley_values"):
        if f"expected_{figure}" in case:
            assert_credits(result[figure], case[f"expected_{figure}"], case["tolerance"])


def assists_cases() -> list:
    if not FILES:
        return [pytest.param(None, marks=pytest.mark.skip(reason=MISSING))]
    params = []
    for name, data in FILES.items():
        for case in data["cases"]:
            if case["model"] != "assists":
                continue
            transform = ASSISTS_PATHS[case["params"]["paths"]]
            test_id = f"{name.removesuffix('.json')}:{case['id']}[path_transform={transform}]"
            params.append(pytest.param(case, transform, id=test_id))
    return params


@pytest.mark.parametrize(("case", "transform"), assists_cases())
def test_assists_case(case, transform):
    """GA's assisted conversions, and the last-click credit (Direct not passed over) beside them.

    Every model returns the same assists; last_click runs here so both parts of the case are
    checked on one result.
    """
    document = {
        "model": "last_click",
        "params": {"path_transform": transform},
        "paths": case["paths"],
    }
    result = attribute_paths(document)
    assert_credits(result["assists"]["conversions"], case["expected_assisted_conversions"], 1e-9)
    assert_credits(result["assists"]["value"], case["expected_assisted_value"], 1e-9)
    assert_credits(result["credits"], case["expected_last_click_value"], 1e-9)
    assert_credits(result["conversions"], case["expected_last_click_conversions"], 1e-9)


def transform_cases() -> list:
    if not FILES:
        return [pytest.param(None, None, None, marks=pytest.mark.skip(reason=MISSING))]
    params = []
    for name, data in FILES.items():
        for case in data["cases"]:
            if case["model"] != "path_transform":
                continue
            for transform_name, expected in case["expected"].items():
                settings = SNOWPLOW_TRANSFORMS.get(transform_name)
                test_id = f"{name.removesuffix('.json')}:{case['id']}:{transform_name}"
                marks = []
                if settings is None:
                    reason = f"{transform_name} is not a path transform this engine offers"
                    marks = [pytest.mark.skip(reason=reason)]
                else:
                    test_id += f"[{','.join(f'{k}={v}' for k, v in settings.items())}]"
                params.append(
                    pytest.param(case["input_path"], settings, expected, id=test_id, marks=marks)
                )
    return params


@pytest.mark.parametrize(("channels", "settings", "expected"), transform_cases())
def test_published_path_transforms(channels, settings, expected):
    """The pipeline writes the transformed path Snowplow publishes, through core tables."""
    con = duckdb.connect()
    con.execute("create schema core")
    con.execute(TOUCHES.create_sql())
    con.execute(CONVERSIONS.create_sql())
    converted = dt.datetime(2024, 1, 31, tzinfo=dt.UTC)
    for i, channel in enumerate(channels):
        when = converted - dt.timedelta(hours=len(channels) - i)
        con.execute(
            """
            insert into core.touches (touch_id, person_id, touch_time, touch_type, channel)
            values (?, 'p', ?, 'session', ?)
            """,
            [f"t{i}", when, channel],
        )
    con.execute(
        """
        insert into core.conversions (conversion_id, person_id, conversion_time, conversion_date,
            value, lookback_days)
        values ('cv', 'p', ?, ?, 1, 30)
        """,
        [converted, converted.date()],
    )
    build(con, AttributionSettings(**settings), converted.date(), converted.date())
    path = con.execute("select path from core.conversion_paths").fetchone()[0]
    assert path == " > ".join(expected)


def test_reference_case_through_the_cli(tmp_path):
    if not FILES:
        pytest.skip(MISSING)
    file_name = "snowplow_dbt_attribution.json"
    case = next(c for c in FILES[file_name]["cases"] if c["id"] == "linear/all_six_channel_totals")
    document = {"model": "linear", "params": case_params(file_name, case), "paths": case["paths"]}
    paths_file = tmp_path / "paths.json"
    paths_file.write_text(json.dumps(document))
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "attribute", str(paths_file)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert_credits(json.loads(done.stdout)["credits"], case["expected"], case["tolerance"])
