"""Live proof on real servers, all on loopback (``tox -e e2e``).

One instrumented application (``tests/live/e2e_app.py`` under ``opentelemetry-instrument``: the real
SmolLM2 on a healthy batch and a looping prompt with ``stop_on=repetition_loop``, a tiny Llama with a
NaN, a tiny Llama that raises) exposes the OpenTelemetry Prometheus exporter and sends its spans over
OTLP/HTTP. Then:

- a real Prometheus server (Debian's ``prometheus``, 1 s scrape and rule-evaluation interval,
  temporary data dir, the committed alerting rules loaded) scrapes it, and **every** PromQL
  expression of every dashboard (panels, annotations), the variable queries and the
  trace-to-metrics links must return data through Prometheus's HTTP API, each substituted the way
  Grafana does (``grafana.py``) for the models the app reports, whose names have ``.``, ``/``, ``-``
  and ``:``; a query for one selected model must return that model's series only;
- every alerting rule evaluates without error on the app's data, and the NaN/Inf and internal-error
  alerts fire for the models that produced them (``/api/v1/alerts``; neither has a ``for``);
- a real OTLP trace server (Arize Phoenix, in its own virtual environment, offline) must hand every
  span back through its REST API with every GenAI and ``corevital.*`` attribute and event attribute
  equal to what the SDK exported, type included (arrays stay arrays, ints ints, floats floats).

Every server is started by the test, bound to 127.0.0.1 on a free port, stopped by pid, and waited
for with timeouts. Nothing asserts on wall-clock durations.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# The dashboards' queries and Grafana's variable formats live with the dashboard checks.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "repo"))

import dashboard_queries as dq
import e2e_app
import grafana
from e2e_servers import (
    Lines,
    LiveRun,
    Server,
    finite,
    free_port,
    has_data,
    http_json,
    phoenix_executable,
    same_typed,
    scraped_after,
    start,
    wait_until,
)

from opentelemetry.instrumentation.corevital import semconv as sc

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.real_model,
    pytest.mark.slow,
    pytest.mark.skipif(not os.environ.get("COREVITAL_E2E"), reason="starts live servers: tox -e e2e"),
]

ROOT = Path(__file__).resolve().parents[2]
APP = Path(__file__).resolve().with_name("e2e_app.py")
JOB = "corevital-e2e"
SERVICE = "corevital-e2e"
# Attribute names the test compares: the registry's namespaces (taken from its constants).
NAMESPACES = {name.split(".", 1)[0] + "." for name in (sc.GEN_AI_REQUEST_MODEL, sc.COREVITAL_RISK_SCORE)}
TELEMETRY_PREFIXES = (*sorted(NAMESPACES), sc.ERROR_TYPE)
MODEL_LABEL = sc.GEN_AI_REQUEST_MODEL.replace(".", "_")
ERROR_TYPE_LABEL = sc.COREVITAL_ERROR_TYPE.replace(".", "_")
APP_ROUND_TIMEOUT = 900  # seconds for one round of generations on a slow 2-core machine


@pytest.fixture(scope="module")
def phoenix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A running Phoenix server; yields its base URL (OTLP/HTTP at /v1/traces)."""
    executable = phoenix_executable()
    workdir = tmp_path_factory.mktemp("phoenix")
    port, grpc_port = free_port(), free_port()
    env = {
        **os.environ,
        "PHOENIX_HOST": "127.0.0.1",
        "PHOENIX_PORT": str(port),
        "PHOENIX_GRPC_PORT": str(grpc_port),
        "PHOENIX_WORKING_DIR": str(workdir),
        "PHOENIX_TELEMETRY_ENABLED": "false",
        "PHOENIX_DB_LOGGING_LEVEL": "warning",
        "PHOENIX_AGENTS_DISABLE_WEB_ACCESS": "true",
        "PHOENIX_AGENTS_DISABLE_BASH": "true",
        "PHOENIX_AGENTS_DISABLE_GITHUB": "true",
    }
    server = start("phoenix", [str(executable), "serve"], workdir / "phoenix.log", env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: urllib.request.urlopen(f"{url}/healthz", timeout=5).status == 200,
            180,
            f"Phoenix at {url}\n{server.tail()}",
        )
        yield url
    finally:
        server.stop()


# --- the instrumented app and Prometheus ---------------------------------------------------------------


@pytest.fixture(scope="module")
def live_run(phoenix: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveRun]:
    prometheus_binary = shutil.which("prometheus")
    if prometheus_binary is None:
        pytest.fail("prometheus is not installed (apt-get install prometheus; .ci/run does)")
    workdir = tmp_path_factory.mktemp("live")
    metrics_port, prometheus_port = free_port(), free_port()
    spans_file = workdir / "spans.jsonl"
    profiles = workdir / "profiles"
    profiles.mkdir()
    (profiles / "llama.yaml").write_text("name: llama\nearly_warning: true\n")
    app_env = {
        **os.environ,
        "OTEL_SERVICE_NAME": SERVICE,
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{phoenix}/v1/traces",
        "OTEL_METRICS_EXPORTER": "prometheus",
        "OTEL_EXPORTER_PROMETHEUS_HOST": "127.0.0.1",
        "OTEL_EXPORTER_PROMETHEUS_PORT": str(metrics_port),
        "OTEL_LOGS_EXPORTER": "none",
        # The maximum configuration users can switch on: attention capture, content capture, stop_on.
        "OTEL_INSTRUMENTATION_COREVITAL_CAPTURE": "attention",
        "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "true",
        "OTEL_INSTRUMENTATION_COREVITAL_STOP_ON": "repetition_loop",
        # early warnings on (off in the shipped profiles), so the early-warning panel has data
        "OTEL_INSTRUMENTATION_COREVITAL_PROFILES_DIR": str(profiles),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
    }
    instrument = Path(sys.executable).parent / "opentelemetry-instrument"
    rounds = 2
    app_log = workdir / "app.log"
    app_log_handle = app_log.open("w")
    app = subprocess.Popen(
        [str(instrument), sys.executable, str(APP), "--spans", str(spans_file),
         "--rounds", str(rounds)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=app_log_handle, env=app_env, text=True,
    )  # fmt: skip
    app_log_handle.close()
    app_server = Server("app", app, app_log)
    config = workdir / "prometheus.yml"
    config.write_text(
        json.dumps(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(dq.RULES)],
                "scrape_configs": [
                    {"job_name": JOB, "static_configs": [{"targets": [f"127.0.0.1:{metrics_port}"]}]}
                ],
            }
        )
    )
    prometheus = start(
        "prometheus",
        [prometheus_binary, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{prometheus_port}", "--log.level=warn"],
        workdir / "prometheus.log",
    )  # fmt: skip
    url = f"http://127.0.0.1:{prometheus_port}"
    try:
        wait_until(
            lambda: urllib.request.urlopen(f"{url}/-/ready", timeout=5).status == 200,
            60,
            f"Prometheus\n{prometheus.tail()}",
        )
        lines = Lines(app.stdout)
        started = time.time()
        for number in range(1, rounds + 1):
            lines.wait_for(f"round {number} done", APP_ROUND_TIMEOUT, app_server.tail)
            finished = time.time()
            # Two scrapes after the round: the counters' new values are in Prometheus.
            wait_until(
                lambda moment=finished: scraped_after(url, JOB, moment + 1), 60, "a scrape after the round"
            )
            if number < rounds:
                assert app.stdin is not None
                app.stdin.write("next\n")
                app.stdin.flush()
        yield LiveRun(url, phoenix, spans_file, started, rounds)
    finally:
        if app.stdin is not None:
            app.stdin.close()
        app_server.stop()
        prometheus.stop()


# --- metrics: every dashboard query answered -----------------------------------------------------------


def label_values(run: LiveRun, query: dq.Query, variables: dict[str, grafana.Variable]) -> list[str]:
    """What Grafana does for a ``label_values(selector, label)`` variable."""
    match = dq.LABEL_VALUES.match(query.text)
    assert match, query
    selector = grafana.prometheus(match.group("selector"), variables)
    now = time.time()
    return list(
        run.prom(
            f"label/{match.group('label')}/values",
            **{"match[]": [selector], "start": str(run.started - 60), "end": str(now)},
        )
    )


APP_MODELS = {e2e_app.SMOLLM2_NAME, e2e_app.NAN_MODEL_NAME, e2e_app.FAILING_MODEL_NAME}


def resolve_variables(run: LiveRun, dashboard: dict[str, Any], window: str) -> dict[str, grafana.Variable]:
    """The dashboard's variables as Grafana resolves them, "All" selected: job first, then the
    models of the selected jobs, each query substituted like the Prometheus data source does."""
    options: dict[str, list[str]] = {}
    chosen: dict[str, grafana.Value] = {"job": grafana.ALL_VALUE, "model": grafana.ALL_VALUE}
    variables = dq.grafana_variables(dashboard, chosen, options)
    for variable in dq.variables(dashboard):
        if variable["type"] != "query":
            continue
        options[variable["name"]] = sorted(
            label_values(run, dq.Query(variable["name"], variable["query"], ""), variables)
        )
        variables = dq.grafana_variables(dashboard, chosen, options)
    for name, value in {"__rate_interval": window, "__range": window, "__interval": "15s"}.items():
        variables[name] = grafana.scoped(name, value)
    return variables


def test_every_dashboard_query_returns_data_from_a_real_prometheus(live_run: LiveRun) -> None:
    window = f"{int(time.time() - live_run.started) + 10}s"  # both rounds inside every rate window
    checked = set()
    empty, leaked = [], []
    answered: dict[str, int] = {}  # one-model selections: how many queries returned data
    for file_name, dashboard in dq.dashboards().items():
        variables = resolve_variables(live_run, dashboard, window)
        assert JOB in variables["job"].options, variables["job"].options
        models = set(variables["model"].options)
        assert models == APP_MODELS, models  # the dotted names arrive as they were sent
        selections: list[grafana.Value] = [grafana.ALL_VALUE, sorted(models), *([m] for m in sorted(models))]
        queries = [q for q in dq.promql() if q.where.startswith(file_name)]
        for selected in selections:
            variables["model"] = dq.grafana_variables(
                dashboard, {"model": selected}, {"model": sorted(models)}
            )["model"]
            for query in queries:
                expr = grafana.prometheus(query.text, variables)
                result = live_run.prom("query", query=expr, time=str(time.time()))
                checked.add(query.where)
                if isinstance(selected, list) and len(selected) == 1:
                    # one model selected: whatever comes back is that model's
                    answered[selected[0]] = answered.get(selected[0], 0) + has_data(result)
                    leaked += [
                        f"{query.where}: {s['metric'][MODEL_LABEL]} for {selected[0]}"
                        for s in result["result"]
                        if MODEL_LABEL in s["metric"] and s["metric"][MODEL_LABEL] != selected[0]
                    ]
                elif not has_data(result):
                    empty.append(f"{query.where} ({selected}): {expr} -> {result['result']}")
    # the span-to-metrics links, with $__tags for each model's span
    links = {q.text: q for q in dq.provisioning_queries()}.values()  # the same links on Tempo and Jaeger
    for model in sorted(APP_MODELS - {e2e_app.FAILING_MODEL_NAME}):  # a failed call has no risk or flags
        for query in links:
            expr = grafana.tags_macro(query.text, dq.trace_tags(), {sc.GEN_AI_REQUEST_MODEL: model})
            result = live_run.prom("query", query=expr, time=str(time.time()))
            if not has_data(result):
                empty.append(f"{query.where} ({model}): {expr} -> {result['result']}")
    assert empty == [], "queries without data:\n" + "\n".join(empty)
    assert leaked == [], "a one-model selection returned other models:\n" + "\n".join(leaked)
    assert set(answered) == APP_MODELS and all(answered.values()), answered
    variable_count = len(dq.variable_queries())
    print(  # the closing note of the issue quotes these counts
        f"\n{len(checked)} dashboard PromQL queries (panels and annotations) x {2 + len(APP_MODELS)} model "
        f"selections, {len(links)} trace-to-metrics queries x {len(APP_MODELS) - 1} models and "
        f"{variable_count} variable queries answered by Prometheus (window {window}); "
        f"models: {sorted(APP_MODELS)}"
    )


# --- alerting rules: loaded, evaluated, firing ---------------------------------------------------------


def test_every_alerting_rule_evaluates_and_the_nan_and_internal_error_alerts_fire(live_run: LiveRun) -> None:
    committed = {rule["alert"] for rule in dq.rules()}

    def evaluated() -> list[dict[str, Any]] | None:
        groups = live_run.prom("rules", type="alert")["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        return rules if rules and all(r.get("lastEvaluation", "").startswith("20") for r in rules) else None

    rules = wait_until(evaluated, 60, "Prometheus to evaluate the rules")
    assert {rule["name"] for rule in rules} == committed
    for rule in rules:
        assert rule["health"] == "ok" and not rule.get("lastError"), rule
    firing = wait_until(
        lambda: [a for a in live_run.prom("alerts")["alerts"] if a["state"] == "firing"] or None,
        60,
        "a firing alert",
    )
    by_name: dict[str, set[str]] = {}
    for alert in firing:
        by_name.setdefault(alert["labels"]["alertname"], set()).add(alert["labels"][MODEL_LABEL])
    nan_alert = next(name for name in committed if name.endswith("NaNOrInfGenerations"))
    errors_alert = next(name for name in committed if name.endswith("InternalErrors"))
    assert by_name.get(nan_alert) == {e2e_app.NAN_MODEL_NAME}, firing
    assert by_name.get(errors_alert) == {e2e_app.NAN_MODEL_NAME}, firing
    error_types = {
        a["labels"].get(ERROR_TYPE_LABEL) for a in firing if a["labels"]["alertname"] == errors_alert
    }
    assert error_types == {e2e_app.SpanProcessorFailure.__qualname__}, firing
    print(f"\n{len(rules)} alerting rules evaluated without error; firing: {sorted(by_name.items())}")


# --- traces: every attribute arrives with its type ---------------------------------------------------------


def sent_spans(run: LiveRun) -> list[dict[str, Any]]:
    return [json.loads(line) for line in run.spans_file.read_text().splitlines() if line]


def phoenix_spans(run: LiveRun) -> dict[str, dict[str, Any]]:
    spans: dict[str, dict[str, Any]] = {}
    cursor = None
    while True:
        params = {"limit": "1000", **({"cursor": cursor} if cursor else {})}
        body = http_json(f"{run.phoenix}/v1/projects/default/spans?{urllib.parse.urlencode(params)}")
        for span in body["data"]:
            spans[span["context"]["span_id"]] = span
        cursor = body.get("next_cursor")
        if not cursor:
            return spans


def telemetry(attributes: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in attributes.items() if k.startswith(TELEMETRY_PREFIXES)}


def test_spans_reach_a_real_trace_server_with_every_attribute_and_its_type(live_run: LiveRun) -> None:
    sent = sent_spans(live_run)
    assert len(sent) == 4 * live_run.rounds, [s["name"] for s in sent]
    received = wait_until(
        lambda: (spans := phoenix_spans(live_run)) and all(s["span_id"] in spans for s in sent) and spans,
        60,
        "Phoenix to store every span",
    )
    mismatches, non_finite = [], []
    checked_attributes = checked_events = 0
    for span in sent:
        got = received[span["span_id"]]
        for key, value in telemetry(span["attributes"]).items():
            checked_attributes += 1
            if not same_typed(value, got["attributes"].get(key)):
                problem = f"{span['name']} {key}: sent {value!r}, got {got['attributes'].get(key)!r}"
                (mismatches if finite(value) else non_finite).append(problem)
        remaining = [(e["name"], e["attributes"]) for e in got["events"]]
        for event in span["events"]:
            checked_events += 1
            sent_attributes = telemetry(event["attributes"])
            # the received event of that name that differs from the sent one in the fewest attributes
            matches = [
                (index, [k for k, v in sent_attributes.items() if not same_typed(v, attributes.get(k))])
                for index, (name, attributes) in enumerate(remaining)
                if name == event["name"]
            ]
            if not matches:
                mismatches.append(f"{span['name']}: event {event['name']} missing")
                continue
            index, differing = min(matches, key=lambda match: len(match[1]))
            remaining.pop(index)
            for key in differing:
                problem = f"{span['name']} event {event['name']} {key}: sent {sent_attributes[key]!r}"
                (mismatches if finite(sent_attributes[key]) else non_finite).append(problem)
    assert mismatches == [], "\n".join(mismatches)
    print(
        f"\n{len(sent)} spans, {checked_attributes} attributes, {checked_events} events back from Phoenix; "
        f"{len(non_finite)} values with NaN/Inf did not come back equal"
    )
    # JSON has no NaN: a NaN in an exported array comes back as null. The span writer must not
    # export NaN/Inf at all (see test_exported_spans_are_within_the_sdk_limits_and_finite).
    kinds = {type(v).__name__ for s in sent for v in telemetry(s["attributes"]).values()}
    assert {"str", "int", "float", "bool", "list"} <= kinds
    assert non_finite == [], "NaN/Inf did not survive the trip:\n" + "\n".join(non_finite)


def test_exported_spans_are_within_the_sdk_limits_and_finite(live_run: LiveRun) -> None:
    """At the maximum configuration (attention, content, stop_on, a batch): nothing dropped by the
    SDK's default limits (128 attributes, 128 events) and no NaN/Inf in any attribute value, which
    JSON-based backends and APIs cannot carry."""
    for span in sent_spans(live_run):
        assert span["dropped_attributes"] == 0 and span["dropped_events"] == 0, span["name"]
        assert span["non_finite"] == [], f"{span['name']}: NaN/Inf exported in {span['non_finite']}"
