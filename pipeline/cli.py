"""The `pushassist` command line.

`pushassist attribute PATHS_FILE` runs the attribution engine on a paths file (SPEC 4.3), without
the pipeline, and writes credits per channel as JSON to stdout. PATHS_FILE may be `-` for stdin.
A file it cannot run gives a one-line error on stderr and exit status 1.

`pushassist run START END` checks the range and the settings, then materializes every asset for
those days in one Dagster run (what `make run` does), keeping Dagster's log in a file.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import subprocess
import sys
import zoneinfo
from pathlib import Path

import duckdb

from pipeline.attribution import attribute_paths
from pipeline.channels import load_rules
from pipeline.settings import load_settings, settings_path


def _fail(command: str, message: str) -> int:
    # one line, so a shell script or CI log shows the whole reason
    sys.stderr.write(f"pushassist {command}: error: {' '.join(message.split())}\n")
    return 1


def _attribute(paths_file: str) -> int:
    """Run the paths file and write {"credits": ..., "conversions": ...} to stdout."""
    try:
        text = sys.stdin.read() if paths_file == "-" else Path(paths_file).read_text()
    except OSError as exc:
        return _fail("attribute", f"cannot read {paths_file}: {exc.strerror or exc}")
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        return _fail(
            "attribute",
            f"{paths_file} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
        )
    try:
        result = attribute_paths(document)
    except (ValueError, duckdb.Error) as exc:
        return _fail("attribute", f"{paths_file}: {exc}")
    sys.stdout.write(json.dumps(result, indent=2, sort_keys=True) + "\n")
    return 0


def _day(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a day written YYYY-MM-DD") from None


def _run(start_text: str, end_text: str, log_file: str) -> int:
    """Check the range and the settings, then run the job over it; the log goes to a file."""
    try:
        start, end = _day(start_text), _day(end_text)
        settings = load_settings()
        load_rules(settings.channel_rules_file)
    except (ValueError, OSError) as exc:
        return _fail("run", str(exc))
    today = dt.datetime.now(zoneinfo.ZoneInfo(settings.reporting_timezone)).date()
    if start > end:
        return _fail("run", f"START {start} is after END {end}")
    if start < settings.first_partition_date:
        return _fail(
            "run",
            f"START {start} is before the first partition, {settings.first_partition_date} "
            f"(the setting first_partition_date in {settings_path()})",
        )
    if end > today:
        return _fail("run", f"END {end} is after today ({today}, {settings.reporting_timezone})")
    log = Path(log_file)
    log.parent.mkdir(parents=True, exist_ok=True)
    sys.stderr.write(f"materializing every asset for {start}..{end} (Dagster's log: {log})\n")
    command = [
        sys.executable, "-m", "dagster", "asset", "materialize", "-m", "pipeline.definitions",
        "--select", "*", "--partition-range", f"{start}...{end}",
    ]  # fmt: skip
    with log.open("w") as handle:
        done = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, check=False)
    _report_checks(log, settings)
    if done.returncode != 0:
        # The lines that say why, without Dagster's traceback around them.
        reasons = [
            line.split(": ", 1)[1]
            for line in log.read_text().splitlines()
            if line.startswith(
                ("dagster._core.definitions.events.Failure: ", "dagster._core.errors.")
            )
        ]
        for reason in dict.fromkeys(reasons):
            sys.stderr.write(f"  {reason}\n")
        sys.stderr.write(f"the run failed: see {log}\n")
        return 1
    return 0


def _report_checks(log: Path, settings) -> None:
    """Print the run's failed checks and send them to the alert sinks.

    The alert sensors watch runs launched from the UI and by the schedule; a run started here
    is not one they see, so its alerts are delivered here, with the same deduplication.
    """
    # Imported here: Dagster is slow to import, and `pushassist attribute` does not need it.
    import dagster as dg

    from pipeline.alerts import alerts_from_run, configured_sinks, deliver

    found = re.search(r" - (\w{8}-\w{4}-\w{4}-\w{4}-\w{12}) - ", log.read_text())
    if not found or "DAGSTER_HOME" not in os.environ:
        return
    with dg.DagsterInstance.get() as instance:
        alerts = alerts_from_run(instance, found.group(1), settings)
        for alert in alerts:
            sys.stderr.write(
                f"  check {alert.check} on {alert.asset} failed ({alert.severity}, "
                f"{alert.days}): see {alert.runbook}\n"
            )
        sent = deliver(alerts, configured_sinks(settings), settings.alert_state_file)
    if alerts:
        sys.stderr.write(f"alerts sent: {sent}\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, with one subcommand per task."""
    parser = argparse.ArgumentParser(
        prog="pushassist",
        description="Measure how push notifications assist conversions.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    attribute = commands.add_parser(
        "attribute",
        help="credit channels for the paths in a paths file (JSON, SPEC 4.3)",
        description=(
            "Credit channels for the paths in a paths file and print "
            '{"credits": {channel: value}, "conversions": {channel: conversions}} as JSON.'
        ),
    )
    attribute.add_argument("paths_file", metavar="PATHS_FILE", help="paths file, or - for stdin")
    run = commands.add_parser(
        "run",
        help="materialize every asset for a range of days, in one run",
        description=(
            "Materialize every asset for START..END (days, YYYY-MM-DD) in one Dagster run, with "
            "the landing root, warehouse and settings the environment names."
        ),
    )
    run.add_argument("start", metavar="START")
    run.add_argument("end", metavar="END")
    run.add_argument("--log", default="data/run.log", help="file for Dagster's run log")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `pushassist` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    if args.command == "attribute":
        return _attribute(args.paths_file)
    if args.command == "run":
        return _run(args.start, args.end, args.log)
    return _fail(args.command, "unknown command")  # pragma: no cover - argparse rejects it


if __name__ == "__main__":
    sys.exit(main())
