"""The healthy baseline as stored in a model profile (validated with pydantic), and the model shape
a baseline applies to (docs/signals.md, "Baseline").

``signals.baseline`` holds the baseline itself (a plain dataclass) and builds it; this module only
validates what a profile file says and converts it.
"""

from __future__ import annotations

import contextlib
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .signals.baseline import Baseline, LayerRange


class LayerRangeSpec(BaseModel):
    """One per-layer statistic of healthy generations: robust centre and scale per layer, and the
    largest |z| healthy generations reach at the budget (docs/signals.md, "Baseline")."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    center: list[float] = Field(min_length=1, description="Per layer: the median over healthy generations")
    scale: list[float] = Field(min_length=1, description="Per layer: 1.4826 × the median absolute deviation")
    limit: float = Field(gt=0, description="A layer whose |z| exceeds this is out of its healthy range")

    @model_validator(mode="after")
    def _consistent(self) -> LayerRangeSpec:
        if len(self.center) != len(self.scale):
            raise ValueError("center and scale need one value per layer each")
        if min(self.scale) <= 0:
            raise ValueError("every scale must be positive")
        return self


class BaselineSpec(BaseModel):
    """A model's own normal, for models of one shape: built by ``corevital calibrate --prompts``
    from healthy generations (docs/signals.md, "Baseline")."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    hidden_size: int = Field(ge=1, description="Hidden size of the model it was built on")
    layers: int = Field(ge=1, description="Decoder layers of the model it was built on")
    vocab_size: int = Field(ge=1, description="Vocabulary size of the model it was built on")
    runs: int = Field(ge=1, description="Healthy generations it was built from")
    budget: float = Field(
        gt=0,
        lt=1,
        description="False-alarm budget: each threshold fires on at most this share of healthy generations",
    )
    high_entropy_threshold_bits: float = Field(
        gt=0, description="Entropy threshold of the high_entropy flag, at the budget"
    )
    l2_explosion_multiplier: float = Field(
        gt=1, description="Multiplier of the mid-layer anomaly, at the budget"
    )
    level: LayerRangeSpec = Field(
        description="Per-layer L2-norm level (median log L2 norm over the decoding steps)"
    )
    built_by: str = Field(default="", description="How it was built (a command), for the record")

    @model_validator(mode="after")
    def _shape(self) -> BaselineSpec:
        if len(self.level.center) != self.layers:
            raise ValueError(f"level needs one value per layer ({self.layers})")
        return self

    def to_baseline(self) -> Baseline:
        def layer_range(spec: LayerRangeSpec) -> LayerRange:
            return LayerRange(tuple(spec.center), tuple(spec.scale), spec.limit)

        return Baseline(
            self.hidden_size, self.layers, self.vocab_size, self.runs, self.budget,
            self.high_entropy_threshold_bits, self.l2_explosion_multiplier,
            layer_range(self.level),
        )  # fmt: skip


def baseline_spec(baseline: Baseline, built_by: str = "") -> dict[str, Any]:
    """A baseline as it is written into a profile file (rounded)."""

    def layer_range(r: LayerRange) -> dict[str, Any]:
        return {
            "center": [round(v, 6) for v in r.center],
            "scale": [round(v, 6) for v in r.scale],
            "limit": round(r.limit, 6),
        }

    data = {
        "hidden_size": baseline.hidden_size, "layers": baseline.layers, "vocab_size": baseline.vocab_size,
        "runs": baseline.runs, "budget": baseline.budget,
        "high_entropy_threshold_bits": round(baseline.high_entropy_threshold_bits, 6),
        "l2_explosion_multiplier": round(baseline.l2_explosion_multiplier, 6),
        "level": layer_range(baseline.level),
    }  # fmt: skip
    if built_by:
        data["built_by"] = built_by
    return BaselineSpec.model_validate(data).model_dump(exclude_defaults=True)


def merge_baselines(inherited: list[Any], own: list[Any]) -> list[Any]:
    """``own`` baselines, then the inherited ones for the model shapes ``own`` does not cover."""

    def shape(b: Any) -> tuple[Any, ...]:
        get = b.get if isinstance(b, dict) else lambda k: getattr(b, k, None)
        return (get("hidden_size"), get("layers"), get("vocab_size"))

    covered = {shape(b) for b in own}
    return [*own, *(b for b in inherited if shape(b) not in covered)]


def model_shape(model: Any) -> tuple[int, int, int] | None:
    """``(hidden size, decoder layers, vocabulary size)`` from the model's (text) config, ``None``
    when one is missing."""
    config = getattr(model, "config", None)
    get_text_config = getattr(config, "get_text_config", None)
    if callable(get_text_config):
        with contextlib.suppress(Exception):  # an unusual config: read the top level
            config = get_text_config()
    values = [getattr(config, name, None) for name in ("hidden_size", "num_hidden_layers", "vocab_size")]
    if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values):
        return None
    return int(values[0]), int(values[1]), int(values[2])  # type: ignore[arg-type]
