"""Health-aware decoding: a stopping criterion that ends the sequences a chosen signal fired in."""

from __future__ import annotations

from typing import Any

import torch
from transformers.generation.stopping_criteria import StoppingCriteria, StoppingCriteriaList

from ..generation import positional_index
from .session import CaptureSession


class HealthStoppingCriteria(StoppingCriteria):
    """Stops a sequence as soon as one of the session's ``stop_on`` signals fires in it.

    It reads the newest token of every row (which also feeds the streaming detectors without
    waiting for the next forward), asks the session which rows to stop, and returns one bool per
    row, like every ``StoppingCriteria``. It never raises: a failure inside CoreVital stops nothing.

    Example (what the instrumentation does for ``stop_on=repetition_loop``)::

        criteria = with_health_criterion(user_criteria, session)
        model.generate(..., stopping_criteria=criteria)
    """

    def __init__(self, session: CaptureSession) -> None:
        if not session.stop_on:
            raise ValueError("the session has no stop_on signals: nothing would ever be stopped")
        self.session = session

    def __call__(
        self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any
    ) -> torch.BoolTensor:
        return self.session.stop_mask(input_ids)  # type: ignore[return-value]


def with_health_criterion(user_criteria: Any, session: CaptureSession) -> StoppingCriteriaList:
    """A new list with the user's own criteria first, then CoreVital's (the user's list is untouched)."""
    merged = StoppingCriteriaList(list(user_criteria) if user_criteria is not None else [])
    merged.append(HealthStoppingCriteria(session))
    return merged


def inject_criterion(
    args: tuple[Any, ...], kwargs: dict[str, Any], session: CaptureSession
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """``generate``'s arguments with CoreVital's criterion added to the user's stopping criteria,
    wherever the user passed them (positionally or by keyword); the user's objects are not changed."""
    index = positional_index("stopping_criteria")
    if 0 <= index < len(args):
        return (*args[:index], with_health_criterion(args[index], session), *args[index + 1 :]), kwargs
    return args, {
        **kwargs,
        "stopping_criteria": with_health_criterion(kwargs.get("stopping_criteria"), session),
    }
