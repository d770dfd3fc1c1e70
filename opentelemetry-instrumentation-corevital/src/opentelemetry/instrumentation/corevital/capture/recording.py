"""What one call's capture hands over: plain host data, frozen."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from .. import report as rep
from .layout import StepLayout


@dataclass(frozen=True)
class Steps:
    """The recorded steps of one call, on the host.

    Attributes:
        layout: the columns of ``packed``.
        packed: ``[steps, rows, layout.width]`` float64.
        chosen: ``[steps, rows]`` probability of the token chosen at each step (NaN when unknown).
        projected: ``[steps, rows, PROJECTION_DIMS]`` projected middle-layer states, or ``None``.
    """

    layout: StepLayout
    packed: np.ndarray
    chosen: np.ndarray
    projected: np.ndarray | None = None


@dataclass(frozen=True)
class Recording:
    """What one call's capture recorded, on the host: the hand-over to the read-out.

    Attributes:
        level: the capture level the call ran at (``None``: timing only — an unsampled span).
        steps: the recorded steps (``None`` when none was, or the capture failed).
        step_times_ns: wall-clock time (Unix ns) at the end of each recorded step.
        time_to_first_token: seconds from the start of the call to the end of the prefill forward.
        overhead_seconds: time spent in CoreVital's hooks and stopping criterion during the call.
        unavailable: why a requested level could not be captured, by level name.
        interventions: the rows CoreVital stopped (``stop_on``).
        hidden_size, attention_heads: widths of what was captured (0 when not captured).
        error: the capture's own failure, if any (nothing is read out then).
    """

    level: str | None
    steps: Steps | None = None
    step_times_ns: tuple[int, ...] = ()
    time_to_first_token: float | None = None
    overhead_seconds: float = 0.0
    unavailable: Mapping[str, str] = field(default_factory=dict)
    interventions: Mapping[int, rep.Intervention] = field(default_factory=dict)
    hidden_size: int = 0
    attention_heads: int = 0
    error: BaseException | None = None
