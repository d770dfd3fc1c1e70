"""The alerting rules in ``dashboards/rules/``: promtool accepts them, and ``promtool test rules``
shows every alert firing on the series it is about and staying quiet on healthy ones (and while its
``for`` has not elapsed). The input series are named through the registry, like the rules. Each
alert's runbook_url points at a section of docs/dashboards.md that exists, beside the panel that shows
it. Offline; ``tox -e dashboards`` (promtool from Debian's prometheus)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dashboard_queries as dq
import pytest
import yaml

pytest.importorskip("grafana_foundation_sdk", reason="tox -e dashboards runs the dashboard checks")
sys.path.insert(0, str(dq.ROOT / "dashboards"))

from corevital_dashboards import alerts, registry
from corevital_dashboards.registry import label, sc

pytestmark = pytest.mark.dashboards

JOB = "llm-api"
MODELS = ("Qwen/Qwen2.5-0.5B-Instruct", "meta-llama/Llama-3.1-8B-Instruct")
MODEL_LABEL = label(sc.GEN_AI_REQUEST_MODEL)


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is not installed (.ci/run installs it)")
        pytest.skip("promtool is not installed")
    return path


def series(metric_name: str, part: str = "", model: str = MODELS[0], **labels: str) -> str:
    """A promtool input series of a registry metric for one model of the job."""
    metric = registry.metric(metric_name)
    names = {"job": JOB, MODEL_LABEL: model}
    names |= {
        (key if key in ("le", "job") else metric.label(_attribute(key))): value
        for key, value in labels.items()
    }
    return metric.series(part) + "{" + ", ".join(f'{k}="{v}"' for k, v in names.items()) + "}"


def _attribute(name: str) -> str:
    """``flag_name`` -> the attribute constant's value (keyword arguments cannot hold dots)."""
    return {
        "flag_name": sc.COREVITAL_FLAG_NAME,
        "error_type": sc.COREVITAL_ERROR_TYPE,
        "capture_level": sc.COREVITAL_CAPTURE_LEVEL,
    }[name]


def ramp(per_minute: float, minutes: int, start: float = 0) -> str:
    """promtool's expanding notation: ``start+per_minute x minutes``."""
    return f"{start:g}+{per_minute:g}x{minutes}"


@dataclass
class Case:
    """One promtool test: input series and, at one evaluation time, the alerts expected to fire."""

    name: str
    alert: str
    series: dict[str, str]
    eval_time: str
    fires: list[dict[str, str]] = field(default_factory=list)  # the alerts' own labels
    value: str = ""  # what {{ $value | humanizePercentage }} renders to

    def test(self, rule: alerts.Alert) -> dict[str, Any]:
        expected = []
        for labels in self.fires:
            rendered = {
                key: render(text, labels, self.value)
                for key, text in (("summary", rule.summary), ("description", rule.description))
            }
            rendered["runbook_url"] = rule.runbook_url
            expected.append({"exp_labels": labels | {"severity": rule.severity}, "exp_annotations": rendered})
        return {
            "interval": "1m",
            "input_series": [{"series": name, "values": values} for name, values in self.series.items()],
            "alert_rule_test": [
                {"eval_time": self.eval_time, "alertname": self.alert, "exp_alerts": expected}
            ],
        }


def render(template: str, labels: dict[str, str], value: str) -> str:
    """The two template forms the rules use; any other makes this fail (and the test with it)."""
    text = re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels[m.group(1)], template)
    text = text.replace("{{ $value | humanizePercentage }}", value)
    assert "{{" not in text, f"a template this test cannot render: {template}"
    return text


def model(name: str = MODELS[0], **extra: str) -> dict[str, str]:
    return {"job": JOB, MODEL_LABEL: name, **extra}


def cases() -> list[Case]:
    a = {alert.name.removeprefix(alerts.ALERT_PREFIX): alert.name for alert in alerts.alerts()}
    flags, risk = sc.METRIC_COREVITAL_HEALTH_FLAGS, sc.METRIC_COREVITAL_RISK_SCORE
    duration, overhead = sc.METRIC_GEN_AI_CLIENT_OPERATION_DURATION, sc.METRIC_COREVITAL_OVERHEAD_DURATION
    errors = sc.METRIC_COREVITAL_INTERNAL_ERRORS
    nan = series(flags, flag_name=sc.FLAG_NAN_DETECTED)
    inf = series(flags, model=MODELS[1], flag_name=sc.FLAG_INF_DETECTED)
    loops = series(flags, flag_name=sc.FLAG_REPETITION_LOOP)
    sequences = series(risk, "count")
    risky_bucket = series(risk, "bucket", le=registry.metric(risk).bucket_bound(alerts.RISKY_SCORE))
    calls = series(duration, "count")
    healthy_risk = {sequences: ramp(10, 40), risky_bucket: ramp(10, 40)}
    nan_inf, risky, looping = a["NaNOrInfGenerations"], a["RiskySequences"], a["RepetitionLoops"]
    internal, costly, silent = a["InternalErrors"], a["OverheadHigh"], a["NoGenerations"]
    error = series(errors, error_type="RuntimeError")
    spent = series(overhead, "sum", capture_level="hidden")
    total = series(duration, "sum")
    stops = f"{ramp(10, 60)} 600x60"
    return [
        # a model's first NaN ever: a new series with its first count (increase() alone misses it)
        Case("first NaN fires", nan_inf, {nan: "_x3 1x10"}, "4m", [model()]),
        Case("NaN and Inf of two models", nan_inf, {nan: "1x20 2x10", inf: "_x20 1x10"}, "21m",
             [model(), model(MODELS[1])]),
        Case("an old NaN stays quiet", nan_inf, {nan: "1x20"}, "15m"),
        Case("no NaN: quiet", nan_inf, {loops: ramp(1, 20), **healthy_risk}, "15m"),
        Case("every sequence risky fires", risky, {sequences: ramp(10, 40), risky_bucket: "0x40"}, "25m",
             [model()], "100%"),
        Case("risky, for not yet elapsed", risky, {sequences: ramp(10, 40), risky_bucket: "0x40"}, "8m"),
        Case("healthy risk: quiet", risky, healthy_risk, "25m"),
        Case("every sequence loops fires", looping, {loops: ramp(10, 40), sequences: ramp(10, 40)}, "25m",
             [model()], "100%"),
        Case("no loops: quiet", looping, {loops: "3x40", sequences: ramp(10, 40)}, "25m"),
        Case("a new internal error fires", internal, {error: "_x3 1x10"}, "4m",
             [model(**{label(sc.COREVITAL_ERROR_TYPE): "RuntimeError"})]),
        Case("old internal errors stay quiet", internal, {error: "2x30"}, "20m"),
        Case("half the time in CoreVital fires", costly, {spent: ramp(30, 40), total: ramp(60, 40)}, "30m",
             [model()], "50%"),
        Case("cheap CoreVital: quiet", costly, {spent: ramp(1, 40), total: ramp(60, 40)}, "30m"),
        Case("traffic stops fires", silent, {calls: stops}, "90m", [model()]),
        Case("the process goes away fires", silent, {calls: f"{ramp(10, 60)} stale"}, "90m", [model()]),
        Case("steady traffic: quiet", silent, {calls: ramp(10, 120)}, "90m"),
        Case("stopped, for not yet elapsed", silent, {calls: stops}, "77m"),
    ]  # fmt: skip


def test_the_committed_rules_pass_promtool_check() -> None:
    result = subprocess.run(
        [promtool(), "check", "rules", str(dq.RULES)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alerts.alerts())} rules found" in result.stdout


def test_every_alert_fires_and_stays_quiet_under_promtool(tmp_path: Path) -> None:
    rules = {rule.name: rule for rule in alerts.alerts()}
    all_cases = cases()
    for name in rules:
        mine = [c for c in all_cases if c.alert == name]
        assert any(c.fires for c in mine) and any(not c.fires for c in mine), (
            f"{name} needs a firing and a quiet case"
        )
    tests = {"rule_files": [str(dq.RULES)], "evaluation_interval": "1m",
             "tests": [case.test(rules[case.alert]) for case in all_cases]}  # fmt: skip
    test_file = tmp_path / "corevital-alerts.test.yaml"
    test_file.write_text(yaml.safe_dump(tests, sort_keys=False))
    result = subprocess.run(
        [promtool(), "test", "rules", str(test_file)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-6000:]
    assert "SUCCESS" in result.stdout


def test_the_tests_can_fail(tmp_path: Path) -> None:
    """A quiet case asserted to fire makes promtool fail: the harness is not vacuous."""
    rule = next(r for r in alerts.alerts() if r.name.endswith("RiskySequences"))
    wrong = next(c for c in cases() if c.name == "healthy risk: quiet")
    wrong.fires, wrong.value = [model()], "100%"
    test_file = tmp_path / "wrong.test.yaml"
    test_file.write_text(yaml.safe_dump({"rule_files": [str(dq.RULES)], "tests": [wrong.test(rule)]}))
    result = subprocess.run(
        [promtool(), "test", "rules", str(test_file)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0 and "FAILED" in result.stdout + result.stderr


def github_anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation other than - and _ dropped, spaces to -."""
    anchors = set()
    for heading in re.findall(r"^#{1,6} (.+)$", markdown, re.M):
        anchors.add(re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-"))
    return anchors


def test_every_runbook_url_points_at_its_section_beside_the_panel() -> None:
    docs = (dq.ROOT / "docs" / "dashboards.md").read_text(encoding="utf-8")
    anchors = github_anchors(docs)
    titles = {panel["title"] for d in dq.dashboards().values() for panel in dq.panels(d)}
    for rule, committed in zip(alerts.alerts(), dq.rules(), strict=True):
        assert committed["annotations"]["runbook_url"] == rule.runbook_url
        assert rule.runbook_url.startswith(alerts.DOCS_URL + "#")
        assert rule.anchor in anchors, f"docs/dashboards.md has no section for {rule.name}"
        assert rule.panel in titles, f"{rule.name}: no panel titled {rule.panel!r}"
        section = docs.split(f"Alert: {rule.name}", 1)[1].split("\n#", 1)[0]
        assert rule.panel in section, f"the section of {rule.name} does not name its panel"
        assert committed["annotations"]["summary"] and len(committed["annotations"]["description"]) > 100
