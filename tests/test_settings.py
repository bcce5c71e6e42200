import datetime as dt
from pathlib import Path

import pytest

from pipeline.settings import SettingsError, load_settings, parse_settings


def test_defaults_follow_the_spec():
    settings = parse_settings({})
    assert settings.first_partition_date == dt.date(2024, 1, 1)
    assert settings.reporting_timezone == "UTC"
    assert {k: v.lookback_days for k, v in settings.conversions.items()} == {
        "purchase": 7,
        "subscription": 30,
        "lead": 14,
    }
    assert settings.attribution.last_touch_rule == "last_non_direct"
    assert settings.attribution.path_transform == "exposure"
    assert settings.attribution.half_life_days == 7
    assert settings.attribution.push_open_session_window_minutes == 2
    assert settings.max_lookback_days == 30


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"attribution": {"half_life_days": -1}}, "attribution.half_life_days = -1"),
        ({"attribution": {"last_touch_rule": "final"}}, "attribution.last_touch_rule = 'final'"),
        ({"reporting_timezone": "Mars/Olympus"}, "unknown time zone 'Mars/Olympus'"),
        ({"lookback": 3}, "lookback = 3: unknown key"),
        (
            {"conversions": {"purchase": {"events": ["buy"], "lookback_days": 7}}},
            "'buy' is not a canonical event name",
        ),
        (
            {"conversions": {"purchase": {"events": ["purchase"], "lookback_days": 91}}},
            "conversions.purchase.lookback_days = 91",
        ),
        (
            {"attribution": {"position_weights": [0.5, 0.5, 0.5]}},
            "attribution.position_weights = [0.5, 0.5, 0.5]",
        ),
        ({"checks": {"quarantine_rate": {"warn": 0.5, "error": 0.1}}}, "must be >= warn"),
    ],
)
def test_errors_name_the_key_and_value(data, expected):
    with pytest.raises(SettingsError) as error:
        parse_settings(data)
    assert expected in str(error.value)


def test_environment_overrides_file(tmp_path, monkeypatch):
    file = tmp_path / "settings.yaml"
    file.write_text("landing_root: /from/file\ntrailing_window_days: 5\n")
    monkeypatch.setenv("PUSHASSIST_SETTINGS", str(file))
    monkeypatch.setenv("PUSHASSIST_LANDING", "/from/env")
    monkeypatch.delenv("PUSHASSIST_WAREHOUSE", raising=False)
    settings = load_settings()
    assert settings.landing_root == "/from/env"
    assert settings.trailing_window_days == 5


def test_missing_settings_file_named_by_env_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PUSHASSIST_SETTINGS", str(tmp_path / "nope.yaml"))
    with pytest.raises(SettingsError, match="nope.yaml, which does not exist"):
        load_settings()


def test_yaml_that_is_not_a_mapping(tmp_path):
    file = tmp_path / "settings.yaml"
    file.write_text("- a\n- b\n")
    with pytest.raises(SettingsError, match="must hold a mapping"):
        load_settings(file)


def test_braze_custom_events_must_name_canonical_events():
    settings = parse_settings(
        {"sources": {"braze": {"custom_events": {"sub_renewed": "subscription_renewal"}}}}
    )
    assert settings.sources.options() == {
        "braze": {"custom_events": {"sub_renewed": "subscription_renewal"}}
    }
    with pytest.raises(SettingsError, match="sub: 'renewal' is not a canonical event name"):
        parse_settings({"sources": {"braze": {"custom_events": {"sub": "renewal"}}}})


def test_an_impossible_date_names_the_file(tmp_path):
    file = tmp_path / "settings.yaml"
    file.write_text("first_partition_date: 2024-02-30\n")
    with pytest.raises(SettingsError, match="settings.yaml is not valid YAML: day is out of range"):
        load_settings(file)


def test_the_readme_settings_example_is_valid():
    import yaml

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    example = readme.split("```yaml", 1)[1].split("```", 1)[0]
    settings = parse_settings(yaml.safe_load(example))
    assert settings.conversions["subscription"].dedupe_by_order_id is False
