"""Software-defined assets, one module per stage of the pipeline.

Each module exposes `build(settings, partitions)`, returning its assets. Asset keys are prefixed
by the DuckDB schema their table lives in, so a key names its table: `staging/events` is
`staging.events`.
"""
