"""great-expectations suites on the marts, run on pandas frames read from DuckDB.

great-expectations 1.x cannot resolve metrics against DuckDB through SQLAlchemy, so each suite
runs on the day-slice of a mart loaded into pandas, which is small.
"""

from __future__ import annotations

import logging
from functools import cache

import pandas as pd

SUITES: dict[str, list[tuple[str, dict]]] = {
    "marts.push_assisted_conversions_daily": [
        ("ExpectColumnValuesToNotBeNull", {"column": "date"}),
        (
            "ExpectColumnValuesToBeInSet",
            {"column": "push_kind", "value_set": ["app", "web", "both", "none"]},
        ),
        ("ExpectColumnValuesToBeBetween", {"column": "conversions", "min_value": 1}),
        ("ExpectColumnValuesToBeBetween", {"column": "push_assisted_conversions", "min_value": 0}),
        ("ExpectColumnValuesToBeBetween", {"column": "assisted_revenue", "min_value": 0}),
        (
            "ExpectColumnPairValuesAToBeGreaterThanB",
            {"column_A": "conversions", "column_B": "push_assisted_conversions", "or_equal": True},
        ),
        (
            "ExpectColumnPairValuesAToBeGreaterThanB",
            {"column_A": "conversions", "column_B": "ga_assisted_conversions", "or_equal": True},
        ),
        (
            "ExpectCompoundColumnsToBeUnique",
            {"column_list": ["date", "push_kind", "platform", "conversion_type"]},
        ),
    ],
    "marts.push_campaign_daily": [
        ("ExpectColumnValuesToNotBeNull", {"column": "campaign_id"}),
        (
            "ExpectColumnValuesToBeBetween",
            {"column": "delivery_rate", "min_value": 0, "max_value": 1},
        ),
        ("ExpectColumnValuesToBeBetween", {"column": "open_rate", "min_value": 0, "max_value": 1}),
        (
            "ExpectColumnPairValuesAToBeGreaterThanB",
            {"column_A": "sends", "column_B": "deliveries", "or_equal": True},
        ),
        ("ExpectCompoundColumnsToBeUnique", {"column_list": ["date", "campaign_id"]}),
    ],
}


@cache
def _context():
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    # Progress bars would flood the run logs with carriage-return noise.
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return context


def validate(table_name: str, frame: pd.DataFrame) -> tuple[bool, list[dict]]:
    """Run the suite of a mart on a frame; return success and one summary row per expectation."""
    import great_expectations as gx

    context = _context()
    source_name = f"pushassist_{table_name.replace('.', '_')}"
    try:
        source = context.data_sources.get(source_name)
    except (KeyError, ValueError):
        source = context.data_sources.add_pandas(source_name)
    asset = source.add_dataframe_asset(f"slice_{len(source.assets)}")
    batch = asset.add_batch_definition_whole_dataframe("all").get_batch(
        batch_parameters={"dataframe": frame}
    )
    suite = gx.ExpectationSuite(name=table_name)
    for expectation, kwargs in SUITES[table_name]:
        suite.add_expectation(getattr(gx.expectations, expectation)(**kwargs))
    outcome = batch.validate(suite)
    rows = [
        {
            "expectation": r.expectation_config.type,
            "column": r.expectation_config.kwargs.get("column")
            or r.expectation_config.kwargs.get("column_A")
            or ", ".join(r.expectation_config.kwargs.get("column_list", [])),
            "success": r.success,
            "unexpected": (r.result or {}).get("unexpected_count"),
        }
        for r in outcome.results
    ]
    return bool(outcome.success), rows
