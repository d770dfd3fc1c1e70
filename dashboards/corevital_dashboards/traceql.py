"""TraceQL for the generation spans, every attribute name taken from the generated constants.

Queries filter by the dashboard's ``model`` and ``job`` variables with ``${model:regex}`` and
``${job:regex}``: Grafana escapes each selected value for a regular expression (``.`` -> ``\\.``,
``/`` -> ``\\/``) and joins several as ``(a|b)``; "All" is the custom all value ``.*``. The result
goes into a **backtick** string: TraceQL's double-quoted strings accept only ``\\"`` and ``\\\\`` as
escapes, so ``"Qwen2\\.5"`` would be a syntax error, while a raw string keeps the backslashes for
the regular expression. (A model name holding a backtick cannot be matched this way.)

``job`` is Prometheus's job label, which on the OTLP path is the service name: the Tempo side
matches it against ``resource.service.name``.
"""

from __future__ import annotations

from .registry import Flag, sc

# TraceQL names the OpenTelemetry resource attribute service.name with the resource scope.
SERVICE_NAME = "resource.service.name"


def regex_filter(field: str, variable: str) -> str:
    """``field =~ `${variable:regex}```: a dashboard variable as a regular expression, in a raw string."""
    return f"{field} =~ `${{{variable}:regex}}`"


MODEL_FILTER = regex_filter(f"span.{sc.GEN_AI_REQUEST_MODEL}", "model")
JOB_FILTER = regex_filter(SERVICE_NAME, "job")
# The columns a generation table shows next to trace, span and duration.
GENERATION_COLUMNS = (
    sc.GEN_AI_REQUEST_MODEL,
    sc.COREVITAL_RISK_SCORE,
    sc.COREVITAL_RISK_BAND,
    sc.COREVITAL_FLAGS,
    sc.GEN_AI_RESPONSE_FINISH_REASONS,
    sc.GEN_AI_USAGE_OUTPUT_TOKENS,
)


def span(attribute: str) -> str:
    """A span-scoped attribute reference: ``span.<name>``."""
    return f"span.{attribute}"


def string(value: str) -> str:
    """A TraceQL double-quoted string literal (only ``\\"`` and ``\\\\`` are escapes there)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def select(*attributes: str) -> str:
    """A ``select(...)`` stage adding columns to the result table."""
    return "select(" + ", ".join(span(a) for a in attributes) + ")"


def filtered(condition: str) -> str:
    """A spanset filter: ``condition`` on generation spans of the selected models and jobs."""
    return f"{{ {condition} && {MODEL_FILTER} && {JOB_FILTER} }}"


def generations(condition: str, *columns: str) -> str:
    """Generation spans of the selected models matching ``condition``, with the usual columns."""
    return f"{filtered(condition)} | {select(*GENERATION_COLUMNS, *columns)}"


def risky_condition() -> str:
    return f"{span(sc.COREVITAL_RISK_SCORE)} >= $threshold"


def risky_generations() -> str:
    """Generations whose risk score is at least ``$threshold``."""
    return generations(risky_condition(), sc.COREVITAL_NARRATIVE)


def flagged_generations(flag: Flag) -> str:
    """Generations that raised one health flag (a boolean attribute, or a step count above 0)."""
    condition = f"{span(flag.attribute)} = true" if flag.type == "boolean" else f"{span(flag.attribute)} > 0"
    return generations(condition)


def stopped_generations() -> str:
    """Generations CoreVital stopped: ``corevital.stopped`` among the finish reasons (an array)."""
    condition = f"{span(sc.GEN_AI_RESPONSE_FINISH_REASONS)} = {string(sc.FINISH_REASON_COREVITAL_STOPPED)}"
    return generations(condition, sc.COREVITAL_INTERVENTION_SIGNAL, sc.COREVITAL_INTERVENTION_STEP)


def internal_errors() -> str:
    """Generations during which CoreVital's own code failed (the user's call went on)."""
    return generations(f"{span(sc.COREVITAL_ERROR_TYPE)} != nil", sc.COREVITAL_ERROR_TYPE)


def risky_rate_by_model() -> str:
    """TraceQL metrics: risky generations per second, by model."""
    return f"{filtered(risky_condition())} | rate() by ({span(sc.GEN_AI_REQUEST_MODEL)})"
