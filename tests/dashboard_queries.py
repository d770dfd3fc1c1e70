"""The queries of the committed Grafana dashboards and datasource provisioning, read as plain JSON /
YAML (no Grafana SDK needed), and Grafana's variable interpolation for running them elsewhere."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
JSON_DIR = ROOT / "dashboards" / "json"
DATASOURCES = ROOT / "dashboards" / "provisioning" / "datasources" / "datasources.yaml"
VARIABLE = re.compile(r"\$(?:\{(?P<braced>\w+)(?::(?P<format>\w+))?\}|(?P<plain>\w+))")
LABEL_VALUES = re.compile(r"^label_values\((?:(?P<selector>.+),\s*)?(?P<label>\w+)\)$")


@dataclass(frozen=True)
class Query:
    """One query of a panel, a variable or a datasource link."""

    where: str  # "dashboard / panel title / refId", for messages
    text: str
    datasource: str  # prometheus or tempo


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
                found.append(Query(f"{name} / {panel['title']} / {target.get('refId')}", text, datasource))
    return found


def promql() -> list[Query]:
    return [q for q in panel_queries() if q.datasource == "prometheus"]


def traceql() -> list[Query]:
    """TraceQL searches and metrics queries (the trace panel's bare ``${trace_id}`` is a lookup)."""
    return [q for q in panel_queries() if q.datasource == "tempo" and not VARIABLE.fullmatch(q.text)]


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


def provisioning_queries() -> list[Query]:
    """The trace-to-metrics PromQL of the provisioned trace datasources (``$__tags`` macro inside)."""
    document = yaml.safe_load(DATASOURCES.read_text(encoding="utf-8"))
    found = []
    for datasource in document["datasources"]:
        links = datasource.get("jsonData", {}).get("tracesToMetrics")
        for query in (links or {}).get("queries", []):
            found.append(Query(f"{datasource['name']} / {query['name']}", query["query"], "prometheus"))
    return found


REGEX_SPECIAL = re.compile(r"([\\^$.|?*+()\[\]{}])")


def regex_value(values: Sequence[str]) -> str:
    """A multi-value variable as Grafana writes it into a regex matcher inside a quoted string:
    regex metacharacters escaped (the backslash doubled for the string), several as ``(a|b)``."""
    escaped = [REGEX_SPECIAL.sub(r"\\\\\1", value) for value in values]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


def interpolate(text: str, values: Mapping[str, str]) -> str:
    """Replace ``$name``, ``${name}`` and ``${name:format}`` with ``values`` (macros included)."""

    def replace(match: re.Match[str]) -> str:
        name = match.group("braced") or match.group("plain")
        if name not in values:
            raise KeyError(f"no value for ${name} in {text!r}")
        return values[name]

    return VARIABLE.sub(replace, text)


def used_variables(text: str) -> set[str]:
    return {m.group("braced") or m.group("plain") for m in VARIABLE.finditer(text)}
