"""Calibration profile files (``corevital calibrate --prompts``): their schema, validated with
pydantic, and their loading — read once per version of the file (:mod:`.profile_files`), never
raising: a file that cannot be used gives one warning and no calibration."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Literal

from pydantic import ConfigDict, Field, ValidationError, model_validator

from .file_cache import FileCache
from .profile_files import (
    MAX_CALIBRATION_BYTES,
    ProfileModel,
    Unusable,
    clip,
    listed,
    parse_json,
    validation_problem,
)
from .signals.calibration import PROFILE_VERSION as CALIBRATION_VERSION
from .signals.calibration import CalibrationProfile, Distribution

logger = logging.getLogger(__name__)


class DistributionSpec(ProfileModel):
    """One metric's values over healthy runs: count, mean, standard deviation and 5 quantiles.

    With ``count`` 0 the metric had no value in the runs and its numbers say nothing (``corevital
    calibrate`` writes them as NaN); otherwise every number must be finite.
    """

    model_config = ConfigDict(allow_inf_nan=True)

    count: int = Field(ge=0)
    mean: float
    std: float = Field(ge=0)
    quantiles: tuple[float, float, float, float, float]

    @model_validator(mode="after")
    def _finite(self) -> DistributionSpec:
        if self.count and not all(math.isfinite(v) for v in (self.mean, self.std, *self.quantiles)):
            raise ValueError("a distribution with a count must hold finite numbers")
        return self


class CalibrationFile(ProfileModel):
    """A calibration profile file (``corevital calibrate --prompts``)."""

    version: Literal[1]
    model: str
    runs: int = Field(ge=0)
    metrics: dict[str, DistributionSpec] = Field(default_factory=dict)
    layer_metrics: dict[str, list[DistributionSpec]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _has_data(self) -> CalibrationFile:
        counts = [d.count for d in self.metrics.values()]
        counts += [d.count for layers in self.layer_metrics.values() for d in layers]
        if not any(counts):
            raise ValueError("no metric has a value (every count is 0): it would score every run as healthy")
        return self


def _read_calibration(path: Path, text: str | Unusable) -> CalibrationProfile | None:
    """The calibration profile at ``path`` (its ``text``, or why it cannot be read), or ``None``
    with one warning."""
    try:
        if isinstance(text, Unusable):
            raise text
        data = parse_json(text)
        if isinstance(data, dict):  # the top level's problems at once, however many keys there are
            fields = CalibrationFile.model_fields
            missing = [name for name, field in fields.items() if field.is_required() and name not in data]
            if missing:
                raise Unusable(f"it is not a calibration profile (no {', '.join(missing)})")
            unknown = [key for key in data if key not in fields]
            if unknown:
                raise Unusable(f"unknown key{'s' if len(unknown) > 1 else ''} {listed(unknown)}")
        spec = CalibrationFile.model_validate(data)
    except (Unusable, ValidationError, ValueError) as exc:
        reason = validation_problem(exc) if isinstance(exc, ValidationError) else clip(str(exc), 200)
        logger.warning(
            "CoreVital: ignoring the calibration profile %s: %s. Spans carry no calibration divergence.",
            path, reason,
        )  # fmt: skip
        return None

    def distribution(d: DistributionSpec) -> Distribution:
        return Distribution(d.count, d.mean, d.std, tuple(d.quantiles))

    return CalibrationProfile(
        spec.model,
        spec.runs,
        {name: distribution(d) for name, d in spec.metrics.items()},
        {name: [distribution(d) for d in layers] for name, layers in spec.layer_metrics.items()},
        version=CALIBRATION_VERSION,
    )


_CALIBRATIONS: FileCache[CalibrationProfile | None] = FileCache(_read_calibration, MAX_CALIBRATION_BYTES)


def clear_cache() -> None:
    """Forget every calibration file read (tests; a changed file is read again without this)."""
    _CALIBRATIONS.clear()


def load_calibration(path: str | Path) -> CalibrationProfile | None:
    """The calibration profile at ``path``; ``None`` (no calibration) with one warning when the file
    cannot be read or is not a valid profile. Read once, and again only when the file changes."""
    try:
        return _CALIBRATIONS.get(path)
    except Exception as exc:  # never into instrument()
        logger.warning("CoreVital: ignoring the calibration profile %s: %s.", path, clip(repr(exc)))
        return None
