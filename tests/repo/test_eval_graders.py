"""The evaluation's graders (eval/README.md): a label is only as good as its grader."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from eval import graders


@pytest.mark.parametrize(
    ("answer", "gold", "wrong"),
    [
        ("The capital of Colombia is Bogotá.", "Bogotá", False),
        ("bogota", "Bogotá", False),
        ("BOGOTA!", "Bogota", False),
        ("Medellín", "Bogotá", True),
        ("", "Paris", True),
    ],
)
def test_capital(answer: str, gold: str, wrong: bool) -> None:
    assert graders.capital_wrong(answer, gold) is wrong


@pytest.mark.parametrize(
    ("answer", "gold", "wrong"),
    [
        ("Fe", "Fe", False),
        ("The symbol for iron is Fe.", "Fe", False),
        ("Fe2O3", "Fe", False),
        ("FE", "Fe", True),
        ("Feather", "Fe", True),
        ("The symbol is H.", "He", True),
        ("He", "He", False),
    ],
)
def test_element_symbol(answer: str, gold: str, wrong: bool) -> None:
    assert graders.element_symbol_wrong(answer, gold) is wrong


@pytest.mark.parametrize(
    ("answer", "gold", "wrong"),
    [
        ("54", "54", False),
        ("26 + 28 = 54", "54", False),
        ("The answer is 54.", "54", False),
        ("The answer is **54**", "54", False),
        ("26 + 28 = 55\nSo 54.", "54", True),  # the first line decides
        ("Adding 26 and 28 gives 54", "54", False),  # no = / is: first non-operand
        ("1,234", "1234", False),
        ("I cannot do that.", "54", True),
    ],
)
def test_arithmetic(answer: str, gold: str, wrong: bool) -> None:
    assert graders.arithmetic_wrong(answer, gold, "What is 26 + 28? Answer with only the number.") is wrong


def test_repetition_and_loop() -> None:
    assert graders.repetition([1, 2, 3, 4, 5]) == 0.0
    assert graders.repetition([7] * 10) == pytest.approx(1 - 1 / 7)
    assert graders.repetition([1, 2]) == 0.0
    assert graders.loop(list(range(50)) + [1, 2, 3] * 20)
    assert not graders.loop(list(range(100)))


def test_qa_dispatch() -> None:
    row = {"task": "multiplication", "prompt": "What is 6 * 7? Answer with only the number.", "gold": "42"}
    assert not graders.qa_wrong(row, "42")
    assert graders.qa_wrong(row, "6")
    with pytest.raises(ValueError):
        graders.qa_wrong({"task": "poetry", "gold": "x"}, "x")


def test_auroc_and_bootstrap() -> None:
    import numpy as np
    from eval import evaluate

    labels = np.array([0, 0, 1, 1], dtype=bool)
    assert evaluate.auroc(np.array([0.1, 0.2, 0.8, 0.9]), labels) == 1.0
    assert evaluate.auroc(np.array([0.9, 0.8, 0.2, 0.1]), labels) == 0.0
    assert evaluate.auroc(np.array([0.5, 0.5, 0.5, 0.5]), labels) == 0.5
    assert np.isnan(evaluate.auroc(np.array([0.1, 0.2]), np.array([True, True])))
    point, low, high = evaluate.auroc_ci(
        np.array([0.1, 0.4, 0.35, 0.8] * 5), np.array([0, 0, 1, 1] * 5, dtype=bool)
    )
    assert low <= point <= high


def test_streaming_detection_bookkeeping() -> None:
    import numpy as np
    from eval import evaluate

    loop_tokens = list(range(20)) + [1, 2, 3, 4] * 10
    item = evaluate.Item("loops", "loops", {"prompt": "x"}, loop_tokens, "", {}, "length", 1.0, label=True)
    item.series = {"hidden.max_similarity": np.full(len(loop_tokens), 0.99)}
    step = evaluate.detect(item, 8, 0.9)
    result = evaluate.Detection()
    result.add(item, step)
    first = evaluate.first_repeated_ngram(loop_tokens, 8)
    assert step == first and result.delays == [0] and result.rate == 1.0
    assert result.saved == result.wasted  # caught at once: every wasted token is saved


def test_the_development_sets_live_in_this_repository() -> None:
    from eval import generate

    root = Path(__file__).resolve().parents[2]
    sizes = {name: len(generate.read_set(path)) for name, path in generate.SETS.items()}
    assert sizes == {"loops": 78, "qa": 299, "easy": 60, "inject": 60}
    assert all(path.resolve().is_relative_to(root) for path in generate.SETS.values())
    assert generate.read_set(generate.SETS["qa"], limit=4)[0]["task"] == "capital"
    # the injection set: 20 easy-panel prompts, each with NaN, +Inf and a scale-up in one middle layer
    easy = {row["prompt"] for row in generate.read_set(generate.SETS["easy"])}
    injected = generate.read_set(generate.SETS["inject"])
    assert {row["prompt"] for row in injected} <= easy
    kinds = [row["inject"]["kind"] for row in injected]
    assert {kind: kinds.count(kind) for kind in set(kinds)} == {"nan": 20, "inf": 20, "scale": 20}
    assert len({generate.item_key(row) for row in injected}) == 60  # the injection is part of the key


@pytest.mark.parametrize(
    ("row", "answer", "wrong"),
    [
        ({"task": "easy_capital", "gold": "Paris", "prompt": "What is the capital of France?"},
         "The capital of France is Paris.", False),
        ({"task": "easy_sum", "gold": "4", "prompt": "What is 2 + 2?"},
         "The answer to this classic math problem is 4.", False),
        ({"task": "easy_sum", "gold": "4", "prompt": "What is 2 + 2?"}, "2 + 2 = 5", True),
        ({"task": "easy_symbol", "gold": "O", "prompt": "What is the chemical symbol for oxygen?"},
         "The chemical symbol for oxygen is O.", False),
        ({"task": "easy_symbol", "gold": "O", "prompt": "What is the chemical symbol for oxygen?"},
         "The chemical symbol for oxygen is Ox.", True),
    ],
)  # fmt: skip
def test_easy_panel_rows_use_the_dev_graders(row: dict, answer: str, wrong: bool) -> None:
    assert graders.qa_wrong(row, answer) is wrong
    assert graders.TASK_OF[row["task"]] == "easy"


def test_easy_panel_file_is_graded_and_well_formed() -> None:
    import json

    path = Path(__file__).resolve().parents[2] / "eval" / "data" / "easy-dev.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    assert len(rows) == 60
    assert {r["task"] for r in rows} == set(graders.EASY_GRADER)
    for row in rows:  # the gold answer itself passes its grader
        assert graders.qa_wrong(row, f"It is {row['gold']}.") is False, row
