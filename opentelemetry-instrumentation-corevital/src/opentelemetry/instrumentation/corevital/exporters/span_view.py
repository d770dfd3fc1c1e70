"""One generation span as a short block of text a person can read in a terminal or a log.

Only what a reader needs to judge one ``generate()`` call: the model, tokens in and out, duration,
finish reasons, the risk score with its band and factors, health flags with the step they fired,
early warnings, blamed layers, what CoreVital stopped, and the narrative. Every value comes from
the span's own attributes and events (names from :mod:`..semconv`); a missing one is left out,
never guessed. Control characters in a value (a model name, a narrative) are printed escaped
(:func:`printable`): a span cannot move the terminal's cursor, colour it, clear it or fake a line.
"""

from __future__ import annotations

import json
import re
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan

from .. import semconv as sc
from ..signals.blame import LayerBlame, describe
from ..signals.narrative import format_risk

#: The instrumentation scope of CoreVital's spans: the package's own name.
SCOPE_NAME = __name__.rsplit(".", 2)[0]
WIDTH = 100
LABEL_WIDTH = 11
# C0 and C1 control characters, DEL, and the bidirectional marks, embeddings, overrides and isolates
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    r"""``text`` with its control characters escaped as Python writes them.

    >>> printable("SmolLM2\x1b[2J\nfake line\u202e")
    'SmolLM2\\x1b[2J\\nfake line\\u202e'
    """
    return _UNSAFE.sub(lambda match: match.group().encode("unicode_escape").decode("ascii"), text)


def is_generation_span(span: ReadableSpan) -> bool:
    """True for a span CoreVital wrote for one ``generate()`` call."""
    scope = span.instrumentation_scope
    if scope is not None and scope.name == SCOPE_NAME:
        return True
    attributes = span.attributes or {}
    return attributes.get(sc.GEN_AI_PROVIDER_NAME) == sc.GEN_AI_PROVIDER_HUGGINGFACE


def format_generation(span: ReadableSpan, width: int = WIDTH) -> str:
    """The block of text for one generation span (ends with a newline).

    Lines without data are left out, so a span without a CoreVital read-out (capture failed, or a
    decoding mode without one) still shows its GenAI facts and says that the read-out is missing.
    """
    a: Mapping[str, Any] = span.attributes or {}
    events = list(span.events or ())
    lines = [_header(span)]

    def line(label: str, text: str) -> None:
        if text:
            lines.append(_wrap(label, printable(text), width))

    line("model", _model(a))
    line("tokens", _tokens(span, a))
    if a.get(sc.COREVITAL_RISK_SCORE) is None:
        line("risk", "no CoreVital read-out on this span")
    else:
        line("risk", _risk(a))
        line("flags", _flags(a, events) or "none")
        line("warnings", _warnings(a, events))
        line("layers", _layers(a) or "none")
    line("stopped", _stopped(a, events))
    line("error", _error(a))
    line("narrative", str(a.get(sc.COREVITAL_NARRATIVE) or ""))
    return "\n".join(lines) + "\n"


# -- lines ---------------------------------------------------------------------------------------
def _header(span: ReadableSpan) -> str:
    title = f"== CoreVital: {printable(span.name)} =="
    context = span.context
    if context is not None and context.trace_id:
        title += f" trace {context.trace_id:032x}"
    return title


def _model(a: Mapping[str, Any]) -> str:
    model = a.get(sc.GEN_AI_REQUEST_MODEL)
    provider = a.get(sc.GEN_AI_PROVIDER_NAME)
    if model is None:
        return ""
    return f"{model} ({provider})" if provider else str(model)


def _tokens(span: ReadableSpan, a: Mapping[str, Any]) -> str:
    parts = []
    input_tokens, output_tokens = a.get(sc.GEN_AI_USAGE_INPUT_TOKENS), a.get(sc.GEN_AI_USAGE_OUTPUT_TOKENS)
    if input_tokens is not None or output_tokens is not None:
        parts.append(f"{_or_dash(input_tokens)} in, {_or_dash(output_tokens)} out")
    if span.start_time is not None and span.end_time is not None:
        parts.append(f"{(span.end_time - span.start_time) / 1e9:.2f} s")
    reasons = _strings(a.get(sc.GEN_AI_RESPONSE_FINISH_REASONS))
    if reasons:
        parts.append("finish " + ", ".join(reasons))
    count = a.get(sc.COREVITAL_SEQUENCE_COUNT)
    if isinstance(count, int) and count > 1:
        parts.append(
            f"{count} sequences, read-out of sequence {a.get(sc.COREVITAL_SERIES_SEQUENCE_INDEX, 0)}"
        )
    return "   ".join(parts)


def _risk(a: Mapping[str, Any]) -> str:
    score = a.get(sc.COREVITAL_RISK_SCORE)
    shown = format_risk(float(score)) if isinstance(score, (int, float)) else _number(score)
    text = f"{shown} {a.get(sc.COREVITAL_RISK_BAND) or ''}".rstrip()
    factors = _strings(a.get(sc.COREVITAL_RISK_FACTORS))
    return text + ("   factors " + ", ".join(factors) if factors else "   no factor")


def _flags(a: Mapping[str, Any], events: Iterable[Any]) -> str:
    fired = _fired(events, sc.EVENT_COREVITAL_HEALTH_FLAG, sc.COREVITAL_FLAG_NAME)
    names = list(dict.fromkeys([*fired, *_strings(a.get(sc.COREVITAL_FLAGS))]))  # in the order they fired
    return "; ".join(_at(name, fired.get(name, [])) for name in names)


def _warnings(a: Mapping[str, Any], events: Iterable[Any]) -> str:
    fired = _fired(events, sc.EVENT_COREVITAL_EARLY_WARNING, sc.COREVITAL_EARLY_WARNING_SIGNAL)
    if not fired:
        return ""
    text = "; ".join(_at(name, steps) for name, steps in fired.items())
    failure_risk = a.get(sc.COREVITAL_EARLY_WARNING_FAILURE_RISK)
    return text + (f" (failure risk {_number(failure_risk)})" if failure_risk is not None else "")


def _layers(a: Mapping[str, Any]) -> str:
    """Blamed layers grouped by their reasons (from the details JSON), worded as the narrative words
    them (``signals.blame.describe``): ``15-29 (nan_or_inf); 2, 3 (l2_norm_unstable)``; else the
    bare indices."""
    try:
        details = json.loads(a[sc.COREVITAL_LAYER_BLAME_DETAILS])
        return describe(
            [LayerBlame(int(b["layer"]), [str(r) for r in b.get("reasons") or ()]) for b in details]
        )
    except (KeyError, ValueError, TypeError, AttributeError):
        return ", ".join(str(layer) for layer in a.get(sc.COREVITAL_LAYER_BLAME_LAYERS) or ())


def _stopped(a: Mapping[str, Any], events: Iterable[Any]) -> str:
    stops = []
    for event in events:
        if event.name == sc.EVENT_COREVITAL_INTERVENTION:
            e = event.attributes or {}
            stop = f"{e.get(sc.COREVITAL_INTERVENTION_SIGNAL, '?')} at step {e.get(sc.COREVITAL_STEP, '?')}"
            if sc.COREVITAL_SEQUENCE_INDEX in e:
                stop += f" (sequence {e[sc.COREVITAL_SEQUENCE_INDEX]})"
            stops.append(stop)
    if not stops and a.get(sc.COREVITAL_INTERVENTION_SIGNAL) is not None:
        stops.append(
            f"{a[sc.COREVITAL_INTERVENTION_SIGNAL]} at step {a.get(sc.COREVITAL_INTERVENTION_STEP, '?')}"
        )
    return "; ".join(stops)


def _error(a: Mapping[str, Any]) -> str:
    errors = [f"{a[key]}" for key in (sc.ERROR_TYPE, sc.COREVITAL_ERROR_TYPE) if a.get(key)]
    return ", ".join(errors)


# -- helpers -------------------------------------------------------------------------------------
def _fired(events: Iterable[Any], event_name: str, key: str) -> dict[str, list[str]]:
    """Name -> the steps (with the sequence, when not 0) at which events of one kind fired."""
    fired: dict[str, list[str]] = {}
    for event in events:
        if event.name != event_name:
            continue
        e = event.attributes or {}
        step = f"step {e.get(sc.COREVITAL_STEP, '?')}"
        if e.get(sc.COREVITAL_SEQUENCE_INDEX):
            step += f" of sequence {e[sc.COREVITAL_SEQUENCE_INDEX]}"
        fired.setdefault(str(e.get(key, "?")), []).append(step)
    return fired


def _at(name: str, steps: Sequence[str]) -> str:
    return f"{name} at {', '.join(steps)}" if steps else name


def _strings(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    try:
        return [str(v) for v in value]
    except TypeError:
        return [str(value)]


def _number(value: Any) -> str:
    try:
        return f"{float(value):.2f}"
    except (TypeError, ValueError):
        return str(value)


def _or_dash(value: Any) -> str:
    return "?" if value is None else str(value)


def _wrap(label: str, text: str, width: int) -> str:
    indent = " " * LABEL_WIDTH
    return textwrap.fill(
        text,
        width=width,
        initial_indent=label.ljust(LABEL_WIDTH),
        subsequent_indent=indent,
        break_on_hyphens=False,
        break_long_words=False,
    )
