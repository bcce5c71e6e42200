"""The alert sinks: the JSON-lines log, a webhook on 127.0.0.1, Slack's configuration, and the
sensor reading a run's failed checks from the Dagster instance."""

import contextlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dagster as dg
import pytest

from pipeline.alerts import (
    SLACK_CHANNEL_ENV,
    SLACK_TOKEN_ENV,
    WEBHOOK_ENV,
    Alert,
    JsonlSink,
    SlackSink,
    WebhookSink,
    build_alert_sensors,
    configured_sinks,
    deliver,
)
from pipeline.settings import parse_settings


@contextlib.contextmanager
def webhook_server():
    """A webhook on 127.0.0.1 at a free port, in a thread; yields its URL and the JSON bodies
    it received, and stops when the block ends."""
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - the name http.server calls
            length = int(self.headers["Content-Length"])
            received.append(json.loads(self.rfile.read(length)))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):  # keep test output quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/alerts", received
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def alert(check="quarantine_rate", days="2024-01-05 to 2024-01-05", severity="ERROR"):
    return Alert(
        asset="staging/events",
        check=check,
        severity=severity,
        days=days,
        description="Share of rows quarantined.",
        runbook="docs/runbook.md#quarantine-rate",
        run_id="run-1",
        metadata={"rate": 0.2, "offending_rows": "| file |"},
    )


def test_jsonl_sink_writes_one_line_per_check_and_days_and_never_repeats(tmp_path):
    log, state = tmp_path / "alerts.jsonl", tmp_path / "state.json"
    sinks = [JsonlSink(log)]
    first = deliver([alert(), alert(days="2024-01-06 to 2024-01-06")], sinks, state)
    second = deliver([alert(), alert(days="2024-01-06 to 2024-01-06")], sinks, state)
    assert first == {"log": 2}
    assert second == {"log": 0}
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [line["key"] for line in lines] == [
        "staging/events:quarantine_rate:2024-01-05 to 2024-01-05",
        "staging/events:quarantine_rate:2024-01-06 to 2024-01-06",
    ]
    assert lines[0]["runbook"] == "docs/runbook.md#quarantine-rate"


def test_webhook_receives_the_alert_json(tmp_path):
    with webhook_server() as (url, received):
        sent = deliver([alert()], [WebhookSink(url)], tmp_path / "state.json")
    assert sent == {"webhook": 1}
    assert received == [alert().to_json()]


def test_a_failing_sink_is_retried_without_repeating_the_others(tmp_path):
    state = tmp_path / "state.json"
    log = JsonlSink(tmp_path / "alerts.jsonl")
    # Nothing listens on this port once the server has stopped.
    with webhook_server() as (url, _):
        pass
    with pytest.raises(RuntimeError, match="1 alert deliveries failed"):
        deliver([alert()], [log, WebhookSink(url)], state)
    with webhook_server() as (url, received):
        assert deliver([alert()], [log, WebhookSink(url)], state) == {"log": 0, "webhook": 1}
    assert len(received) == 1
    assert len(log.path.read_text().splitlines()) == 1


def test_sinks_come_from_environment_variables(tmp_path):
    settings = parse_settings({"warehouse_path": str(tmp_path / "w" / "pushassist.duckdb")})
    (log,) = configured_sinks(settings, {})
    assert log.path == tmp_path / "w" / "alerts.jsonl"
    assert settings.alert_state_file == tmp_path / "w" / "alert_state.json"
    env = {SLACK_TOKEN_ENV: "xoxb-test", SLACK_CHANNEL_ENV: "#oncall", WEBHOOK_ENV: "http://x"}
    _, slack, webhook = configured_sinks(settings, env)
    assert isinstance(slack, SlackSink) and slack.channel == "#oncall"
    assert isinstance(webhook, WebhookSink) and webhook.url == "http://x"


def test_slack_sink_posts_through_dagster_slack(monkeypatch):
    posted = []

    class Client:
        def chat_postMessage(self, **kwargs):  # noqa: N802 - Slack's name
            posted.append(kwargs)

    monkeypatch.setattr("dagster_slack.SlackResource.get_client", lambda self: Client())
    SlackSink("xoxb-test", "#oncall").send(alert())
    assert posted[0]["channel"] == "#oncall"
    assert posted[0]["text"].startswith("[ERROR] check quarantine_rate on staging/events")
    assert "Runbook: docs/runbook.md#quarantine-rate" in posted[0]["text"]


def test_sensor_reads_failed_checks_of_a_run_from_the_instance(tmp_path, monkeypatch):
    monkeypatch.setenv(WEBHOOK_ENV, "")
    settings = parse_settings({"warehouse_path": str(tmp_path / "pushassist.duckdb")})

    @dg.asset(check_specs=[dg.AssetCheckSpec("quarantine_rate", asset="thing")])
    def thing():
        yield dg.MaterializeResult()
        yield dg.AssetCheckResult(
            check_name="quarantine_rate",
            passed=False,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"days": "2024-01-05 to 2024-01-05", "rate": 0.02},
        )

    success_sensor, _ = build_alert_sensors(settings)
    with dg.instance_for_test() as instance:
        result = dg.materialize([thing], instance=instance)
        (event,) = instance.all_logs(result.run_id, of_type=dg.DagsterEventType.RUN_SUCCESS)
        for _ in range(2):
            context = dg.build_run_status_sensor_context(
                sensor_name=success_sensor.name,
                dagster_event=event.dagster_event,
                dagster_instance=instance,
                dagster_run=result.dagster_run,
            )
            success_sensor(context)
    (line,) = settings.alert_log_file.read_text().splitlines()
    logged = json.loads(line)
    assert (logged["check"], logged["severity"], logged["days"]) == (
        "quarantine_rate",
        "WARN",
        "2024-01-05 to 2024-01-05",
    )
    assert logged["runbook"] == "docs/runbook.md#quarantine-rate"


def test_every_check_has_a_runbook_section():
    import re

    from conftest import REPO_ROOT

    from pipeline.alerts import DEFAULT_SECTION, RUNBOOK_SECTIONS
    from pipeline.definitions import build_definitions

    runbook = (REPO_ROOT / "docs" / "runbook.md").read_text()
    anchors = set(re.findall(r'<a id="([a-z0-9-]+)"></a>', runbook))
    assert set(RUNBOOK_SECTIONS.values()) | {DEFAULT_SECTION} <= anchors
    graph = build_definitions(parse_settings({}), "pushassist.yaml").resolve_asset_graph()
    checks = {key.name for key in graph.asset_check_keys}
    # The checks on-call meets most have their own section; any other gets the general one.
    named = {
        "push_opened_sessions_not_push",
        "push_mediums_unclassified",
        "campaigns_with_opens_without_sessions",
        "row_conservation",
        "quarantine_rate",
        "credits_sum_to_one",
        "value_reconciles",
    }
    assert named <= checks & set(RUNBOOK_SECTIONS)
