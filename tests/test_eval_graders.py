"""The evaluation's graders (shared/eval/README.md): a label is only as good as its grader."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eval import graders  # noqa: E402


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
