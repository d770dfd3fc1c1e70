"""The queries of the committed Grafana dashboards, alerting rules and datasource provisioning, read as
plain JSON / YAML (no Grafana SDK needed), and the dashboard variables as Grafana builds them from
the JSON (see ``grafana.py`` for what Grafana then does with them)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grafana
import yaml

ROOT = Path(__file__).resolve().parents[2]
JSON_DIR = ROOT / "dashboards" / "json"
DATASOURCES = ROOT / "dashboards" / "provisioning" / "datasources" / "datasources.yaml"
RULES = ROOT / "dashboards" / "rules" / "corevital-alerts.yaml"
LABEL_VALUES = re.compile(r"^label_values\((?:(?P<selector>.+),\s*)?(?P<label>\w+)\)$")
# Real model names: dots, slashes, dashes and a colon (an Ollama-style tag).
MODEL_NAMES = (
    "Qwen/Qwen2.5-0.5B-Instruct",
    "meta-llama/Llama-3.1-8B-Instruct",
    "qwen2.5:0.5b-instruct-q4_K_M",
)


@dataclass(frozen=True)
class Query:
    """One query of a panel, a variable, an annotation or a datasource link."""

    where: str  # "dashboard / panel title / refId", for messages
    text: str
    datasource: str  # prometheus or tempo
    instant: bool = False


def dashboards() -> dict[str, dict[str, Any]]:
    """Committed dashboards by file name."""
    return {
        path.name: json.loads(path.read_text(encoding="utf-8")) for path in sorted(JSON_DIR.glob("*.json"))
    }


def panels(dashboard: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, rows included, and the panels inside collapsed rows."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def panel_queries() -> list[Query]:
    """Every target of every panel of every dashboard."""
    found = []
    for name, dashboard in dashboards().items():
        for panel in panels(dashboard):
            for target in panel.get("targets", []):
                datasource = (target.get("datasource") or panel.get("datasource") or {}).get("type", "")
                text = target.get("expr") if datasource == "prometheus" else target.get("query")
                where = f"{name} / {panel['title']} / {target.get('refId')}"
                found.append(Query(where, text, datasource, bool(target.get("instant"))))
    return found


def annotation_queries() -> list[Query]:
    """The PromQL of the dashboards' annotations (the built-in Grafana annotation has none)."""
    found = []
    for name, dashboard in dashboards().items():
        for annotation in dashboard.get("annotations", {}).get("list", []):
            if annotation.get("expr"):
                found.append(
                    Query(f"{name} / annotation {annotation['name']}", annotation["expr"], "prometheus")
                )
    return found


def promql() -> list[Query]:
    """Panel and annotation PromQL."""
    return [q for q in panel_queries() if q.datasource == "prometheus"] + annotation_queries()


def traceql() -> list[Query]:
    """TraceQL searches and metrics queries (the trace panel's bare ``${trace_id}`` is a lookup)."""
    return [
        q
        for q in panel_queries()
        if q.datasource == "tempo" and not grafana.VARIABLE.fullmatch(q.text.strip())
    ]


def variables(dashboard: Mapping[str, Any]) -> list[dict[str, Any]]:
    return list(dashboard.get("templating", {}).get("list", []))


def variable_queries() -> list[Query]:
    """The ``label_values(...)`` queries of the dashboards' query variables, in dashboard order."""
    found = []
    for name, dashboard in dashboards().items():
        for variable in variables(dashboard):
            if variable["type"] == "query":
                found.append(Query(f"{name} / ${variable['name']}", variable["query"], "prometheus"))
    return found


def provisioning_document() -> dict[str, Any]:
    """``datasources.yaml`` as Grafana reads it: every string expanded the way provisioning does."""
    raw = yaml.safe_load(DATASOURCES.read_text(encoding="utf-8"))
    expanded: dict[str, Any] = grafana.provisioning_document(raw, {})
    return expanded


def provisioning_queries() -> list[Query]:
    """The trace-to-metrics PromQL of the provisioned trace datasources (``$__tags`` macro inside),
    after Grafana's environment-variable expansion of the file."""
    found = []
    for datasource in provisioning_document()["datasources"]:
        links = datasource.get("jsonData", {}).get("tracesToMetrics")
        for query in (links or {}).get("queries", []):
            found.append(Query(f"{datasource['name']} / {query['name']}", query["query"], "prometheus"))
    return found


def trace_tags() -> list[dict[str, str]]:
    """The span-attribute -> label mapping of the trace-to-metrics links (the same on every datasource)."""
    for datasource in provisioning_document()["datasources"]:
        links = datasource.get("jsonData", {}).get("tracesToMetrics")
        if links:
            return list(links["tags"])
    raise AssertionError("no tracesToMetrics link is provisioned")


def rules() -> list[dict[str, Any]]:
    """The committed alerting rules."""
    document = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [rule for group in document["groups"] for rule in group["rules"]]


def data_links() -> list[Query]:
    """The URL of every data link of every panel (field defaults and overrides)."""
    found = []
    for name, dashboard in dashboards().items():
        for panel in panels(dashboard):
            config = panel.get("fieldConfig", {})
            links = list(config.get("defaults", {}).get("links", []))
            for override in config.get("overrides", []):
                for prop in override.get("properties", []):
                    if prop.get("id") == "links":
                        links += prop["value"]
            for link in links:
                found.append(Query(f"{name} / {panel['title']} / link {link['title']}", link["url"], "link"))
    return found


def grafana_variables(
    dashboard: Mapping[str, Any], selected: Mapping[str, grafana.Value], options: Mapping[str, Sequence[str]]
) -> dict[str, grafana.Variable]:
    """The dashboard's variables as Grafana holds them once ``selected`` is chosen: multi-value,
    "All" and the custom all value come from the dashboard JSON; ``options`` are what the variable
    queries returned (a custom variable's options are its own list)."""
    found = {}
    for variable in variables(dashboard):
        name = variable["name"]
        if variable["type"] == "custom":
            own = [v.split(" : ")[-1].strip() for v in re.findall(r"(?:\\,|[^,])+", variable["query"])]
            choices: Sequence[str] = own
        else:
            choices = options.get(name, ())
        current = selected.get(name, variable.get("current", {}).get("value", ""))
        found[name] = grafana.Variable(
            name,
            current,
            choices,
            multi=bool(variable.get("multi")),
            include_all=bool(variable.get("includeAll")),
            all_value=variable.get("allValue") or None,
        )
    return found
