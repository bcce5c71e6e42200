"""Generates the data dictionary (docs/data_dictionary.md) from the table contracts.

`python -m pipeline.dictionary` rewrites the file; a test fails when the committed file and the
contracts in pipeline/tables.py drift apart.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.tables import ALL_TABLES

DICTIONARY_FILE = Path(__file__).resolve().parent.parent / "docs" / "data_dictionary.md"


def render() -> str:
    parts = [
        "# Data dictionary",
        "",
        "Generated from `pipeline/tables.py` by `python -m pipeline.dictionary`; do not edit.",
        "Times are UTC timestamps; days are in the reporting time zone.",
        "",
    ]
    for table in ALL_TABLES:
        parts += [
            f"## `{table.qualified_name}`",
            "",
            f"{table.description} One row per {table.grain}.",
            "",
            "| column | type | description |",
            "|---|---|---|",
        ]
        parts += [f"| `{c.name}` | {c.type} | {c.description} |" for c in table.columns]
        parts.append("")
    return "\n".join(parts)


if __name__ == "__main__":
    DICTIONARY_FILE.parent.mkdir(exist_ok=True)
    DICTIONARY_FILE.write_text(render())
