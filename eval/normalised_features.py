"""Should the risk score read features normalised against the model's healthy baseline?

Two candidates, each computed against a baseline that never saw the item (built from the healthy
generations of the training side of each split: the other folds, or the other tasks):

- ``layer_level_z_max``: the largest |z| of a layer's L2-norm level (``signals.baseline``), how far
  the most unusual layer is from its own healthy range;
- ``high_entropy_share``: the share of steps above the baseline's high-entropy threshold.

Each is added to the shipped features and the pipeline refitted and scored exactly as the shipped one
(5-fold out-of-fold and leave-one-task-out). The ablation rule of docs/evaluation.md applies: a
feature ships only if it raises both AUROCs on every task.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from eval import healthy_baseline
from opentelemetry.instrumentation.corevital.fitting import fit_logistic
from opentelemetry.instrumentation.corevital.signals.baseline import Baseline, layer_levels
from opentelemetry.instrumentation.corevital.signals.risk import DEFAULT_RISK_FEATURES, RISK_FEATURES

CANDIDATES = ("layer_level_z_max", "high_entropy_share")
#: The shipped pipeline's regimes: outputs of at most 48 tokens (ridge 10), longer ones (ridge 1).
SPLIT, L2_SHORT, L2_LONG = 48, 10.0, 1.0


def candidates(item: Any, baseline: Baseline) -> np.ndarray:
    """The candidate features of one item against ``baseline``."""
    l2 = item.arrays.hidden.get("l2_norm")
    z = np.abs(baseline.level.z(layer_levels(l2))) if l2 is not None else np.full(1, np.nan)
    entropy = item.arrays.series["entropy"]
    finite = entropy[np.isfinite(entropy)]
    share = float((finite > baseline.high_entropy_threshold_bits).mean()) if finite.size else math.nan
    return np.array([float(np.nanmax(z)) if np.isfinite(z).any() else math.nan, share])


def ablation(
    dev: Sequence[Any], folds: int, qa_tasks: Sequence[str], auroc: Callable[[np.ndarray, np.ndarray], float]
) -> tuple[list[str], dict[str, Any]]:
    """The report's table: per task, out-of-fold / leave-one-task-out AUROC of the shipped features
    and of each candidate added."""
    usable = [i for i in dev if i.arrays is not None and i.shape is not None]
    if len(usable) != len(dev) or not dev:
        return [], {}
    base = np.stack([i.features[: len(RISK_FEATURES)] for i in dev])[
        :, [RISK_FEATURES.index(f) for f in DEFAULT_RISK_FEATURES]
    ]
    y = np.array([i.label for i in dev], dtype=float)
    tasks = np.array([i.task for i in dev])
    fold_of = np.array([i.fold for i in dev])
    splits = [("oof", fold_of == k) for k in range(folds)] + [
        ("loto", tasks == t) for t in qa_tasks if t in set(tasks)
    ]
    variants = {"shipped": (), **{f"with `{c}`": (n,) for n, c in enumerate(CANDIDATES)}, "with both": (0, 1)}
    scores = {(v, kind): np.full(len(dev), np.nan) for v in variants for kind in ("oof", "loto")}
    tokens_col = DEFAULT_RISK_FEATURES.index("output_tokens_log")
    for kind, test in splits:
        train_items = [i for i, t in zip(dev, test, strict=True) if not t]
        try:
            baseline = healthy_baseline.build(healthy_baseline.healthy_dev(train_items))
        except ValueError:
            continue
        extra = np.stack([candidates(i, baseline) for i in dev])
        for name, columns in variants.items():
            x = np.column_stack([base, extra[:, list(columns)]]) if columns else base
            scores[(name, kind)][test] = _fit_score(x, y, ~test, test, tokens_col)
    lines = [
        "",
        "## Normalised features for the risk score: with and without",
        "",
        "Features read against the model's healthy baseline (`eval/normalised_features.py`), each computed with "
        "a baseline built only from the training side of each split (the other folds, or the other tasks), "
        "added to the shipped features and scored like them (5-fold / leave-one-task-out). A feature ships "
        "only if it raises both on every task.",
        "",
        "| task | " + " | ".join(variants) + " |",
        "|---|" + "---|" * len(variants),
    ]
    out: dict[str, Any] = {}
    helps = {v: True for v in variants if v != "shipped"}
    for task in ("loops", *qa_tasks):
        index = tasks == task
        if not index.any():
            continue
        cells, values = [], {}
        for v in variants:
            a = auroc(scores[(v, "oof")][index], y[index].astype(bool))
            b = auroc(scores[(v, "loto")][index], y[index].astype(bool)) if task in qa_tasks else math.nan
            values[v] = (a, b)
            cells.append(f"{a:.3f} / " + ("—" if math.isnan(b) else f"{b:.3f}"))
        for v in helps:
            a, b = values[v]
            a0, b0 = values["shipped"]
            helps[v] &= a > a0 and (math.isnan(b0) or b > b0)
        out[task] = {v: list(ab) for v, ab in values.items()}
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    out["ships"] = [v for v, ok in helps.items() if ok]
    lines += ["", "Raises both on every task: " + (", ".join(out["ships"]) if out["ships"] else "**none**, so the "
              "shipped risk model reads neither.")]  # fmt: skip
    return lines, out


def _fit_score(
    x: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray, tokens_col: int
) -> np.ndarray:
    """The shipped pipeline's two regimes (split on the token count in column ``tokens_col``) on any
    columns: standardise on the training rows, ridge logistic regression, and the probability of
    each test row (at the training rate: AUROC does not depend on the prior)."""
    tokens = np.expm1(x[:, tokens_col])
    out = np.full(int(test.sum()), np.nan)
    for regime, l2 in ((True, L2_SHORT), (False, L2_LONG)):
        is_short = tokens <= SPLIT + 0.5
        tr, te = train & (is_short == regime), test & (is_short == regime)
        if not te.any():
            continue
        xt = x[tr]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            m, sd = np.nanmean(xt, axis=0), np.nanstd(xt, axis=0)
        mean = np.where(np.isfinite(m), m, 0.0)
        scale = np.where(np.isfinite(sd) & (sd > 1e-9), sd, 1.0)
        z_train = np.where(np.isfinite(xt), (xt - mean) / scale, 0.0)
        z_test = np.where(np.isfinite(x[te]), (x[te] - mean) / scale, 0.0)
        weights, intercept = fit_logistic(z_train, y[tr], l2=l2)
        out[(is_short == regime)[test]] = 1.0 / (1.0 + np.exp(-(z_test @ weights + intercept)))
    return out
