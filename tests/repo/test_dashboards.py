"""The Grafana dashboards, offline: the committed JSON (and rules and provisioning) is what the code
builds, loads back through the SDK unchanged, is laid out on the grid, uses only defined variables
and datasource variables, and follows the house rules for PromQL. Names match what the real
OpenTelemetry Prometheus exporter emits. The queries as Grafana substitutes them are checked in
``test_dashboard_interpolation.py``, the alerting rules in ``test_alert_rules.py``. Runs in ``tox -e
dashboards`` (Python >= 3.11 + the SDK)."""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import dashboard_queries as dq
import grafana
import pytest

pytest.importorskip("grafana_foundation_sdk", reason="tox -e dashboards installs grafana-foundation-sdk")
sys.path.insert(0, str(dq.ROOT / "dashboards"))

from corevital_dashboards import health, registry, render
from corevital_dashboards.registry import sc

pytestmark = pytest.mark.dashboards

GRID_COLUMNS = 24
# Grafana's macros and the data-link variables (the clicked value, its row's fields, the time range).
GRAFANA_BUILTINS = {
    "__rate_interval",
    "__interval",
    "__range",
    "__all",
    "__tags",
    "__value",
    "__data",
    "__url_time_range",
}


def require(tool: str) -> str:
    """The path of a command-line tool; CI must have it, a laptop may skip."""
    path = shutil.which(tool)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{tool} is not installed (.ci/run installs it)")
        pytest.skip(f"{tool} is not installed")
    return path


# --- the build -------------------------------------------------------------------------------------


def test_committed_files_are_what_the_build_writes() -> None:
    assert render.stale(render.render_all()) == []


def test_check_flags_a_json_file_the_build_does_not_produce(tmp_path: Path) -> None:
    rendered = render.render_all()
    for path, text in rendered.items():
        if path.parent == render.JSON_DIR:
            (tmp_path / path.name).write_text(text, encoding="utf-8")
    (tmp_path / "hand-made.json").write_text("{}", encoding="utf-8")
    relocated = {
        (tmp_path / p.name if p.parent == render.JSON_DIR else p): text for p, text in rendered.items()
    }
    problems = render.stale(relocated, json_dir=tmp_path)
    assert problems == [f"{tmp_path / 'hand-made.json'}: not produced by the build"]


def test_check_mode_fails_on_a_stale_file(tmp_path: Path) -> None:
    rendered = render.render_all()
    path = next(p for p in rendered if p.parent == render.JSON_DIR)
    edited = {
        p: (text.replace("CoreVital", "Corevital") if p == path else text) for p, text in rendered.items()
    }
    problems = render.stale(edited)
    assert len(problems) == 1 and "CoreVital" in problems[0]


def test_a_metric_renamed_in_the_registry_breaks_the_build(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    renamed_registry = tmp_path / "registry"
    shutil.copytree(dq.ROOT / "semconv" / "registry", renamed_registry)
    metrics_file = renamed_registry / "metrics.yaml"
    text = metrics_file.read_text(encoding="utf-8")
    old = f"metric_name: {sc.METRIC_COREVITAL_RISK_SCORE}\n"
    assert old in text
    metrics_file.write_text(text.replace(old, f"metric_name: {sc.METRIC_COREVITAL_RISK_SCORE}_v2\n"))
    generator = registry._load_module(registry.GENERATOR, "_corevital_semconv_generate")
    renamed = generator.load(dq.ROOT / "semconv" / "manifest.yaml", renamed_registry)
    monkeypatch.setattr(registry, "_registry", lambda: renamed)
    registry.metric.cache_clear()
    try:
        with pytest.raises(registry.RegistryMismatch, match="not in the semantic-convention registry"):
            health.build()
    finally:
        registry.metric.cache_clear()


def test_a_label_the_metric_does_not_have_is_refused() -> None:
    flags = registry.metric(sc.METRIC_COREVITAL_HEALTH_FLAGS)
    with pytest.raises(registry.RegistryMismatch):
        flags.label(sc.COREVITAL_CAPTURE_LEVEL)
    with pytest.raises(registry.RegistryMismatch):
        flags.series("bucket")


# --- names: the real exporter ------------------------------------------------------------------------


def test_prometheus_names_are_what_the_real_exporter_emits() -> None:
    """Every registry metric, recorded through the SDK into opentelemetry-exporter-prometheus: the
    exposition has exactly the series names and labels the dashboards derive."""
    pytest.importorskip("opentelemetry.exporter.prometheus")
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from opentelemetry.sdk.metrics import MeterProvider
    from prometheus_client import CollectorRegistry, generate_latest

    collector = CollectorRegistry()
    reader = PrometheusMetricReader(registry=collector, disable_target_info=True)
    provider = MeterProvider(metric_readers=[reader])
    meter = provider.get_meter("corevital-dashboards-test")
    expected: dict[str, set[str]] = {}
    for metric in registry.metrics():
        attributes = {name: "x" for name in metric.attributes}
        if metric.instrument == "histogram":
            meter.create_histogram(
                metric.name, unit=metric.unit, explicit_bucket_boundaries_advisory=list(metric.buckets or ())
            ).record(0.5, attributes)
            series = [metric.series(part) for part in ("bucket", "sum", "count")]
        else:
            assert metric.instrument == "counter", metric
            meter.create_counter(metric.name, unit=metric.unit).add(1, attributes)
            series = [metric.series()]
        for name in series:
            expected[name] = {registry.label(a) for a in metric.attributes}
    exposition = generate_latest(collector).decode()
    provider.shutdown()

    emitted: dict[str, set[str]] = {}
    for line in exposition.splitlines():
        match = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)\{(.*)\} ", line)
        if match:
            labels = set(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="', match.group(2)))
            emitted[match.group(1)] = labels - {
                "le",
                "otel_scope_name",
                "otel_scope_version",
                "otel_scope_schema_url",
            }
    assert emitted == expected
    # The two names the OpenTelemetry -> Prometheus rules make surprising, pinned here.
    assert "corevital_step_entropy_bit_bucket" in emitted  # unit `bit` is kept as a suffix
    assert "corevital_risk_score_bucket" in emitted  # unit `1` adds nothing to a histogram
    assert f'le="{registry.metric(sc.METRIC_COREVITAL_RISK_SCORE).bucket_bound(0.5)}"' in exposition


def test_dashboards_query_only_series_the_registry_defines() -> None:
    known = set()
    for metric in registry.metrics():
        parts = ("bucket", "sum", "count") if metric.instrument == "histogram" else ("",)
        known |= {metric.series(part) for part in parts}
    used = set()
    rules = [dq.Query(rule["alert"], rule["expr"], "prometheus") for rule in dq.rules()]
    for query in [*dq.promql(), *dq.variable_queries(), *dq.provisioning_queries(), *rules]:
        used |= set(re.findall(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{", query.text))
    # ALERTS is Prometheus's own series of firing alerts (the alert annotation reads it)
    assert used and used - {"ALERTS"} <= known, used - known


# --- the JSON ---------------------------------------------------------------------------------------


@pytest.fixture(params=sorted(p.name for p in dq.JSON_DIR.glob("*.json")))
def dashboard_file(request: pytest.FixtureRequest) -> Path:
    return dq.JSON_DIR / request.param


def test_loads_back_through_the_sdk_and_re_encodes_identically(dashboard_file: Path) -> None:
    from grafana_foundation_sdk.cog.plugins import register_default_plugins
    from grafana_foundation_sdk.models.dashboard import Dashboard

    register_default_plugins()
    text = dashboard_file.read_text(encoding="utf-8")
    assert render.encode(Dashboard.from_json(json.loads(text))) == text


def test_three_dashboards_with_the_agreed_uids() -> None:
    uids = {d["uid"] for d in dq.dashboards().values()}
    assert uids == {"corevital-model-health", "corevital-generation-performance", "corevital-traces"}
    for dashboard in dq.dashboards().values():
        assert "GENERATED by dashboards/build.py" in dashboard["description"]


def test_panel_ids_are_unique(dashboard_file: Path) -> None:
    ids = [p["id"] for p in dq.panels(json.loads(dashboard_file.read_text()))]
    assert len(ids) == len(set(ids)) and all(isinstance(i, int) for i in ids)


def test_panels_fit_the_grid_without_overlapping(dashboard_file: Path) -> None:
    cells: dict[tuple[int, int], str] = {}
    for panel in dq.panels(json.loads(dashboard_file.read_text())):
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["y"] >= 0 and grid["w"] > 0 and grid["h"] > 0, panel["title"]
        assert grid["x"] + grid["w"] <= GRID_COLUMNS, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]


def strings(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for value in node.values() for s in strings(value)]
    if isinstance(node, list):
        return [s for value in node for s in strings(value)]
    return []


def test_every_variable_used_is_defined(dashboard_file: Path) -> None:
    dashboard = json.loads(dashboard_file.read_text())
    defined = {v["name"] for v in dq.variables(dashboard)}
    used = set()
    texts = strings(dashboard.get("panels", [])) + strings(dq.variables(dashboard))
    texts += strings(dashboard.get("annotations", {}))
    for text in texts:
        used |= grafana.used_variables(text)
    assert {"prometheus", "tempo", "job", "model"} <= defined
    assert used - GRAFANA_BUILTINS <= defined, used - GRAFANA_BUILTINS - defined


def test_datasources_are_variables_never_uids(dashboard_file: Path) -> None:
    dashboard = json.loads(dashboard_file.read_text())
    variables = {v["name"]: v for v in dq.variables(dashboard)}
    assert (
        variables["prometheus"]["type"] == "datasource" and variables["prometheus"]["query"] == "prometheus"
    )
    assert variables["tempo"]["type"] == "datasource" and variables["tempo"]["query"] == "tempo"

    def refs(node: Any) -> list[dict[str, Any]]:
        if isinstance(node, dict):
            found = [node["datasource"]] if isinstance(node.get("datasource"), dict) else []
            return found + [r for key, value in node.items() if key != "datasource" for r in refs(value)]
        if isinstance(node, list):
            return [r for value in node for r in refs(value)]
        return []

    for ref in refs(dashboard):
        assert ref["uid"] == "${" + ref["type"] + "}", ref


def test_job_and_model_variables_are_chained(dashboard_file: Path) -> None:
    variables = {v["name"]: v for v in dq.variables(json.loads(dashboard_file.read_text()))}
    assert "job" in dq.LABEL_VALUES.match(variables["job"]["query"]).group("label")
    model = dq.LABEL_VALUES.match(variables["model"]["query"])
    assert model.group("label") == registry.label(sc.GEN_AI_REQUEST_MODEL)
    assert 'job=~"$job"' in model.group("selector")


def test_every_panel_has_a_unit_thresholds_and_a_no_traffic_display(dashboard_file: Path) -> None:
    for panel in dq.panels(json.loads(dashboard_file.read_text())):
        if panel["type"] == "row":
            continue
        defaults = panel["fieldConfig"]["defaults"]
        assert defaults.get("unit"), panel["title"]
        assert defaults["thresholds"]["steps"], panel["title"]
        assert defaults.get("noValue"), panel["title"]
        special = [m for m in defaults["mappings"] if m["type"] == "special"]
        assert special and special[0]["options"]["result"]["text"] == "no traffic", panel["title"]
        assert panel.get("description"), panel["title"]


def guarded_denominators(text: str) -> list[str]:
    """The parenthesised group after every ``/`` of a PromQL expression."""
    groups = []
    for match in re.finditer(r"/ (?:on\(\) group_left\(\) )?\(", text):
        depth, start = 0, match.end() - 1
        for index in range(start, len(text)):
            depth += {"(": 1, ")": -1}.get(text[index], 0)
            if depth == 0:
                groups.append(text[start : index + 1])
                break
    return groups


def test_prometheus_practice() -> None:
    """Rates over $__rate_interval (instant table queries over $__range), quantiles over summed
    buckets by le, every division guarded by ``(denominator > 0)``."""
    for query in dq.promql():
        text = query.text
        for window in re.findall(r"\[([^\]]+)\]", text):
            assert window == ("$__range" if query.instant else "$__rate_interval"), query
        for inner in re.findall(r"histogram_quantile\([^,]+, (\w+ by \([^)]*\))", text):
            assert inner.startswith("sum by (le"), query
        assert text.count(" / ") == len(guarded_denominators(text)), query
        for denominator in guarded_denominators(text):
            assert denominator.endswith(" > 0)"), (query, denominator)


def test_the_threshold_variable_holds_risk_bucket_bounds() -> None:
    """``le="$threshold"`` matches a bucket only if every value is a bound as exporters write it;
    whole numbers are written 1 and 1.0 depending on the path, so none may be offered."""
    risk = registry.metric(sc.METRIC_COREVITAL_RISK_SCORE)
    written = {risk.bucket_bound(b) for b in risk.buckets or () if not float(b).is_integer()}
    for dashboard in dq.dashboards().values():
        for variable in dq.variables(dashboard):
            if variable["name"] == "threshold":
                values = variable["query"].split(",")
                assert values and set(values) <= written, values
                assert variable["current"]["value"] in values
    with pytest.raises(registry.RegistryMismatch, match="whole-number"):
        risk.bucket_bound(1.0)


def test_provisioning_file_is_the_intended_document_after_grafanas_expansion() -> None:
    """Grafana expands environment variables in provisioning files; the file escapes every ``$`` so
    that what Grafana ends up with is exactly what the code means (``$__tags`` kept)."""
    from corevital_dashboards import provisioning

    assert dq.provisioning_document() == provisioning.datasources()
    queries = [q.text for q in dq.provisioning_queries()]
    assert queries and all("{$__tags}" in q for q in queries)


def test_exemplars_are_requested_on_latency_and_risk_panels() -> None:
    exemplar_titles = set()
    for dashboard in dq.dashboards().values():
        for panel in dq.panels(dashboard):
            if any(t.get("exemplar") for t in panel.get("targets", [])):
                exemplar_titles.add(panel["title"])
    assert any("Risk score p50" in t for t in exemplar_titles)
    assert any("Operation duration p50" in t for t in exemplar_titles)
    for dashboard in dq.dashboards().values():
        for panel in dq.panels(dashboard):
            if panel["title"] in exemplar_titles:  # tail sampling drops most healthy traces: say so
                assert "trace not found" in panel["description"], panel["title"]


def test_no_hand_typed_names_in_traceql() -> None:
    """Every span or event attribute a TraceQL query names (dashboards and docs) is a registry name."""
    names = registry_names()
    for query in [*dq.traceql(), *doc_traceql()]:
        for attribute in re.findall(r"(?:span|event)\.([a-z_.]+[a-z_])", query.text):
            assert attribute in names, (query, attribute)


# --- docs -----------------------------------------------------------------------------------------


DOCS = [dq.ROOT / "docs" / "traces.md", dq.ROOT / "docs" / "dashboards.md"]


def doc_traceql() -> list[dq.Query]:
    """The ```traceql blocks of the docs."""
    found = []
    for path in DOCS:
        for block in re.findall(r"```traceql\n(.*?)\n```", path.read_text(encoding="utf-8"), re.S):
            found.append(dq.Query(path.name, block.strip(), "tempo"))
    return found


def registry_names() -> set[str]:
    return {value for key, value in vars(sc).items() if key.isupper() and isinstance(value, str)}


def test_docs_name_only_registry_attributes() -> None:
    """Every `corevital.…` / `gen_ai.…` name the docs quote exists in the registry (a renamed
    attribute breaks this test, not the user's search)."""
    names = registry_names()
    unknown = []
    for path in DOCS:
        for code in re.findall(r"`([^`\n]+)`", path.read_text(encoding="utf-8")):
            for name in re.findall(r"(?<![\w.])((?:corevital|gen_ai)\.[a-z0-9_.]*[a-z0-9_])(?![\w*])", code):
                if name not in names and not any(n.startswith(name + ".") for n in names):
                    unknown.append(f"{path.name}: {name} in `{code}`")
    assert unknown == []
    assert len(doc_traceql()) >= 10


def test_every_panel_is_explained_in_docs_dashboards() -> None:
    text = (dq.ROOT / "docs" / "dashboards.md").read_text(encoding="utf-8")
    missing = []
    for dashboard in dq.dashboards().values():
        assert dashboard["title"] in text
        for panel in dq.panels(dashboard):
            title = panel["title"]
            if panel["type"] == "row":
                continue
            expected = title.removeprefix("Flag: ") if title.startswith("Flag: ") else f"| {title} |"
            if expected not in text:
                missing.append(title)
    assert missing == []
