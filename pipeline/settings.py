"""Settings: one YAML file, validated when it is loaded.

Every key has a default, so an empty or missing file is valid. Errors name the key and the value
that is wrong. The landing root, the warehouse file and the settings file itself can be set from
the environment (`PUSHASSIST_LANDING`, `PUSHASSIST_WAREHOUSE`, `PUSHASSIST_SETTINGS`), which
win over the file. Secrets never live here: they come from environment variables only.
"""

from __future__ import annotations

import datetime as dt
import os
import zoneinfo
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SETTINGS_FILE = PROJECT_ROOT / "pushassist.yaml"
DEFAULT_LANDING = PROJECT_ROOT / "data" / "landing"
DEFAULT_WAREHOUSE = PROJECT_ROOT / "data" / "pushassist.duckdb"
DEFAULT_CHANNEL_RULES = Path(__file__).resolve().parent / "channel_rules.yaml"

MAX_LOOKBACK_DAYS = 90


class SettingsError(ValueError):
    """The settings file is missing a value, has an unknown key or a value out of range."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ConversionDefinition(_Strict):
    """Which events count as one type of conversion, and how far back its path reaches."""

    events: list[str] = Field(min_length=1)
    lookback_days: int = Field(ge=1, le=MAX_LOOKBACK_DAYS)
    value_column: Literal["revenue"] = "revenue"
    dedupe_by_order_id: bool = True


def _default_conversions() -> dict[str, ConversionDefinition]:
    return {
        "purchase": ConversionDefinition(events=["purchase"], lookback_days=7),
        # A subscription's start and renewals share its id: each renewal is a conversion.
        "subscription": ConversionDefinition(
            events=["subscription_start", "subscription_renewal"],
            lookback_days=30,
            dedupe_by_order_id=False,
        ),
        "lead": ConversionDefinition(events=["lead_submit"], lookback_days=14),
    }


class AttributionSettings(_Strict):
    last_touch_rule: Literal["last_click", "last_non_direct"] = "last_non_direct"
    path_transform: Literal[
        "none",
        "exposure",
        "first",
        "frequency",
        "trim_long_path",
        "remove_if_not_all_direct",
        "remove_if_last_and_not_all_direct",
    ] = "exposure"
    # trim_long_path keeps the last `path_lookback_steps` touches (None: no limit).
    path_lookback_steps: int | None = Field(default=None, ge=1)
    half_life_days: float = Field(default=7.0, gt=0)
    position_weights: tuple[float, float, float] = (0.4, 0.2, 0.4)
    # Impressions and influenced opens never take the last touch; they join the multi-touch
    # models only when a team asks for it.
    include_views_in_models: bool = False
    # Impression-only assists are always reported in their own column; this decides whether
    # they also count in the headline push-assisted figure.
    count_impression_assists: bool = False
    push_open_session_window_minutes: float = Field(default=2.0, ge=0, le=60)
    # Order of the Markov chain model: a state is the last `markov_order` channels.
    markov_order: int = Field(default=1, ge=1, le=4)
    # A session folded into a push open is credited as push (the corrected channel). False
    # credits it under the channel it was recorded as, beside the open's own push click: what a
    # tool without the open-to-session link reports. marts.channel_correction_daily shows both.
    use_corrected_channels: bool = True

    @field_validator("position_weights")
    @classmethod
    def _weights_sum_to_one(cls, value: tuple[float, float, float]):
        if any(w < 0 for w in value) or abs(sum(value) - 1.0) > 1e-9:
            raise ValueError(f"must be three non-negative weights summing to 1, got {list(value)}")
        return value

    @model_validator(mode="after")
    def _steps_need_trim(self):
        if self.path_lookback_steps is not None and self.path_transform != "trim_long_path":
            raise ValueError(
                "path_lookback_steps applies to path_transform trim_long_path only, "
                f"not {self.path_transform!r}"
            )
        return self


class IdentitySettings(_Strict):
    junk_values: list[str] = Field(
        default_factory=lambda: [
            "",
            "0",
            "-1",
            "null",
            "none",
            "undefined",
            "anonymous",
            "unknown",
            "(not set)",
            "00000000-0000-0000-0000-000000000000",
        ]
    )
    # A device or anonymous id seen with more user ids than this is public (a kiosk, a shop
    # tablet): it links nothing and its events stay with the device.
    max_users_per_device: int = Field(default=5, ge=2)
    max_component_size: int = Field(default=50, ge=2)


class Threshold(_Strict):
    warn: float = Field(ge=0)
    error: float = Field(ge=0)

    @model_validator(mode="after")
    def _ordered(self):
        if self.error < self.warn:
            raise ValueError(f"error ({self.error}) must be >= warn ({self.warn})")
        return self


class CheckSettings(_Strict):
    quarantine_rate: Threshold = Threshold(warn=0.01, error=0.10)
    anonymous_event_share: Threshold = Threshold(warn=0.5, error=0.9)
    push_as_direct_rate: Threshold = Threshold(warn=0.05, error=0.20)
    # Share of sessions with a push-looking utm_medium that the rules did not classify as push.
    push_medium_unclassified_rate: Threshold = Threshold(warn=0.0, error=0.05)
    # Share of campaign-days with opens (at least min_campaign_opens) but no push session.
    campaigns_without_push_sessions_rate: Threshold = Threshold(warn=0.0, error=0.25)
    # A campaign needs this many opens in a day before missing sessions are suspicious.
    min_campaign_opens: int = Field(default=3, ge=1)


class BrazeSettings(_Strict):
    # Braze CustomEvent names that are conversions, mapped to canonical event names, e.g.
    # {"subscription_renewed": "subscription_renewal"}.
    custom_events: dict[str, str] = Field(default_factory=dict)

    @field_validator("custom_events")
    @classmethod
    def _canonical_names(cls, value: dict[str, str]):
        from pipeline.tables import EVENT_NAMES

        for name, event in value.items():
            if event not in EVENT_NAMES:
                raise ValueError(f"{name}: {event!r} is not a canonical event name")
        return value


class AlertSettings(_Strict):
    """Where the alert sensor writes. Slack and webhook sinks are configured by environment
    variables only (PUSHASSIST_SLACK_TOKEN, PUSHASSIST_SLACK_CHANNEL,
    PUSHASSIST_ALERT_WEBHOOK_URL): they carry secrets."""

    # JSON lines, one alert per (check, days); default: alerts.jsonl beside the warehouse file.
    log_file: str | None = None
    # Which (check, days) were already sent; default: alert_state.json beside the warehouse.
    state_file: str | None = None
    # Link the alerts give for their runbook section (a repository URL in production).
    runbook_url: str = "docs/runbook.md"


class SourceSettings(_Strict):
    braze: BrazeSettings = BrazeSettings()

    def options(self) -> dict[str, dict]:
        """Each adapter's section, as the plain mapping adapters receive."""
        return self.model_dump()


class Settings(_Strict):
    first_partition_date: dt.date = dt.date(2024, 1, 1)
    reporting_timezone: str = "UTC"
    trailing_window_days: int = Field(default=3, ge=1, le=31)
    landing_root: str = str(DEFAULT_LANDING)
    warehouse_path: str = str(DEFAULT_WAREHOUSE)
    channel_rules_file: str = str(DEFAULT_CHANNEL_RULES)
    sources: SourceSettings = SourceSettings()
    conversions: dict[str, ConversionDefinition] = Field(default_factory=_default_conversions)
    attribution: AttributionSettings = AttributionSettings()
    identity: IdentitySettings = IdentitySettings()
    checks: CheckSettings = CheckSettings()
    alerts: AlertSettings = AlertSettings()

    @field_validator("reporting_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("conversions")
    @classmethod
    def _conversions_valid(cls, value: dict[str, ConversionDefinition]):
        from pipeline.tables import EVENT_NAMES

        seen: dict[str, str] = {}
        for name, definition in value.items():
            for event in definition.events:
                if event not in EVENT_NAMES:
                    raise ValueError(f"{name}: {event!r} is not a canonical event name")
                if event in seen:
                    raise ValueError(f"{event!r} is in both {seen[event]!r} and {name!r}")
                seen[event] = name
        if not value:
            raise ValueError("at least one conversion definition is needed")
        return value

    @property
    def alert_log_file(self) -> Path:
        return _beside_warehouse(self.alerts.log_file, self.warehouse_path, "alerts.jsonl")

    @property
    def alert_state_file(self) -> Path:
        return _beside_warehouse(self.alerts.state_file, self.warehouse_path, "alert_state.json")

    @property
    def max_lookback_days(self) -> int:
        return max(d.lookback_days for d in self.conversions.values())


def _beside_warehouse(path: str | None, warehouse_path: str, name: str) -> Path:
    # A warehouse in an object store has no local folder: the files go to the working folder.
    if path:
        return Path(path)
    if "://" in warehouse_path or warehouse_path == ":memory:":
        return Path(name)
    return Path(warehouse_path).parent / name


def _describe(error: ValidationError, origin: str) -> str:
    lines = [f"invalid settings in {origin}:"]
    for item in error.errors():
        key = ".".join(str(p) for p in item["loc"]) or "(top level)"
        value = item.get("input")
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        lines.append(f"  {key} = {value!r}: {message}")
    return "\n".join(lines)


def parse_settings(data: dict | None, origin: str = "settings") -> Settings:
    """Validate a settings mapping; the error names every bad key and value."""
    try:
        return Settings.model_validate(data or {})
    except ValidationError as exc:
        raise SettingsError(_describe(exc, origin)) from None


def settings_path() -> Path:
    return Path(os.environ.get("PUSHASSIST_SETTINGS", str(DEFAULT_SETTINGS_FILE)))


def load_settings(path: str | Path | None = None) -> Settings:
    """Load the settings file (missing file: all defaults), then apply environment overrides."""
    path = Path(path) if path is not None else settings_path()
    data: dict = {}
    if path.exists():
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except (yaml.YAMLError, ValueError) as exc:
            # PyYAML turns 2024-02-30 into a date and fails with a bare ValueError.
            raise SettingsError(f"{path} is not valid YAML: {exc}") from None
        if not isinstance(loaded, dict):
            raise SettingsError(f"{path} must hold a mapping of keys, not {type(loaded).__name__}")
        data = loaded
    elif "PUSHASSIST_SETTINGS" in os.environ:
        raise SettingsError(f"PUSHASSIST_SETTINGS points to {path}, which does not exist")
    if "PUSHASSIST_LANDING" in os.environ:
        data["landing_root"] = os.environ["PUSHASSIST_LANDING"]
    if "PUSHASSIST_WAREHOUSE" in os.environ:
        data["warehouse_path"] = os.environ["PUSHASSIST_WAREHOUSE"]
    return parse_settings(data, str(path))
