"""TraceQL for the generation spans, every attribute name taken from the generated constants.

Queries filter by the dashboard's ``model`` variable with ``${model:regex}`` (Grafana escapes the
selected values and joins them with ``|``; "All" is ``.*``) and by the ``threshold`` variable.
"""

from __future__ import annotations

from .registry import Flag, sc

MODEL_FILTER = f'span.{sc.GEN_AI_REQUEST_MODEL} =~ "${{model:regex}}"'
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


def select(*attributes: str) -> str:
    """A ``select(...)`` stage adding columns to the result table."""
    return "select(" + ", ".join(span(a) for a in attributes) + ")"


def generations(condition: str, *columns: str) -> str:
    """Generation spans of the selected models matching ``condition``, with the usual columns."""
    return f"{{ {condition} && {MODEL_FILTER} }} | {select(*GENERATION_COLUMNS, *columns)}"


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
    condition = f'{span(sc.GEN_AI_RESPONSE_FINISH_REASONS)} = "{sc.FINISH_REASON_COREVITAL_STOPPED}"'
    return generations(condition, sc.COREVITAL_INTERVENTION_SIGNAL, sc.COREVITAL_INTERVENTION_STEP)


def internal_errors() -> str:
    """Generations during which CoreVital's own code failed (the user's call went on)."""
    return generations(f"{span(sc.COREVITAL_ERROR_TYPE)} != nil", sc.COREVITAL_ERROR_TYPE)


def risky_rate_by_model() -> str:
    """TraceQL metrics: risky generations per second, by model."""
    return f"{{ {risky_condition()} && {MODEL_FILTER} }} | rate() by ({span(sc.GEN_AI_REQUEST_MODEL)})"
