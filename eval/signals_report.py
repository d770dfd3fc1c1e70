"""The report's section on every signal a user sees: the per-signal table (``signal_table.py``) under
SmolLM2's cross-fitted baseline (``healthy_baseline.py``), the targets, and how the false-alarm
budget was chosen.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from typing import Any

from eval import healthy_baseline, replay, signal_table

#: Budgets the report compares (the shipped one is ``healthy_baseline.BUDGET``).
BUDGETS = (0.01, 0.02, 0.05)
#: Leave-one-task-out AUROC of the risk score before the baseline work (docs/evaluation.md as
#: committed then): the score may change only where it does not fall on any task.
LOTO_BEFORE = {"capital": 0.852, "element_symbol": 0.819, "arithmetic": 0.678}
#: Signals the per-signal target applies to (flags, blame reasons, compound signals).
TARGETED_KINDS = ("flag", "blame reason", "compound")


def _score(items: Sequence[Any], folds: int, detectors: Sequence[tuple[int, float]], budget: float) -> Any:
    healthy = healthy_baseline.healthy_dev(items)
    profile_of = healthy_baseline.profiles(items, folds, detectors, budget)
    return signal_table.score(items, profile_of), healthy_baseline.build(healthy, budget)


def _summary(out: dict[str, Any]) -> dict[str, float]:
    """The numbers a budget is chosen by: the worst targeted signal on healthy generations, any
    flag, any blamed layer, and the hits on the injections and on wrong answers."""
    targeted = [v["false_alarm_rate"] for k, v in out.items() if k.split("/")[0] in TARGETED_KINDS
                and not math.isnan(v.get("false_alarm_rate", math.nan)) and not k.startswith("flag/any")]  # fmt: skip
    return {
        "worst_signal": max(targeted, default=math.nan),
        "any_flag": out["flag/any flag"]["false_alarm_rate"],
        "any_layer": out["blame/any layer blamed"]["false_alarm_rate"],
        "injected_blamed_first": out["blame/the injected layer blamed first"]["hit_rate"],
        "high_entropy_on_failures": out["flag/high_entropy"]["hit_rate"],
        "mid_layer_loop_set": out["flag/mid_layer_anomaly"]["by_group"]["loops_healthy"],
    }


def section(
    items: Sequence[Any], detectors: Sequence[tuple[int, float]], folds: int, results: dict[str, Any]
) -> tuple[list[str], dict[str, Any]]:
    """The section's lines and numbers; ``results`` holds the rest of the report's numbers (the
    easy panel and leave-one-task-out AUROC, for the targets). ``detectors[k]``: the repetition
    settings chosen without fold ``k``."""
    usable = [i for i in items if i.arrays is not None and i.shape is not None]
    if not usable:
        return [], {}
    budget = healthy_baseline.BUDGET
    try:
        scored, shipped = _score(usable, folds, detectors, budget)
    except ValueError as exc:  # too few healthy generations for a baseline (a quick run)
        print(f"no baseline: {exc}", file=sys.stderr)
        scored = signal_table.score(usable, lambda item: replay.shipped_profile(item.shape))
        shipped = None
    table_lines, out = signal_table.table(scored, signal_table.blame_reasons())
    profile = replay.shipped_profile(usable[0].shape)
    if shipped is None:
        judged = "without a baseline (too few healthy generations to build one)"
    else:
        out["baseline"] = {
            "runs": shipped.runs, "budget": shipped.budget, "level_limit": shipped.level.limit,
            "high_entropy_threshold_bits": shipped.high_entropy_threshold_bits,
            "l2_explosion_multiplier": shipped.l2_explosion_multiplier,
        }  # fmt: skip
        judged = (
            f"judged against SmolLM2's healthy baseline at a false-alarm budget of {shipped.budget:g} "
            f"(`eval/healthy_baseline.py`: built from {shipped.runs} healthy development generations — the loop "
            "set's outputs without a loop and the QA tasks' correct answers; a healthy development item is judged "
            f"by the baseline built from the other {folds - 1} folds, every other item by the one built from all "
            "of them, which is the one shipped in `opentelemetry-instrumentation-corevital/src/opentelemetry/instrumentation/corevital/model_profiles/default.yaml`; the loop set also uses "
            "the repetition settings chosen on the other folds). Shipped thresholds: `high_entropy` above "
            f"{shipped.high_entropy_threshold_bits:.2f} bits on at least max(2, ⌈0.2 T⌉) steps, mid-layer "
            f"multiplier {shipped.l2_explosion_multiplier:.2f}, a layer out of range above |z| "
            f"{shipped.level.limit:.1f}"
        )
    lines = [
        "",
        "## Every signal: false alarms on healthy generations, hits on its failures",
        "",
        "The package's own read-out (`signals.assess.assess_report`) replayed on each cached generation's capture "
        "report (`eval/replay.py`), with the profile the instrumentor picks for this model "
        f"(`{profile.name}`), {judged}. Healthy: the easy panel's correct answers, the QA tasks' correct "
        "answers, the loop set's outputs that do not loop. Failures: the loops, the wrong answers (QA and easy "
        "panel) and the failure-injection set (`eval/data/inject-dev.jsonl`: 20 easy prompts, each with NaN, "
        "+Inf or ×100 written into decoder layer 15's output from step 3 on). Early warnings are computed "
        "although the shipped profiles switch them off. A narrative sentence counts when the narrative "
        "contains a sentence of that kind (the risk and peak-entropy sentences describe every generation; the "
        "others are alarms). Risk and advice use the shipped risk model (in-sample on the development sets; the "
        "sections above give its out-of-fold figures).",
        "",
        "Before the baseline (the same table with the code and profiles before it: `git show "
        "26f08ef:docs/evaluation.md`), the flag `high_entropy_steps` (fixed 3.5 bits) fired on 36% of healthy "
        "generations and some flag on 36%; every healthy generation had a blamed layer (`l2_norm_outlier`, "
        "a z-score among layers: layer 28 on 233 of 233; `l2_norm_unstable` on 41%); the narrative's "
        "entropy-trend sentence came with 27% of healthy generations and 36% of failures. Injections were "
        "flagged and blamed 100% then too, and `repetition_loop` caught 24 of 25 loops.",
        "",
        *table_lines,
    ]
    lines += targets(out, results)
    if shipped is not None:
        lines += budget_lines(usable, folds, detectors, out)
    return lines, out


def targets(out: dict[str, Any], results: dict[str, Any]) -> list[str]:
    """The targets for the signals, each with its measured figure."""
    rows: list[tuple[str, str, bool]] = []
    for key, v in out.items():
        kind = key.split("/")[0]
        if kind in TARGETED_KINDS and isinstance(v, dict) and not key.startswith("flag/any") and v["healthy"]:
            rate = v["false_alarm_rate"]
            rows.append((f"`{key.split('/', 1)[1]}` ({kind}) on ≤ 5% of healthy generations",
                         f"{v['false_alarms']}/{v['healthy']} ({100 * rate:.1f}%)", rate <= 0.05))  # fmt: skip
    layer = out.get("most_blamed_layer", {})
    rows.append(("no layer blamed on more than 5% of healthy generations",
                 f"most blamed: layer {layer.get('layer')}, {100 * layer.get('rate', 0.0):.1f}%",
                 layer.get("rate", 0.0) <= 0.05))  # fmt: skip
    loops = out.get("flag/repetition_loop", {})
    if loops.get("targets"):
        rows.append(("`repetition_loop` catches ≥ 95% of loops", f"{loops['hits']}/{loops['targets']}",
                     loops["hit_rate"] >= 0.95))  # fmt: skip
    for key, label in (("flag/nan_detected", "NaN injection flagged"), ("flag/inf_detected", "+Inf injection flagged"),
                       ("blame reason/nan_or_inf", "NaN/Inf injection blamed (`nan_or_inf`)"),
                       ("flag/mid_layer_anomaly", "scale-up injection flagged (`mid_layer_anomaly`)"),
                       ("blame reason/l2_norm_out_of_range", "scale-up injection blamed (`l2_norm_out_of_range`)"),
                       ("blame/the injected layer blamed first", "every injection blames the injected layer first")):  # fmt: skip
        v = out.get(key, {})
        if v.get("targets"):
            rows.append((f"{label}: 100%", f"{v['hits']}/{v['targets']}", v["hits"] == v["targets"]))
    easy = results.get("easy", {}).get("by_prior", {}).get("default")
    if easy:
        rows.append(("easy panel: correct answers in the high band ≤ 5%",
                     f"{100 * easy['high_band_false_alarms']:.1f}%", easy["high_band_false_alarms"] <= 0.05))  # fmt: skip
        rows.append(("easy panel: median risk of correct answers ≤ 0.2", f"{easy['median_correct']:.3f}",
                     easy["median_correct"] <= 0.2))  # fmt: skip
    for task, before in LOTO_BEFORE.items():
        r = results.get("tasks", {}).get(task)
        if r and not math.isnan(r["loto_auroc"]):
            rows.append((f"{task}: leave-one-task-out AUROC not below {before:.3f} (before)",
                         f"{r['loto_auroc']:.3f}", round(r["loto_auroc"], 3) >= before))  # fmt: skip
    out["targets"] = [{"target": t, "measured": m, "met": bool(ok)} for t, m, ok in rows]
    met = sum(ok for _, _, ok in rows)
    return [
        "",
        f"### Targets for the signals: {met} of {len(rows)} met",
        "",
        "| target | measured | met |",
        "|---|---|:---:|",
        *[f"| {t} | {m} | {'yes' if ok else '**no**'} |" for t, m, ok in rows],
    ]


def budget_lines(
    items: Sequence[Any], folds: int, detectors: Sequence[tuple[int, float]], shipped: dict[str, Any]
) -> list[str]:
    """The same table's key figures at other budgets (the same cross-fitting), to show what the
    shipped budget trades."""
    lines = [
        "",
        "### Choosing the budget",
        "",
        "The same measurement with the baseline's thresholds at other false-alarm budgets. A lower budget means "
        "higher thresholds; the quantile at a budget needs at least 1/budget − 1 healthy generations "
        "(`signals.baseline.runs_needed`: 99 at 0.01, which four folds of the healthy development generations "
        "just hold, so 0.01 is the lowest budget this evaluation can cross-fit).",
        "",
        "| budget | worst flag / blame reason / compound on healthy | any flag on healthy | any layer blamed on "
        "healthy | `mid_layer_anomaly` on the loop set's non-loops | injected layer blamed first | `high_entropy` "
        "on loops and wrong answers |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for budget in BUDGETS:
        if budget == healthy_baseline.BUDGET:
            out = shipped
        else:
            try:
                scored, _ = _score(items, folds, detectors, budget)
            except ValueError:
                continue
            _, out = signal_table.table(scored, signal_table.blame_reasons())
        s = _summary(out)
        mark = " (shipped)" if budget == healthy_baseline.BUDGET else ""
        lines.append(
            f"| {budget:g}{mark} | {100 * s['worst_signal']:.1f}% | {100 * s['any_flag']:.1f}% | "
            f"{100 * s['any_layer']:.1f}% | {100 * s['mid_layer_loop_set']:.0f}% | "
            f"{100 * s['injected_blamed_first']:.0f}% | {100 * s['high_entropy_on_failures']:.1f}% |"
        )
    return lines
