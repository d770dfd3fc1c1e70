"""Labels without a judge model, as ``eval/README.md`` defines them.

Each grader returns True when the generation *failed* (the label the risk score should predict).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

_NUMBER = r"-?\d[\d,]*(?:\.\d+)?"


def fold(text: str) -> str:
    """Accent-folded, lower-cased text: ``"Bogotá"`` -> ``"bogota"``."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).lower()


def capital_wrong(answer: str, gold: str) -> bool:
    """Wrong unless the accent-folded, lower-cased gold city is a substring of the answer."""
    return fold(gold.strip()) not in fold(answer)


def element_symbol_wrong(answer: str, gold: str) -> bool:
    """Wrong unless the symbol appears as a whole token, case-sensitively (``Fe`` in ``"Fe."`` or
    ``"Fe2O3"``, not in ``"Feather"`` or ``"FE"``)."""
    return gold.strip() not in re.findall(r"[A-Z][a-z]*", answer)


def _number(text: str) -> float | None:
    try:
        return float(text.replace(",", ""))
    except ValueError:
        return None


def arithmetic_answer(answer: str, operands: Sequence[float]) -> float | None:
    """The number after ``=`` or ``is`` on the first line; else the first number of the answer that
    is not an operand of the question."""
    first_line = answer.strip().splitlines()[0] if answer.strip() else ""
    match = re.search(rf"(?:=|\bis\b)\s*\**\s*({_NUMBER})", first_line)
    if match:
        return _number(match.group(1))
    for token in re.findall(_NUMBER, answer):
        value = _number(token)
        if value is not None and value not in operands:
            return value
    return None


def arithmetic_wrong(answer: str, gold: str, question: str) -> bool:
    """Wrong unless the extracted number equals the gold number."""
    operands = [v for v in (_number(t) for t in re.findall(_NUMBER, question)) if v is not None]
    value = arithmetic_answer(answer, operands)
    return value is None or value != _number(gold)


def repetition(tokens: Sequence[int], n: int = 4) -> float:
    """1 − distinct n-grams / all n-grams over token ids (0 when there are none)."""
    grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    return 1.0 - len(set(grams)) / len(grams) if grams else 0.0


def loop(tokens: Sequence[int], threshold: float = 0.3) -> bool:
    """A loop: the repetition of the second half of the output is at least ``threshold``."""
    return repetition(list(tokens)[len(tokens) // 2 :]) >= threshold


TASK_OF = {"capital": "capital", "element_symbol": "element_symbol", "addition": "arithmetic",
           "multiplication": "arithmetic", "easy_capital": "easy", "easy_sum": "easy",
           "easy_symbol": "easy", "inject": "inject"}  # fmt: skip

#: The easy panel's row tasks (``easy-dev.jsonl``) and the grader each one shares with a dev task.
EASY_GRADER = {"easy_capital": "capital", "easy_sum": "addition", "easy_symbol": "element_symbol"}


def qa_wrong(row: dict, answer: str) -> bool:
    """Grade one QA row of ``qa-dev.jsonl`` or ``easy-dev.jsonl`` by its ``task``."""
    task = EASY_GRADER.get(row["task"], row["task"])
    if task == "capital":
        return capital_wrong(answer, row["gold"])
    if task == "element_symbol":
        return element_symbol_wrong(answer, row["gold"])
    if task in ("addition", "multiplication"):
        return arithmetic_wrong(answer, row["gold"], row["prompt"])
    raise ValueError(f"unknown task {task!r}")
