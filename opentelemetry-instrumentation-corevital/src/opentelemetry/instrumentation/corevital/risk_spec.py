"""The fitted risk model as a model profile stores it (validated user input; docs/evaluation.md)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from .profile_files import ProfileModel
from .signals.representation import probe_problem
from .signals.risk import RISK_FEATURES

__all__ = ["ProbeSpec", "RiskModelSpec", "RiskPart"]

_FEATURE = Literal[RISK_FEATURES]  # type: ignore[valid-type]


class RiskPart(ProfileModel):
    """One logistic regression of the risk model: ``σ(w · (x − mean) / scale + b)``."""

    features: list[_FEATURE] = Field(min_length=1)
    mean: list[float]
    scale: list[float]
    weights: list[float]
    intercept: float
    training_failure_rate: float | None = Field(
        default=None,
        gt=0,
        lt=1,
        description="Share of failures among the generations this part was fitted on (the prior its "
        "intercept carries; the score is shifted from it to the expected failure rate). None: no shift",
    )


class ProbeSpec(ProfileModel):
    """The linear probe on the mean projected middle-layer state (docs/signals.md, "Representation
    features"), for models of one shape."""

    hidden_size: int = Field(ge=1, description="Hidden size of the model it was fitted on")
    layers: int = Field(ge=1, description="Decoder layers of the model it was fitted on")
    mean: list[float] = Field(min_length=1)
    scale: list[float] = Field(min_length=1)
    weights: list[float] = Field(min_length=1)
    intercept: float
    seed: int = Field(description="Seed of the random projection it was fitted on")
    layer: int = Field(ge=0, description="The projected decoder layer it was fitted on")

    @model_validator(mode="after")
    def _consistent(self) -> ProbeSpec:
        problem = probe_problem(self.mean, self.scale, self.weights, self.intercept)
        if problem:
            raise ValueError(problem)
        return self


class RiskModelSpec(ProfileModel):
    """The fitted risk model as stored in a profile (docs/evaluation.md)."""

    split_output_tokens: int = Field(ge=1)
    short: RiskPart
    long: RiskPart
    probe: ProbeSpec | None = Field(
        default=None, description="Linear probe on the middle layer's states; none: the feature is unused"
    )
