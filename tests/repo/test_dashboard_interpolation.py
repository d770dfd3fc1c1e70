"""Every query of the dashboards as Grafana sends it (``grafana.py``: its variable formats, the
Prometheus and Tempo data sources' own escaping, data links, provisioning files), rendered for real
model names with ``.``, ``/``, ``-`` and ``:``, one model, several and "All":

- PromQL parses (promtool), and each ``=~`` matcher on the model or job label, decoded as Prometheus
  decodes the string, matches exactly the selected names (with and without Grafana's
  ``prometheusSpecialCharsInLabelValues`` toggle);
- TraceQL parses with Grafana's grammar (``@grafana/lezer-traceql``), every string literal follows
  Tempo's lexer rules, and the model and job regexes match exactly the selection;
- data links carry the selection and the clicked value; the span-to-metrics links get the span's
  model through ``$__tags``.

Offline; ``tox -e dashboards`` (promtool from Debian's prometheus, node and npm).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dashboard_queries as dq
import grafana
import pytest
import traceql_strings

# Runs with the other dashboard checks in tox -e dashboards (the test envs skip it).
pytest.importorskip("grafana_foundation_sdk", reason="tox -e dashboards runs the dashboard checks")
sys.path.insert(0, str(dq.ROOT / "dashboards"))

from corevital_dashboards import traceql
from corevital_dashboards.registry import label, sc

pytestmark = pytest.mark.dashboards

LEZER_TRACEQL = ("@grafana/lezer-traceql@1.0.0", "@lezer/lr@1.4.13")
MODEL_LABEL = label(sc.GEN_AI_REQUEST_MODEL)
JOBS = ("corevital-e2e", "shop/api.v2")  # a job label may be "namespace/service.name" on the OTLP path
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"


def require(tool: str) -> str:
    """The path of a command-line tool; CI must have it, a laptop may skip."""
    path = shutil.which(tool)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{tool} is not installed (.ci/run installs it)")
        pytest.skip(f"{tool} is not installed")
    return path


@dataclass(frozen=True)
class Selection:
    """What a user picked in the model and job dropdowns."""

    name: str
    models: grafana.Value
    jobs: grafana.Value = grafana.ALL_VALUE

    def selected(self, choices: tuple[str, ...], value: grafana.Value) -> set[str]:
        if value == grafana.ALL_VALUE:
            return set(choices)
        return set(value if isinstance(value, list) else [value])


SELECTIONS = [
    *(Selection(f"model {m}", [m], [JOBS[0]]) for m in dq.MODEL_NAMES),
    Selection("two models", list(dq.MODEL_NAMES[:2]), list(JOBS)),
    Selection("All", grafana.ALL_VALUE),
]


def variables_for(dashboard: dict[str, Any], selection: Selection) -> dict[str, grafana.Variable]:
    chosen = {"model": selection.models, "job": selection.jobs, "prometheus": "Prometheus", "tempo": "Tempo"}
    found = dq.grafana_variables(dashboard, chosen, {"model": dq.MODEL_NAMES, "job": JOBS})
    for name, value in {"__rate_interval": "2m", "__range": "3600s", "__interval": "30s"}.items():
        found[name] = grafana.scoped(name, value)
    return found


def rendered(kind: str, special_chars: bool = False) -> Iterator[tuple[Selection, dq.Query, str]]:
    """Every query of ``kind`` (promql, traceql, link) of every dashboard, for every selection."""
    for file_name, dashboard in dq.dashboards().items():
        queries = {
            "promql": [*dq.promql(), *dq.variable_queries()],
            "traceql": dq.traceql(),
            "link": dq.data_links(),
        }[kind]
        for selection in SELECTIONS:
            values = variables_for(dashboard, selection)
            for query in queries:
                if not query.where.startswith(file_name):
                    continue
                if kind == "promql":
                    text = query.text
                    match = dq.LABEL_VALUES.match(text)
                    if match:  # a variable query: Grafana sends the selector to the label-values API
                        text = match.group("selector")
                    yield selection, query, grafana.prometheus(text, values, special_chars)
                elif kind == "traceql":
                    yield selection, query, grafana.tempo(query.text, values)
                else:
                    clicked = {
                        "__value.raw": grafana.scoped("__value.raw", dq.MODEL_NAMES[0]),
                        "__data.fields.traceIdHidden": grafana.scoped(
                            "__data.fields.traceIdHidden", TRACE_ID
                        ),
                        "__url_time_range": grafana.macro("__url_time_range", "from=now-1h&to=now"),
                    }
                    yield selection, query, grafana.data_link(query.text, values | clicked)


# --- the substitute itself, against Grafana's own examples ------------------------------------------


def test_formats_give_grafanas_documented_results() -> None:
    """The expected values of Grafana's format registry tests (grafana/scenes formatRegistry.test.ts)."""
    server = grafana.Variable("server", ["test.", "test2"], multi=True)
    one = grafana.Variable("server", "test.")

    def fmt(variable: grafana.Variable, format_id: str) -> str:
        return grafana.interpolate(f"${{server:{format_id}}}", {"server": variable})

    assert fmt(one, "regex") == "test\\."
    assert fmt(server, "regex") == "(test\\.|test2)"
    assert fmt(grafana.Variable("server", ["test", "test2"]), "pipe") == "test|test2"
    assert fmt(grafana.Variable("server", ["test", "test2"]), "csv") == "test,test2"
    assert fmt(grafana.Variable("server", ["AA", "BB", "C.*"]), "glob") == "{AA,BB,C.*}"
    assert grafana.interpolate("$server", {"server": grafana.Variable("server", ["AA", "BB"])}) == "{AA,BB}"
    assert fmt(grafana.Variable("server", ["test", "test2"]), "text") == "test + test2"
    assert fmt(grafana.Variable("server", ["test", "test2"]), "distributed") == "test,server=test2"
    assert (
        fmt(grafana.Variable("server", ["foo()bar BAZ", "test2"]), "percentencode")
        == "%7Bfoo%28%29bar%20BAZ%2Ctest2%7D"
    )
    assert fmt(grafana.Variable("server", ["test", "test'2"]), "singlequote") == "'test','test\\'2'"
    assert fmt(grafana.Variable("server", ["test", 'test"2']), "doublequote") == '"test","test\\"2"'
    assert fmt(grafana.Variable("server", "helloAZ%="), "queryparam") == "var-server=helloAZ%25%3D"
    # "All" with a custom all value is inserted as is, whatever the format
    everything = grafana.Variable(
        "server", grafana.ALL_VALUE, ["a.b", "c"], multi=True, include_all=True, all_value=".*"
    )
    assert fmt(everything, "regex") == ".*" and fmt(everything, "text") == "All"
    assert fmt(everything, "queryparam") == "var-server=$__all"
    # ... and without one, as every option
    assert (
        fmt(grafana.Variable("server", grafana.ALL_VALUE, ["a.b", "c"], include_all=True), "regex")
        == "(a\\.b|c)"
    )


def test_prometheus_escaping_is_the_data_sources() -> None:
    """interpolateQueryExpr: regex-escaped for a double-quoted string when multi or All-able."""
    multi = grafana.Variable("model", ["Qwen/Qwen2.5"], multi=True, include_all=True, all_value=".*")
    assert grafana.prometheus('m=~"$model"', {"model": multi}) == 'm=~"Qwen/Qwen2\\\\.5"'
    two = grafana.Variable("model", ["a.b", "c|d"], multi=True)
    assert grafana.prometheus('m=~"$model"', {"model": two}) == 'm=~"(a\\\\.b|c\\\\|d)"'
    single = grafana.Variable("threshold", "0.5")
    assert grafana.prometheus('le="$threshold"', {"threshold": single}) == 'le="0.5"'
    # the explicit regex format is not the data source's: one backslash, an invalid PromQL escape
    assert grafana.prometheus('m=~"${model:regex}"', {"model": multi}) == 'm=~"Qwen\\/Qwen2\\.5"'


def test_provisioning_expansion_is_grafanas() -> None:
    env = {"HOST": "prom", "__tags": "", "X": "1"}
    assert grafana.provisioning_value("http://$HOST:9090", env) == "http://prom:9090"
    assert grafana.provisioning_value("http://${HOST}:9090", env) == "http://prom:9090"
    assert grafana.provisioning_value("$__env{HOST}", env) == "prom"
    assert grafana.provisioning_value("x{$__tags}", env) == "x{}"  # what happened to the old file
    assert grafana.provisioning_value("x{$$__tags}", env) == "x{$__tags}"
    assert grafana.provisioning_value("cost: $$5 and $X", env) == "cost: $5 and 1"
    assert grafana.provisioning_value("a ${} b $", env) == "a  b $"


# --- PromQL --------------------------------------------------------------------------------------------


def go_unquote(literal: str) -> str:
    """A PromQL double-quoted string's value; only ``\\\\`` and ``\\"`` may be escaped (promtool
    checks the rest of Go's rules)."""
    assert literal[0] == literal[-1] == '"', literal
    out, body, index = [], literal[1:-1], 0
    while index < len(body):
        if body[index] == "\\":
            index += 1
            assert body[index] in '\\"', f"unexpected escape in {literal}"
        out.append(body[index])
        index += 1
    return "".join(out)


MATCHER = re.compile(r'\b(?P<label>[a-zA-Z_]\w*)=~(?P<literal>"(?:[^"\\]|\\.)*")')


@pytest.mark.parametrize(
    "special_chars", [False, True], ids=["classic", "prometheusSpecialCharsInLabelValues"]
)
def test_promql_as_sent_parses_and_selects_exactly_the_chosen_models(
    tmp_path: Path, special_chars: bool
) -> None:
    promtool = require("promtool")
    expressions: list[str] = []
    for selection, query, text in rendered("promql", special_chars):
        expressions.append(text)
        for match in MATCHER.finditer(text):
            label = match.group("label")
            if label not in (MODEL_LABEL, "job"):
                continue
            choices, value = (
                (dq.MODEL_NAMES, selection.models) if label == MODEL_LABEL else (JOBS, selection.jobs)
            )
            pattern = re.compile(go_unquote(match.group("literal")))
            matched = {c for c in choices if pattern.fullmatch(c)}
            assert matched == selection.selected(choices, value), (selection.name, query.where, text)
    rules = [{"record": f"corevital:query_{i}", "expr": e} for i, e in enumerate(expressions)]
    rules_file = tmp_path / "queries.rules.yaml"
    rules_file.write_text(json.dumps({"groups": [{"name": "dashboards", "rules": rules}]}))
    result = subprocess.run(
        [promtool, "check", "rules", str(rules_file)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout
    assert len(expressions) >= len(SELECTIONS) * 50


def test_span_to_metrics_links_keep_the_spans_model(tmp_path: Path) -> None:
    promtool = require("promtool")
    tags = dq.trace_tags()
    expressions = []
    for model in dq.MODEL_NAMES:
        for query in dq.provisioning_queries():
            text = grafana.tags_macro(query.text, tags, {sc.GEN_AI_REQUEST_MODEL: model, "service.name": "x"})
            assert f'{MODEL_LABEL}="{model}"' in text, text
            expressions.append(text)
    rules = [{"record": f"corevital:link_{i}", "expr": e} for i, e in enumerate(expressions)]
    rules_file = tmp_path / "links.rules.yaml"
    rules_file.write_text(json.dumps({"groups": [{"name": "links", "rules": rules}]}))
    result = subprocess.run(
        [promtool, "check", "rules", str(rules_file)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- TraceQL -------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def lezer_traceql(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """node_modules with Grafana's TraceQL grammar (npm; cached under COREVITAL_NODE_CACHE)."""
    require("node")
    npm = require("npm")
    cache = os.environ.get("COREVITAL_NODE_CACHE")
    prefix = Path(cache) if cache else tmp_path_factory.mktemp("node")
    modules = prefix / "node_modules"
    if not (modules / "@grafana" / "lezer-traceql" / "package.json").exists():
        subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--no-save", "--prefix", str(prefix), *LEZER_TRACEQL],
            check=True,
            timeout=300,
            capture_output=True,
        )
    return modules


def parse_traceql(modules: Path, texts: list[str]) -> list[dict[str, Any]]:
    result = subprocess.run(
        [shutil.which("node") or "node", str(dq.ROOT / "tests" / "repo" / "traceql_parse.cjs"), str(modules)],
        input=json.dumps(texts),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    parsed: list[dict[str, Any]] = json.loads(result.stdout)
    return parsed


def test_the_parser_and_the_string_rules_can_fail(lezer_traceql: Path) -> None:
    broken, grafana_escape = parse_traceql(lezer_traceql, ["{ span.broken = }", '{ span.a =~ "Qwen2\\.5" }'])
    assert broken["errors"] and grafana_escape["errors"]
    assert traceql_strings.problems('"Qwen2\\.5"')


DOC_FILES = [dq.ROOT / "docs" / "traces.md", dq.ROOT / "docs" / "dashboards.md"]


def doc_traceql() -> list[str]:
    return [
        block.strip()
        for path in DOC_FILES
        for block in re.findall(r"```traceql\n(.*?)\n```", path.read_text(encoding="utf-8"), re.S)
    ]


def test_traceql_as_sent_parses_and_selects_exactly_the_chosen_models(lezer_traceql: Path) -> None:
    cases = list(rendered("traceql"))
    docs = doc_traceql()
    parsed = parse_traceql(lezer_traceql, [text for _, _, text in cases] + docs)
    failures = []
    for (selection, query, text), result in zip(cases, parsed, strict=False):
        if result["errors"]:
            failures.append(f"{selection.name} / {query.where}: does not parse: {text}")
        for literal in result["strings"]:
            failures += [f"{selection.name} / {query.where}: {p}" for p in traceql_strings.problems(literal)]
        for field, choices, value in (
            (traceql.span(sc.GEN_AI_REQUEST_MODEL), dq.MODEL_NAMES, selection.models),
            (traceql.SERVICE_NAME, JOBS, selection.jobs),
        ):
            literal = re.search(re.escape(field) + r" =~ (`[^`]*`)", text)
            assert literal, (query.where, text)
            pattern = re.compile(traceql_strings.value(literal.group(1)))
            assert {c for c in choices if pattern.fullmatch(c)} == selection.selected(choices, value), text
    for text, result in zip(docs, parsed[len(cases) :], strict=True):
        if result["errors"]:
            failures.append(f"docs: does not parse: {text}")
        for literal in result["strings"]:
            failures += [f"docs: {p}" for p in traceql_strings.problems(literal)]
    assert failures == []
    assert len(cases) >= len(SELECTIONS) * 10 and len(docs) >= 10


# --- data links ----------------------------------------------------------------------------------------


def test_data_links_carry_the_selection_and_the_clicked_value() -> None:
    links = list(rendered("link"))
    with_links = {q.where.split(" / ")[0] for _, q, _ in links}
    assert {"corevital-model-health.json", "corevital-traces.json"} <= with_links
    for selection, query, url in links:
        parsed = urllib.parse.urlsplit(url)
        assert parsed.path.startswith("/d/corevital-"), url
        params = urllib.parse.parse_qs(parsed.query, keep_blank_values=True)
        assert params["from"] == ["now-1h"] and params["to"] == ["now"], query.where
        if "var-trace_id" in params:  # open the clicked generation's trace
            assert params["var-trace_id"] == [TRACE_ID]
            expected = [grafana.ALL_VALUE] if selection.models == grafana.ALL_VALUE else selection.models
            assert params["var-model"] == expected, url
        else:  # filter the dashboard to the clicked model
            assert params["var-model"] == [dq.MODEL_NAMES[0]], url
        expected_jobs = [grafana.ALL_VALUE] if selection.jobs == grafana.ALL_VALUE else selection.jobs
        assert params["var-job"] == expected_jobs, url
