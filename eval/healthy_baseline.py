"""SmolLM2's healthy baseline, built from the healthy development generations, and the profiles the
per-signal table scores each item with — so that no healthy item is judged by thresholds fitted on
itself.

Healthy development generations: the loop set's outputs that do not loop and the QA tasks' correct
answers (the easy panel is never fitted on, as for the risk model). The shipped baseline is built
from all of them (``evaluate.py --write-profile``). In the table, a healthy development item of fold
*k* is judged by a baseline built from the other folds (cross-fitting), and a loop-set item by the
repetition settings chosen on the other folds; every other item (the easy panel, the failures) by
the baseline built from all healthy development items, which never saw it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from eval import replay
from opentelemetry.instrumentation.corevital.profiles import ModelProfile
from opentelemetry.instrumentation.corevital.signals.baseline import Baseline, HealthyRun, build_baseline

#: The false-alarm budget of the shipped baseline: each threshold read from it fires on at most 1% of
#: the healthy generations it was built from (with 191 of them: above every one), leaving room under
#: the 5% target on new prompts. At 2% the out-of-fold rates were 2% per signal, but 6% of new
#: healthy generations had a flag or a blamed layer (docs/evaluation.md, "Choosing the budget").
BUDGET = 0.01
#: How the shipped baseline was built, as the profile records it.
BUILT_BY = (
    "python eval/evaluate.py --write-profile: the loop set's outputs without a loop and the QA tasks' "
    "correct answers (eval/README.md)"
)
QA_TASKS = ("capital", "element_symbol", "arithmetic")


def healthy_dev(items: Sequence[Any]) -> list[Any]:
    """The healthy development generations that carry their capture arrays."""
    return [
        i for i in items
        if i.task in ("loops", *QA_TASKS) and not i.label and i.arrays is not None and i.shape is not None
    ]  # fmt: skip


def build(items: Sequence[Any], budget: float = BUDGET) -> Baseline:
    """The baseline of the items' model from these (healthy) items."""
    shape = items[0].shape
    runs = [HealthyRun(i.arrays.series["entropy"], i.arrays.hidden.get("l2_norm")) for i in items]
    return build_baseline(runs, shape.hidden_size, shape.layers, shape.vocab_size, budget)


def profiles(
    items: Sequence[Any], folds: int, detectors: Sequence[tuple[int, float]], budget: float = BUDGET
) -> Callable[[Any], ModelProfile]:
    """``profile_of(item)``: the shipped profile for the item's model with the baseline (and, for
    the loop set, the repetition settings) of a model that never saw the item (module docstring).
    ``detectors[k]``: the repetition settings chosen without fold ``k``."""
    healthy = healthy_dev(items)
    if not healthy:
        return lambda item: replay.shipped_profile(item.shape)
    everything = build(healthy, budget)
    by_fold = {fold: build([i for i in healthy if i.fold != fold], budget) for fold in range(folds)}
    healthy_keys = {id(i) for i in healthy}

    def profile_of(item: Any) -> ModelProfile:
        profile = replay.shipped_profile(item.shape)
        if item.task == "loops" and detectors:
            ngram, threshold = detectors[item.fold]
            profile = profile.model_copy(
                update={"repetition_ngram": ngram, "repetition_similarity_threshold": threshold}
            )
        return profile.with_baseline(by_fold[item.fold] if id(item) in healthy_keys else everything)

    return profile_of
