"""`pushassist run` refuses a range it cannot run, saying why, before starting Dagster."""

import pytest

from pipeline.cli import main


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        ("2024-03-05", "2024-03-04", "START 2024-03-05 is after END 2024-03-04"),
        ("2023-12-30", "2024-01-04", "START 2023-12-30 is before the first partition, 2024-01-01"),
        ("2024-3-5", "2024-03-06", "'2024-3-5' is not a day written YYYY-MM-DD"),
        ("2024-01-01", "2999-01-01", "END 2999-01-01 is after today"),
    ],
)
def test_run_refuses_bad_ranges(tmp_path, monkeypatch, capsys, start, end, message):
    monkeypatch.setenv("PUSHASSIST_SETTINGS", str(tmp_path / "settings.yaml"))
    (tmp_path / "settings.yaml").write_text("first_partition_date: 2024-01-01\n")
    assert main(["run", start, end, "--log", str(tmp_path / "run.log")]) == 1
    assert f"pushassist run: error: {message}" in capsys.readouterr().err
    assert not (tmp_path / "run.log").exists()


def test_run_names_a_bad_settings_key(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PUSHASSIST_SETTINGS", str(tmp_path / "settings.yaml"))
    (tmp_path / "settings.yaml").write_text("lookbak_days: 3\n")
    assert main(["run", "2024-01-01", "2024-01-02"]) == 1
    assert "lookbak_days = 3: unknown key" in capsys.readouterr().err
