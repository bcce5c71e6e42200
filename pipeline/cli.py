"""The `pushassist` command line.

`pushassist attribute PATHS_FILE` runs the attribution engine on a paths file (SPEC 4.3), without
the pipeline, and writes credits per channel as JSON to stdout. PATHS_FILE may be `-` for stdin.
A file it cannot run gives a one-line error on stderr and exit status 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import duckdb

from pipeline.attribution import attribute_paths


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
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `pushassist` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    if args.command == "attribute":
        return _attribute(args.paths_file)
    return _fail(args.command, "unknown command")  # pragma: no cover - argparse rejects it


if __name__ == "__main__":
    sys.exit(main())
