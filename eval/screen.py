"""Screen candidate changes to the risk pipeline on the cached generations: what was tried
beside the shipped pipeline, and why it does not ship. Prints markdown tables (eval/README.md).

    python eval/screen.py [--cache eval/cache]

Every AUROC is out-of-fold (the protocol's folds) / leave-one-task-out, as in ``evaluate.py``; the
easy panel is scored by the model fitted on every development item, at the default expected failure
rate. Nothing here is used by the instrumentation.
"""

from __future__ import annotations

import argparse
import functools
import inspect
import math
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from eval import evaluate as ev  # noqa: E402
from eval import heldout  # noqa: E402
from opentelemetry.instrumentation.corevital import fitting  # noqa: E402
from opentelemetry.instrumentation.corevital.signals.representation import state_spread  # noqa: E402
from opentelemetry.instrumentation.corevital.signals.risk import (  # noqa: E402
    DEFAULT_RISK_FEATURES,
    RISK_FEATURES,
    RiskModel,
)

WIDTH = len(RISK_FEATURES)
SPARE = RISK_FEATURES.index("state_spread")  # the column a candidate feature is screened in


class Data:
    def __init__(self, cache: Path) -> None:
        items = ev.load(cache)
        self.dev = [i for i in items if i.task in ev.TASKS]
        self.easy = [i for i in items if i.task == ev.EASY]
        self.y = np.array([i.label for i in self.dev], dtype=float)
        self.tasks = np.array([i.task for i in self.dev])
        self.folds = np.array([i.fold for i in self.dev])
        self.x = np.stack([i.features for i in self.dev])
        self.x_easy = np.stack([i.features for i in self.easy])
        self.y_easy = np.array([i.label for i in self.easy])


def row(data: Data, name: str, x: np.ndarray, x_easy: np.ndarray, fit: Callable[..., RiskModel]) -> str:
    oof = heldout.held_out(x, data.y, data.folds, fit=fit)
    loto = heldout.held_out(x, data.y, data.tasks, score_groups=list(ev.QA_TASKS), fit=fit)
    cells = []
    for task in ev.TASKS:
        index = data.tasks == task
        labels = data.y[index].astype(bool)
        a = ev.fmt(ev.auroc(oof.raw[index], labels))
        cells.append(a if task == "loops" else f"{a} / {ev.fmt(ev.auroc(loto.raw[index], labels))}")
    raw, rate = heldout.score(fit(x, data.y), x_easy)
    correct = heldout.HeldOut(raw, rate).at(0.2)[~data.y_easy]
    cells.append(f"{np.median(correct):.3f} / {100 * np.mean(correct > 0.7):.1f}%")
    return f"| {name} | " + " | ".join(cells) + " |"


HEADER = (
    "| variant | loops | capital | element_symbol | arithmetic | easy: median correct / high band |\n"
    "|---|---|---|---|---|---|"
)


def with_column(data: Data, values: np.ndarray, easy_values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x, x_easy = data.x.copy(), data.x_easy.copy()
    x[:, SPARE], x_easy[:, SPARE] = values, easy_values
    return x, x_easy


def token_classes() -> dict[str, np.ndarray]:
    """Per vocabulary id: digit tokens, capitalised-word tokens (read from SmolLM2's tokenizer)."""
    tokenizer = ev._tokenizer()
    vocab = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    digit = np.array([any(c.isdigit() for c in t) for t in vocab])
    capital = np.array([t.lstrip("Ġ▁")[:1].isupper() for t in vocab])
    return {"digit": digit, "capitalised": capital, "digit or capitalised": digit | capital}


def class_surprisal(item: ev.Item, members: np.ndarray, stat: str) -> float:
    """Mean or max surprisal over the generated tokens of a class that are not in the prompt."""
    seen = set(ev.prompt_tokens(item))
    surprisal = item.series["surprisal"]
    values = [
        surprisal[k]
        for k, token in enumerate(item.tokens[: len(surprisal)])
        if members[token] and token not in seen and math.isfinite(surprisal[k])
    ]
    if not values:
        return math.nan
    return float(np.mean(values) if stat == "mean" else np.max(values))


def truncated_to_long() -> Callable[..., RiskModel]:
    """A gate that sends outputs cut by the token limit to the long-output regime, however short
    (the shipped split and ridge strengths otherwise: ``fit_risk_model``'s defaults)."""
    tokens = RISK_FEATURES.index("output_tokens_log")
    limit = RISK_FEATURES.index("hit_token_limit")
    defaults = {k: p.default for k, p in inspect.signature(fitting.fit_risk_model).parameters.items()}
    split = int(defaults["split_output_tokens"])

    class Gated(RiskModel):
        def part(self, features: np.ndarray) -> fitting.LogisticPart:
            short = math.expm1(features[tokens]) <= self.split_output_tokens + 0.5 and features[limit] < 0.5
            return self.short if short else self.long

    def fit(x: np.ndarray, y: np.ndarray) -> RiskModel:
        base = x[:, :WIDTH]
        short = (np.expm1(base[:, tokens]) <= split + 0.5) & (base[:, limit] < 0.5)
        return Gated(
            split,
            fitting._fit_part(base[short], y[short], defaults["l2_short"], DEFAULT_RISK_FEATURES),
            fitting._fit_part(base[~short], y[~short], defaults["l2_long"], DEFAULT_RISK_FEATURES),
        )

    return fit


def augmented(data: Data, budgets: tuple[int, ...]) -> str:
    """Train also on the loop prompts' outputs cut at ``budgets`` (open-ended replies cut short,
    labelled again): out-of-fold / leave-one-task-out AUROC, and the median risk (default rate,
    out-of-fold) of the non-loop outputs cut at 32 tokens."""
    cut = [c for b in ev.BUDGETS for i in data.dev if i.task == "loops" for c in [ev.truncated(i, b)] if c]
    x_cut = np.stack([c.features for c in cut])
    y_cut = np.array([c.label for c in cut], dtype=float)
    fold_cut = np.array([c.fold for c in cut])
    trained = np.array([len(c.tokens) in budgets for c in cut])
    oof = np.full(len(data.y), np.nan)
    cut_scores = np.full(len(cut), np.nan)
    for fold in range(ev.FOLDS):
        train, extra = data.folds != fold, trained & (fold_cut != fold)
        model = heldout.fit(
            np.vstack([data.x[train], x_cut[extra]]), np.concatenate([data.y[train], y_cut[extra]])
        )
        test = data.folds == fold
        oof[test] = heldout.score(model, data.x[test])[0]
        cut_scores[fold_cut == fold] = np.asarray(
            model.predict(heldout.scored_rows(model, x_cut[fold_cut == fold]), 0.2)
        )
    cells = []
    for task in ev.TASKS:
        index = data.tasks == task
        labels = data.y[index].astype(bool)
        cell = ev.fmt(ev.auroc(oof[index], labels))
        if task != "loops":
            train = data.tasks != task
            model = heldout.fit(
                np.vstack([data.x[train], x_cut[trained]]), np.concatenate([data.y[train], y_cut[trained]])
            )
            cell += f" / {ev.fmt(ev.auroc(heldout.score(model, data.x[index])[0], labels))}"
        cells.append(cell)
    at_32 = np.array([len(c.tokens) == 32 for c in cut]) & (y_cut == 0)
    cells.append(f"{np.median(cut_scores[at_32]):.2f}")
    name = (
        f"trained also on loop prompts cut at {', '.join(map(str, budgets))} tokens" if budgets else "shipped"
    )
    return f"| {name} | " + " | ".join(cells) + " |"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--cache", default=str(ROOT / "eval" / "cache"))
    args = parser.parse_args(argv)
    data = Data(Path(args.cache))
    shipped = heldout.fit
    print("### Pipeline variants\n\n" + HEADER)
    print(row(data, "shipped", data.x, data.x_easy, shipped))
    for l2 in (3.0, 30.0, 100.0):
        fit = functools.partial(fitting.fit_risk_model, l2_short=l2)
        print(row(data, f"short-answer ridge {l2:g} (shipped: 10)", data.x, data.x_easy, fit))
    print(row(data, "outputs cut by the token limit → long regime", data.x, data.x_easy, truncated_to_long()))
    cut = data.x[:, RISK_FEATURES.index("hit_token_limit")] > 0.5
    shares = []
    for task in ev.QA_TASKS:
        mine = data.tasks == task
        if (mine & cut).any():
            shares.append(
                f"{task} {100 * data.y[mine & cut].mean():.0f}% of {int((mine & cut).sum())} cut vs "
                f"{100 * data.y[mine & ~cut].mean():.0f}% of the rest"
            )
    print("\nWrong answers among outputs cut by the token limit: " + "; ".join(shares) + ".")
    print(
        "\n### Training on open-ended replies cut short\n\n"
        "| variant | loops | capital | element_symbol | arithmetic | non-loops cut at 32: median risk |\n"
        "|---|---|---|---|---|---|"
    )
    for budgets in ((), (64, 96), (32, 48, 64, 96)):
        print(augmented(data, budgets))
    print("\n### Surprisal over token classes, added to the shipped features\n\n" + HEADER)
    for name, members in token_classes().items():
        for stat in ("mean", "max"):
            values = np.array([class_surprisal(i, members, stat) for i in data.dev])
            easy = np.array([class_surprisal(i, members, stat) for i in data.easy])
            x, x_easy = with_column(data, values, easy)
            fit = functools.partial(heldout.fit, use=(*DEFAULT_RISK_FEATURES, "state_spread"))
            print(row(data, f"{stat} surprisal of new {name} tokens", x, x_easy, fit))
    print("\n### The state probe alone, by what it reads (AUROC of its cross-fitted score)\n")
    print("| probe input | loops | capital | element_symbol | arithmetic |\n|---|---|---|---|---|")
    inputs: dict[str, Callable[[np.ndarray, int], np.ndarray]] = {
        "mean of all steps (shipped input)": lambda p, k: p.mean(axis=0),
        "prefill step (the prompt's last position)": lambda p, k: p[0],
        "last step": lambda p, k: p[-1],
        "first token not in the prompt": lambda p, k: p[k],
        "mean from the first new token on": lambda p, k: p[k:].mean(axis=0),
    }
    first_new = [
        next((k for k, t in enumerate(i.tokens) if t not in set(ev.prompt_tokens(i))), 0) for i in data.dev
    ]
    for name, read in inputs.items():
        means = np.stack(
            [
                read(i.projection, min(k, len(i.projection) - 1))
                for i, k in zip(data.dev, first_new, strict=True)
            ]
        )
        cells = []
        for groups, held in ((data.folds, None), (data.tasks, list(ev.QA_TASKS))):
            scores = np.full(len(data.y), np.nan)
            for group in held or np.unique(groups):
                test = groups == group
                probe = fitting.fit_probe(means[~test], data.y[~test], 1, 1)
                if probe is not None:
                    scores[test] = probe.logit(means[test])
            cells.append(scores)
        line = []
        for task in ev.TASKS:
            index = data.tasks == task
            labels = data.y[index].astype(bool)
            a = ev.fmt(ev.auroc(cells[0][index], labels))
            line.append(a if task == "loops" else f"{a} / {ev.fmt(ev.auroc(cells[1][index], labels))}")
        print(f"| {name} | " + " | ".join(line) + " |")
    spread = np.array([state_spread(i.projection) for i in data.dev])
    line = [
        ev.fmt(ev.auroc(-spread[data.tasks == t], data.y[data.tasks == t].astype(bool))) for t in ev.TASKS
    ]
    print("| (`state_spread` alone, low = failed; no fitting) | " + " | ".join(line) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
