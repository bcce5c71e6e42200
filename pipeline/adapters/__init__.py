"""Source adapters: each maps one vendor's export shape to canonical events (SPEC 2.1, 2.2).

The landing layout says which adapter reads a file: files under `<landing root>/<source>/`, at
any depth, belong to that source. Every adapter has the same contract:

    read(data: bytes, path: str, open_sibling, options) -> (rows, rejects)

`open_sibling(name)` returns the bytes of another file in the same folder (None when absent),
for exports that split one event over several files (Snowplow's context tables). `options` is
the adapter's section of the `sources` setting (for example Braze's `custom_events`). A file that
holds no events of its own (such a context table) returns two empty tables.

- `rows`: a pyarrow table with any of the canonical columns (pipeline.tables.CANONICAL_COLUMNS
  minus source_file/source_row) as strings, plus `source_row` (int64: the 1-based line or
  record number in the file) and `raw` (string: the record as read, e.g. the JSON line or the
  Avro record as JSON). Times are ISO-8601 text in UTC; revenue is decimal text; properties is
  JSON text. `source` is the adapter's name. A record of a kind the adapter does not know is
  kept as event_name `other` (with the original name in properties), never dropped.
- `rejects`: a pyarrow table of `source_row` (int64), `raw` (string) and `reason` (string) for
  records the adapter could not map at all, in words a person can act on.

Validation, deduplication on (source, event_id) and quarantine of schema failures are shared:
they happen after the adapter, in pipeline.ingest.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping

import pyarrow as pa

# Landing folders in the order files are read. `canonical` is read by pipeline.ingest itself.
SOURCES = ("canonical", "ga4", "braze", "segment", "snowplow")

_SUFFIXES = {
    "canonical": (".jsonl", ".ndjson", ".json", ".csv", ".parquet", ".pq"),
    "ga4": (".jsonl", ".ndjson", ".json", ".parquet"),
    "braze": (".avro",),
    "segment": (".jsonl", ".ndjson", ".json", ".csv"),
    "snowplow": (".csv", ".tsv"),
}


def suffixes(source: str) -> tuple[str, ...]:
    """File endings read under a source's landing folder."""
    return _SUFFIXES[source]


def read(
    source: str,
    data: bytes,
    path: str,
    open_sibling: Callable[[str], bytes | None],
    options: Mapping[str, object] | None = None,
) -> tuple[pa.Table, pa.Table]:
    """Map one raw file of `source` to canonical rows and rejects (see the module contract)."""
    module = importlib.import_module(f"pipeline.adapters.{source}")
    return module.read(data, path, open_sibling, options or {})


def rejects_table(rows=(), raws=(), reasons=()) -> pa.Table:
    """The rejects of the adapter contract: line numbers, raw records and reasons."""
    return pa.table(
        {
            "source_row": pa.array(list(rows), pa.int64()),
            "raw": pa.array(list(raws), pa.string()),
            "reason": pa.array(list(reasons), pa.string()),
        }
    )
