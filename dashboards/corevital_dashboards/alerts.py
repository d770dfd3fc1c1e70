"""Prometheus alerting rules for CoreVital, built like the dashboards: every series and label from the
semantic-convention registry, written to ``dashboards/rules/corevital-alerts.yaml`` by
``dashboards/build.py``.

Each alert is grouped by ``job`` and model, carries a summary, a description that says what to do,
and a ``runbook_url`` into ``docs/dashboards.md`` (the section beside the panel that shows it).
Counters whose series only exist once something happened (health flags, internal errors) are read
with :func:`counted_recently`, which also sees the first count of a new series (``increase()`` needs
two samples and would miss it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from . import promql
from .registry import label, metric, sc

DOCS_URL = "https://github.com/corevital/opentelemetry-instrumentation-corevital/blob/main/docs/dashboards.md"
GROUP = "corevital"
ALERT_PREFIX = "CoreVital"
# Rates in the rules look back this far: several exports of the SDK's default 60 s interval.
WINDOW = "10m"
# How long a counter's new series counts as news (see counted_recently).
NEW_SERIES_WINDOW = "5m"
# "Silence": traffic in this window before the quiet one, none in the quiet one.
SILENCE_BEFORE = "1h"
SILENCE_QUIET = "15m"

# Thresholds (the dashboards colour their panels red from the same values).
RISKY_SCORE = 0.5  # the dashboards' default risk threshold; a histogram bucket boundary
RISKY_SHARE = 0.2
REPETITION_SHARE = 0.05
OVERHEAD_SHARE = 0.2

SEVERITY_CRITICAL = "critical"
SEVERITY_WARNING = "warning"


@dataclass(frozen=True)
class Alert:
    """One alerting rule and where a user reads about it."""

    name: str
    expr: str
    severity: str
    summary: str
    description: str
    for_: str | None = None  # None: fires at the first evaluation that finds it true
    panel: str = ""  # the title of the dashboard panel that shows what the alert watches

    @property
    def anchor(self) -> str:
        """The docs/dashboards.md anchor of the alert's section (GitHub's heading slug)."""
        return f"alert-{self.name.lower()}"

    @property
    def runbook_url(self) -> str:
        return f"{DOCS_URL}#{self.anchor}"

    def rule(self) -> dict[str, Any]:
        rule: dict[str, Any] = {"alert": self.name, "expr": self.expr}
        if self.for_:
            rule["for"] = self.for_
        rule["labels"] = {"severity": self.severity}
        rule["annotations"] = {
            "summary": self.summary,
            "description": self.description,
            "runbook_url": self.runbook_url,
        }
        return rule


def _group(*attributes: str) -> str:
    return ", ".join([promql.JOB_LABEL, *(label(a) for a in attributes)])


def counted_recently(
    counter_name: str, *extra: str, by: Sequence[str], window: str = NEW_SERIES_WINDOW
) -> str:
    """``sum by (job, …) (new or increase) > 0``: the counter counted something in the last ``window``.

    ``increase()`` needs two samples, so a series that appears with its first count (a model's
    first NaN ever) would be missed; a series that did not exist ``window`` ago is taken as is.
    After a Prometheus outage longer than ``window`` an old series looks new once.
    """
    counter = metric(counter_name)
    series = promql.selector(counter, "", *extra, filtered=False)
    labels = _group(sc.GEN_AI_REQUEST_MODEL, *by)
    return (
        f"sum by ({labels}) (\n  ({series} unless {series} offset {window})\n  or\n"
        f"  increase({series}[{window}])\n) > 0"
    )


def _share_of_sequences(counter_name: str, *extra: str) -> str:
    counter, risk = metric(counter_name), metric(sc.METRIC_COREVITAL_RISK_SCORE)
    by = [sc.GEN_AI_REQUEST_MODEL]
    numerator = promql.summed_rate(counter, "", by, *extra, window=WINDOW, filtered=False, job=True)
    denominator = promql.summed_rate(risk, "count", by, window=WINDOW, filtered=False, job=True)
    return promql.guarded_ratio(numerator, denominator)


def _flag(*names: str) -> str:
    flags = metric(sc.METRIC_COREVITAL_HEALTH_FLAGS)
    operator, value = ("=", names[0]) if len(names) == 1 else ("=~", "|".join(names))
    return f'{flags.label(sc.COREVITAL_FLAG_NAME)}{operator}"{value}"'


MODEL = "{{ $labels." + label(sc.GEN_AI_REQUEST_MODEL) + " }}"
JOB = "{{ $labels.job }}"
VALUE_SHARE = "{{ $value | humanizePercentage }}"


def alerts() -> list[Alert]:
    """Every CoreVital alert, in the order of the rules file."""
    risk = metric(sc.METRIC_COREVITAL_RISK_SCORE)
    duration = metric(sc.METRIC_GEN_AI_CLIENT_OPERATION_DURATION)
    overhead = metric(sc.METRIC_COREVITAL_OVERHEAD_DURATION)
    by_model = [sc.GEN_AI_REQUEST_MODEL]
    errors = metric(sc.METRIC_COREVITAL_INTERNAL_ERRORS)
    calls = promql.selector(duration, "count", filtered=False)
    return [
        Alert(
            f"{ALERT_PREFIX}NaNOrInfGenerations",
            counted_recently(
                sc.METRIC_COREVITAL_HEALTH_FLAGS, _flag(sc.FLAG_NAN_DETECTED, sc.FLAG_INF_DETECTED), by=()
            ),
            SEVERITY_CRITICAL,
            f"{MODEL} ({JOB}) produced NaN or Inf",
            f"Generations of {MODEL} carried NaN or Inf in the last {NEW_SERIES_WINDOW}: their output is "
            "garbage. Open the nan_detected / inf_detected tables of the CoreVital traces dashboard for the "
            "blamed layer and the step it began at, then check the model's dtype (fp16 overflows: try "
            "bfloat16 or float32), recent weight or quantization changes, and the inputs of those requests. "
            "stop_on=nan_detected,inf_detected cuts such generations short.",
            panel="Health flags by flag",
        ),
        Alert(
            f"{ALERT_PREFIX}RiskySequences",
            promql.share_above(risk, RISKY_SCORE, by_model, window=WINDOW, filtered=False, job=True)
            + f" > {RISKY_SHARE}",
            SEVERITY_WARNING,
            f"{VALUE_SHARE} of {MODEL}'s sequences score a risk above {RISKY_SCORE}",
            f"For 10 minutes more than {RISKY_SHARE:.0%} of {MODEL}'s returned sequences ({JOB}) scored a "
            f"risk above {RISKY_SCORE}. Compare with the model's usual share on the model-health dashboard: "
            "a jump after a deploy points at the new model, quantization, sampling settings or prompts. "
            "Read the riskiest generations (their narratives and flags) to see which failure it is.",
            for_="10m",
            panel="Risky sequences (risk > $threshold) by model",
        ),
        Alert(
            f"{ALERT_PREFIX}RepetitionLoops",
            _share_of_sequences(sc.METRIC_COREVITAL_HEALTH_FLAGS, _flag(sc.FLAG_REPETITION_LOOP))
            + f" > {REPETITION_SHARE}",
            SEVERITY_WARNING,
            f"{VALUE_SHARE} of {MODEL}'s sequences loop",
            f"For 10 minutes more than {REPETITION_SHARE:.0%} of {MODEL}'s returned sequences ({JOB}) fell "
            "into a repetition loop: they run to their token limit repeating themselves. Look at the "
            "repetition_loop table of the traces dashboard; raise repetition_penalty, sample instead of "
            "greedy decoding, lower max_new_tokens, or set stop_on=repetition_loop to cut loops short.",
            for_="10m",
            panel="Health flags by flag",
        ),
        Alert(
            f"{ALERT_PREFIX}InternalErrors",
            counted_recently(sc.METRIC_COREVITAL_INTERNAL_ERRORS, by=[sc.COREVITAL_ERROR_TYPE]),
            SEVERITY_WARNING,
            f"CoreVital's own code failed ({{{{ $labels.{errors.label(sc.COREVITAL_ERROR_TYPE)} }}}}) "
            f"during {MODEL} generations",
            f"CoreVital caught failures of its own code during {MODEL} generations ({JOB}) in the last "
            f"{NEW_SERIES_WINDOW}. The users' calls were unaffected, but their health read-out is missing "
            "or partial. The application's log has one warning per kind of failure; the CoreVital internal "
            "errors table of the traces dashboard lists the calls. Report the exception type and that log "
            "line to CoreVital.",
            panel="CoreVital internal errors by type",
        ),
        Alert(
            f"{ALERT_PREFIX}OverheadHigh",
            promql.guarded_ratio(
                promql.summed_rate(overhead, "sum", by_model, window=WINDOW, filtered=False, job=True),
                promql.summed_rate(duration, "sum", by_model, window=WINDOW, filtered=False, job=True),
            )
            + f" > {OVERHEAD_SHARE}",
            SEVERITY_WARNING,
            f"CoreVital takes {VALUE_SHARE} of {MODEL}'s generate() time",
            f"For 15 minutes CoreVital's own work took more than {OVERHEAD_SHARE:.0%} of the time {MODEL} "
            f"spent in generate() ({JOB}). Lower the capture level (attention -> hidden -> logits, "
            "OTEL_INSTRUMENTATION_COREVITAL_CAPTURE) or the per-step series length "
            "(OTEL_INSTRUMENTATION_COREVITAL_SERIES_MAX_POINTS); the overhead panels show which capture "
            "level costs what.",
            for_="15m",
            panel="CoreVital overhead as a share of generate()",
        ),
        Alert(
            f"{ALERT_PREFIX}NoGenerations",
            f"(\n  sum by ({_group()}, {label(sc.GEN_AI_REQUEST_MODEL)}) "
            f"(increase({calls}[{SILENCE_BEFORE}] offset {SILENCE_QUIET})) > 0\n)\nunless\n(\n"
            f"  sum by ({_group()}, {label(sc.GEN_AI_REQUEST_MODEL)}) "
            f"(increase({calls}[{SILENCE_QUIET}])) > 0\n)",
            SEVERITY_WARNING,
            f"{MODEL} ({JOB}) stopped generating",
            f"{MODEL} finished generate() calls in the hour before the last {SILENCE_QUIET} but none since. "
            "Either the traffic stopped, the process died or hangs, or its metrics no longer arrive "
            "(exporter, Collector, scrape). Check the process, then its metrics pipeline. For a model with "
            "sparse traffic this alert is noise: silence it for that model.",
            for_="5m",
            panel="generate() calls per second by model",
        ),
    ]


def rules() -> dict[str, Any]:
    """The Prometheus rule-file document."""
    return {"groups": [{"name": GROUP, "rules": [alert.rule() for alert in alerts()]}]}
