"""Resources: the DuckDB warehouse and the settings file, both configured at load, not import."""

from __future__ import annotations

from contextlib import contextmanager
from functools import cached_property
from pathlib import Path

import dagster as dg
from dagster_duckdb import DuckDBResource

from pipeline.settings import Settings, load_settings


class Warehouse(DuckDBResource):
    """The DuckDB file every asset reads and writes; sessions run in UTC."""

    @contextmanager
    def get_connection(self):
        if self.database != ":memory:" and "://" not in self.database:
            Path(self.database).parent.mkdir(parents=True, exist_ok=True)
        with super().get_connection() as con:
            # Timestamps are stored and shown in UTC; days follow the reporting time zone
            # explicitly in SQL. (Set after connecting: ICU is not loaded at connect time.)
            con.execute("set TimeZone = 'UTC'")
            yield con


class SettingsResource(dg.ConfigurableResource):
    """The pushassist settings file (SPEC 7), validated when a run first asks for it."""

    path: str

    @cached_property
    def _settings(self) -> Settings:
        return load_settings(self.path)

    def get(self) -> Settings:
        return self._settings


def build_resources(settings: Settings, settings_file: str) -> dict[str, dg.ConfigurableResource]:
    return {
        "warehouse": Warehouse(database=settings.warehouse_path),
        "settings": SettingsResource(path=settings_file),
    }
