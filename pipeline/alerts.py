"""Alerts: failed asset checks sent to the sinks on-call reads (SPEC 6).

The Dagster UI always shows every check. Besides it, after each run the alert sensors read the
run's ASSET_CHECK_EVALUATION events from the Dagster instance and send each failed check once to:
- a local alert log (JSON lines; `alerts.log_file`, default `alerts.jsonl` beside the
  warehouse), always;
- Slack, through dagster-slack, when PUSHASSIST_SLACK_TOKEN and PUSHASSIST_SLACK_CHANNEL are set;
- a webhook (HTTP POST of the alert's JSON), when PUSHASSIST_ALERT_WEBHOOK_URL is set.

An alert is sent once per sink, check and days (the range of partitions the check covered): a
small state file (`alerts.state_file`) remembers what each sink has received, so a re-run of
the same days or a second evaluation of the sensor does not repeat it, and a sink that failed
is retried on the next run without repeating the alert to the others. Every alert links the
runbook section (docs/runbook.md) that says what it means and what to do. Environment variables
are read when the sensor runs, never at import.
"""

from __future__ import annotations

import json
import os
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import dagster as dg
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from pipeline.settings import Settings

SLACK_TOKEN_ENV = "PUSHASSIST_SLACK_TOKEN"
SLACK_CHANNEL_ENV = "PUSHASSIST_SLACK_CHANNEL"
WEBHOOK_ENV = "PUSHASSIST_ALERT_WEBHOOK_URL"
WEBHOOK_TIMEOUT_SECONDS = 10

# The runbook section (an anchor of docs/runbook.md) of each check; others go to the general
# section.
RUNBOOK_SECTIONS = {
    "row_conservation": "row-conservation",
    "quarantine_rate": "quarantine-rate",
    "no_duplicate_event_ids": "duplicate-event-ids",
    "canonical_schema": "duplicate-event-ids",
    "partition_not_empty": "partition-not-empty",
    "no_future_events": "no-future-events",
    "files_without_events": "files-without-events",
    "shared_devices": "shared-devices",
    "no_oversized_persons": "shared-devices",
    "anonymous_event_share": "anonymous-event-share",
    "every_event_has_a_person": "anonymous-event-share",
    "unique_touch_ids": "touches",
    "one_touch_per_message": "touches",
    "unique_conversions": "touches",
    "non_negative_value": "touches",
    "credits_sum_to_one": "credits",
    "value_reconciles": "credits",
    "every_conversion_attributed_once": "credits",
    "assisted_within_total": "marts",
    "totals_reconcile_with_core": "marts",
    "rates_within_0_and_1": "marts",
    "great_expectations_suite": "marts",
    "credits_reconcile_with_conversions": "marts",
    "paths_reconcile_with_conversions": "marts",
    "configured_window_matches_headline": "marts",
    "correction_matches_core": "correction-matches-core",
    "push_opened_sessions_not_push": "push-opened-sessions-not-push",
    "push_mediums_unclassified": "push-mediums-unclassified",
    "campaigns_with_opens_without_sessions": "campaigns-with-opens-without-sessions",
}
DEFAULT_SECTION = "any-other-check"


@dataclass(frozen=True)
class Alert:
    """One failed check of one run, with what on-call needs to act on it."""

    asset: str
    check: str
    severity: str
    days: str
    description: str
    runbook: str
    run_id: str
    metadata: dict = field(default_factory=dict)

    @property
    def key(self) -> str:
        """What deduplicates alerts: the check and the days it covered."""
        return f"{self.asset}:{self.check}:{self.days}"

    def to_json(self) -> dict:
        return {"key": self.key, **asdict(self)}

    def text(self) -> str:
        """The alert as a short message (Slack)."""
        figures = ", ".join(
            f"{name}={value}"
            for name, value in self.metadata.items()
            if name != "offending_rows" and not isinstance(value, dict | list)
        )
        return (
            f"[{self.severity}] check {self.check} on {self.asset} failed for {self.days}: "
            f"{self.description}\n{figures}\nRunbook: {self.runbook}"
        )


def _plain(value: dg.MetadataValue) -> object:
    raw = getattr(value, "value", value)
    return raw if isinstance(raw, str | int | float | bool) or raw is None else str(raw)


def runbook_link(settings: Settings, check: str) -> str:
    return f"{settings.alerts.runbook_url}#{RUNBOOK_SECTIONS.get(check, DEFAULT_SECTION)}"


def alerts_from_run(instance: dg.DagsterInstance, run_id: str, settings: Settings) -> list[Alert]:
    """The failed checks of a run, read from its ASSET_CHECK_EVALUATION events."""
    run = instance.get_run_by_id(run_id)
    tags = run.tags if run else {}
    run_days = " to ".join(
        tags[t]
        for t in (ASSET_PARTITION_RANGE_START_TAG, ASSET_PARTITION_RANGE_END_TAG)
        if t in tags
    )
    alerts = []
    entries = instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    for entry in entries:
        evaluation = entry.dagster_event.event_specific_data
        if evaluation.passed:
            continue
        metadata = {name: _plain(value) for name, value in evaluation.metadata.items()}
        alerts.append(
            Alert(
                asset=evaluation.asset_key.to_user_string(),
                check=evaluation.check_name,
                severity=evaluation.severity.value,
                # Checks name the days they covered; a run's range tags are the fallback.
                days=str(metadata.get("days") or run_days or run_id),
                description=evaluation.description or "",
                runbook=runbook_link(settings, evaluation.check_name),
                run_id=run_id,
                metadata=metadata,
            )
        )
    return alerts


class Sink(Protocol):
    name: str

    def send(self, alert: Alert) -> None: ...


@dataclass
class JsonlSink:
    """Appends one JSON line per alert to a local file."""

    path: Path
    name: str = "log"

    def send(self, alert: Alert) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as out:
            out.write(json.dumps(alert.to_json(), default=str, sort_keys=True) + "\n")


@dataclass
class WebhookSink:
    """POSTs the alert's JSON to a URL."""

    url: str
    name: str = "webhook"

    def send(self, alert: Alert) -> None:
        body = json.dumps(alert.to_json(), default=str).encode()
        request = urllib.request.Request(
            self.url, data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT_SECONDS) as response:
            response.read()


@dataclass
class SlackSink:
    """Posts the alert's text to a Slack channel through dagster-slack's resource."""

    token: str
    channel: str
    name: str = "slack"

    def send(self, alert: Alert) -> None:
        from dagster_slack import SlackResource

        client = SlackResource(token=self.token).get_client()
        client.chat_postMessage(channel=self.channel, text=alert.text())


def configured_sinks(settings: Settings, environ: Mapping[str, str] | None = None) -> list[Sink]:
    """The alert log always; Slack and the webhook when their environment variables are set."""
    env = os.environ if environ is None else environ
    sinks: list[Sink] = [JsonlSink(settings.alert_log_file)]
    if env.get(SLACK_TOKEN_ENV) and env.get(SLACK_CHANNEL_ENV):
        sinks.append(SlackSink(env[SLACK_TOKEN_ENV], env[SLACK_CHANNEL_ENV]))
    if env.get(WEBHOOK_ENV):
        sinks.append(WebhookSink(env[WEBHOOK_ENV]))
    return sinks


class AlertState:
    """Which sink has received which alert key, in a small JSON file."""

    def __init__(self, path: Path):
        self.path = path
        self.sent: dict[str, list[str]] = (
            json.loads(path.read_text()) if path.exists() and path.read_text().strip() else {}
        )

    def has(self, sink: str, key: str) -> bool:
        return key in self.sent.get(sink, [])

    def add(self, sink: str, key: str) -> None:
        self.sent.setdefault(sink, []).append(key)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Write then rename: a crash never leaves a half-written state file.
        partial = self.path.with_suffix(".tmp")
        partial.write_text(json.dumps(self.sent, indent=1, sort_keys=True))
        partial.replace(self.path)


def deliver(alerts: Iterable[Alert], sinks: Sequence[Sink], state_file: Path) -> dict[str, int]:
    """Send each alert to each sink that has not received it yet; return counts per sink.

    A sink that fails does not stop the others; the first error is raised at the end, so the
    sensor shows it, and that sink gets the alert on a later run.
    """
    state = AlertState(state_file)
    sent = {sink.name: 0 for sink in sinks}
    errors: list[Exception] = []
    for alert in alerts:
        for sink in sinks:
            if state.has(sink.name, alert.key):
                continue
            try:
                sink.send(alert)
            except Exception as exc:  # noqa: BLE001 - any sink failure is reported below
                errors.append(exc)
                continue
            state.add(sink.name, alert.key)
            sent[sink.name] += 1
    if errors:
        raise RuntimeError(f"{len(errors)} alert deliveries failed; first: {errors[0]!r}")
    return sent


def deliver_run_alerts(
    instance: dg.DagsterInstance,
    run_id: str,
    settings: Settings,
    environ: Mapping[str, str] | None = None,
) -> dict[str, int]:
    """Send the failed checks of a run to the configured sinks (what the sensors do)."""
    alerts = alerts_from_run(instance, run_id, settings)
    return deliver(alerts, configured_sinks(settings, environ), settings.alert_state_file)


def build_alert_sensors(settings: Settings) -> list[dg.SensorDefinition]:
    """Sensors that send failed checks after every run, whether the run succeeded or failed
    (a failed blocking check fails its run)."""
    description = (
        "After each run, sends its failed asset checks to the alert log, and to Slack or a "
        "webhook when configured, once per check and days, with a link to the runbook."
    )

    @dg.run_status_sensor(
        run_status=dg.DagsterRunStatus.SUCCESS,
        name="alert_failed_checks",
        description=description,
        default_status=dg.DefaultSensorStatus.RUNNING,
    )
    def alert_failed_checks(context: dg.RunStatusSensorContext):
        sent = deliver_run_alerts(context.instance, context.dagster_run.run_id, settings)
        context.log.info(f"alerts sent per sink: {sent}")

    @dg.run_failure_sensor(
        name="alert_failed_checks_of_failed_runs",
        description=description,
        default_status=dg.DefaultSensorStatus.RUNNING,
    )
    def alert_failed_checks_of_failed_runs(context: dg.RunFailureSensorContext):
        sent = deliver_run_alerts(context.instance, context.dagster_run.run_id, settings)
        context.log.info(f"alerts sent per sink: {sent}")

    return [alert_failed_checks, alert_failed_checks_of_failed_runs]
