"""Every signal a user sees, measured: how often it fires on healthy generations, and how often on
the failures it is meant for.

The read-out of every cached item comes from the package itself (``eval/replay.py``). Healthy
generations are the easy panel's correct answers, the QA tasks' correct answers and the loop set's
outputs that do not loop; failures are the loops, the wrong answers (QA and easy panel) and the
failure-injection set (NaN, +Inf or a scale-up written into one middle decoder layer). A signal's
*false-alarm rate* is the share of healthy generations it fires on, its *hit rate* the share of its
target failures it fires on.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from eval import replay
from opentelemetry.instrumentation.corevital.signals import blame as bl
from opentelemetry.instrumentation.corevital.signals import compound as cs
from opentelemetry.instrumentation.corevital.signals import early_warning as ew
from opentelemetry.instrumentation.corevital.signals import flags as fl
from opentelemetry.instrumentation.corevital.signals import narrative as nv
from opentelemetry.instrumentation.corevital.signals.assess import SequenceHealth

#: Healthy groups, then failure groups: (key, what the report calls it).
HEALTHY = (("easy_correct", "easy panel, correct"), ("qa_correct", "QA, correct"),
           ("loops_healthy", "loop set, no loop"))  # fmt: skip
FAILURES = (("loops", "loops"), ("wrong", "wrong answers"), ("inject_nan", "NaN injected"),
            ("inject_inf", "+Inf injected"), ("inject_scale", "scale-up injected"))  # fmt: skip
INJECTED = ("inject_nan", "inject_inf", "inject_scale")
FAILED_OUTPUT = ("loops", "wrong")
#: Signals that need attention capture (the evaluation captures hidden states): not measured.
NEEDS_ATTENTION = {fl.ATTENTION_COLLAPSE, bl.ATTENTION_COLLAPSE, cs.CONTEXT_LOSS, cs.ATTENTION_BOTTLENECK}


@dataclass
class Scored:
    """One cached generation: its group and the package's read-out of it."""

    group: str
    health: SequenceHealth
    entropy: np.ndarray
    #: The early-warning detectors that fire when the profile switches them on (name -> step).
    warnings: dict[str, int]
    injected_layer: int | None = None


@dataclass(frozen=True)
class Signal:
    """One row of the table: a name, its kind, the failure groups it is meant for, and whether it
    fired on one generation."""

    name: str
    kind: str
    targets: tuple[str, ...]
    fired: Callable[[Scored], bool]
    #: Whether it means anything on a healthy generation (not: "the injected layer blamed first").
    on_healthy: bool = True


def _flag_targets(name: str) -> tuple[str, ...]:
    return {
        fl.NAN: ("inject_nan",),
        fl.INF: ("inject_inf",),
        fl.MID_LAYER_ANOMALY: ("inject_scale",),
        fl.REPETITION_LOOP: ("loops",),
    }.get(name, FAILED_OUTPUT)


def _reason_targets(reason: str) -> tuple[str, ...]:
    return {bl.NAN_OR_INF: ("inject_nan", "inject_inf")}.get(reason, ("inject_scale",))


def signals(blame_reasons: Sequence[str]) -> list[Signal]:
    """Every row: the flags, the blame reasons, the compound signals, the early-warning detectors
    and the narrative's sentence kinds, as the package names them."""
    rows = [Signal(f"`{name}`", "flag", _flag_targets(name), lambda s, n=name: n in s.health.flags)
            for name in fl.FLAG_NAMES]  # fmt: skip
    rows.append(Signal("any flag", "flag", (*FAILED_OUTPUT, *INJECTED), lambda s: bool(s.health.flag_names)))
    rows.append(Signal("high-entropy step count > 0", "count", FAILED_OUTPUT,
                       lambda s: s.health.flags.high_entropy_steps > 0))  # fmt: skip
    for reason in blame_reasons:
        rows.append(Signal(f"`{reason}`", "blame reason", _reason_targets(reason),
                           lambda s, r=reason: any(r in b.reasons for b in s.health.blame)))  # fmt: skip
    rows.append(Signal("any layer blamed", "blame", INJECTED, lambda s: bool(s.health.blame)))
    rows.append(
        Signal(
            "the injected layer blamed first",
            "blame",
            INJECTED,
            lambda s: bool(s.health.blame) and s.health.blame[0].layer == s.injected_layer,
            on_healthy=False,
        )
    )
    for name in cs.SIGNAL_NAMES:
        targets = {cs.CONFIDENT_REPETITION_RISK: ("loops",)}.get(name, FAILED_OUTPUT)
        rows.append(Signal(f"`{name}`", "compound", targets,
                           lambda s, n=name: any(c.name == n for c in s.health.compound)))  # fmt: skip
    for name in ew.SIGNAL_NAMES:
        rows.append(Signal(f"`{name}`", "early warning", FAILED_OUTPUT, lambda s, n=name: n in s.warnings))
    for kind in nv.SENTENCE_KINDS:
        targets = {nv.LAYERS: INJECTED, nv.FLAGS: (*FAILED_OUTPUT, *INJECTED)}.get(kind, FAILED_OUTPUT)
        rows.append(Signal(f"{kind}", "narrative sentence", targets,
                           lambda s, k=kind: any(kind_ == k for kind_, _ in sentences(s))))  # fmt: skip
    rows.append(Signal("risk in the high band", "risk", (*FAILED_OUTPUT, *INJECTED),
                       lambda s: s.health.risk.band == "high"))  # fmt: skip
    return rows


def sentences(s: Scored) -> list[tuple[str, str]]:
    """The narrative's sentences with their kinds (the same call the read-out made)."""
    h = s.health
    return nv.narrative_sentences(h.risk, h.flags, s.entropy, h.compound, h.blame)


def _rate(hits: int, n: int) -> str:
    return f"{hits}/{n} ({100 * hits / n:.0f}%)" if n else "—"


def table(scored: list[Scored], blame_reasons: Sequence[str]) -> tuple[list[str], dict[str, Any]]:
    """The per-signal table (markdown lines) and its numbers."""
    by_group: dict[str, list[Scored]] = {}
    for s in scored:
        by_group.setdefault(s.group, []).append(s)
    healthy = [s for key, _ in HEALTHY for s in by_group.get(key, [])]
    lines = [
        "| signal | kind | " + " | ".join(label for _, label in HEALTHY)
        + " | **all healthy** | meant for | **hit rate** |",
        "|---|---|" + "---:|" * len(HEALTHY) + "---:|---|---:|",
    ]  # fmt: skip
    out: dict[str, Any] = {}
    for signal in signals(blame_reasons):
        if signal.name.strip("`") in NEEDS_ATTENTION:
            lines.append(f"| {signal.name} | {signal.kind} | " + " | ".join("—" for _ in HEALTHY)
                         + " | — | needs attention capture (not measured here) | — |")  # fmt: skip
            continue
        cells, by_healthy_group = [], {}
        for key, _ in HEALTHY:
            members = by_group.get(key, [])
            fired = sum(signal.fired(s) for s in members)
            cells.append(_rate(fired, len(members)) if signal.on_healthy else "—")
            by_healthy_group[key] = fired / len(members) if members else math.nan
        false_alarms = sum(signal.fired(s) for s in healthy)
        target = [s for key in signal.targets for s in by_group.get(key, [])]
        hits = sum(signal.fired(s) for s in target)
        labels = dict(FAILURES)
        meant = ", ".join(labels[key] for key in signal.targets)
        overall = f"**{_rate(false_alarms, len(healthy))}**" if signal.on_healthy else "—"
        lines.append(
            f"| {signal.name} | {signal.kind} | " + " | ".join(cells)
            + f" | {overall} | {meant} | **{_rate(hits, len(target))}** |"
        )  # fmt: skip
        out[f"{signal.kind}/{signal.name.strip('`')}"] = {
            "false_alarms": false_alarms, "healthy": len(healthy), "hits": hits, "targets": len(target),
            "false_alarm_rate": false_alarms / len(healthy) if healthy else math.nan,
            "hit_rate": hits / len(target) if target else math.nan, "by_group": by_healthy_group,
        }  # fmt: skip
    layers = Counter(b.layer for s in healthy for b in s.health.blame)
    if layers:
        layer, count = layers.most_common(1)[0]
        out["most_blamed_layer"] = {"layer": layer, "rate": count / len(healthy)}
        lines += [
            "",
            f"Most-blamed layer on healthy generations: layer {layer}, on {_rate(count, len(healthy))}.",
        ]
    else:
        out["most_blamed_layer"] = {"layer": None, "rate": 0.0}
        lines += [
            "",
            f"Most-blamed layer on healthy generations: none (no layer blamed on any of {len(healthy)}).",
        ]
    return lines, out


def group_of(task: str, label: bool, row: dict[str, Any]) -> str | None:
    """The group of a cached item (``None``: a generation the table does not use)."""
    if task == "inject":
        return f"inject_{row['inject']['kind']}"
    if task == "loops":
        return "loops" if label else "loops_healthy"
    if task == "easy":
        return "wrong" if label else "easy_correct"
    return "wrong" if label else "qa_correct"


def score(items: Sequence[Any], profile_of: Callable[[Any], Any]) -> list[Scored]:
    """The package's read-out of every item the table uses (``items`` are ``evaluate.Item``s with
    their cached arrays), each under the profile ``profile_of(item)`` gives it."""
    scored = []
    for item in items:
        group = group_of(item.task, item.label, item.row)
        if group is None or item.arrays is None or item.shape is None:
            continue
        profile = profile_of(item)
        health = replay.read_out(item.arrays, item.finish_reason, item.shape.hidden_size, profile).primary
        series = item.arrays.series
        warnings = ew.scan(
            series["entropy"], series["margin"], series["surprisal"], profile.high_entropy_threshold_bits
        )
        injected = int(item.row["inject"]["layer"]) if item.task == "inject" else None
        scored.append(Scored(group, health, series["entropy"], warnings, injected))
    return scored


def blame_reasons() -> tuple[str, ...]:
    """The blame reasons the package can give, most severe first."""
    return bl.REASONS
