"""Profile files users can edit, validated with pydantic: model profiles (YAML) and calibration
profiles (JSON).

A model profile holds the thresholds that depend on the model (docs/signals.md, "Model profiles")
and the fitted risk model; the shipped ones live in ``configs/model_profiles/`` and inside the wheel.
A calibration profile (``corevital calibrate --prompts``) describes a model's healthy runs.

Bad input never raises into the user's process: a file that cannot be read or parsed, a key that is
not known, a value of the wrong type or out of range each give one warning naming the file, the
field, the bad value and the fallback used — the shipped profile's value (model profiles), or no
calibration (calibration profiles). JSON Schemas of both files are generated into
``configs/schema/`` (``python configs/generate_schemas.py``) so that editors can validate them.
"""

from __future__ import annotations

import functools
import json
import logging
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from .baseline_spec import BaselineSpec, merge_baselines, model_shape
from .signals.baseline import Baseline
from .signals.calibration import PROFILE_VERSION as CALIBRATION_VERSION
from .signals.calibration import CalibrationProfile, Distribution
from .signals.representation import probe_problem
from .signals.risk import RISK_FEATURES, RiskModel

logger = logging.getLogger(__name__)

DEFAULT_PROFILE = "default"

_FEATURE = Literal[RISK_FEATURES]  # type: ignore[valid-type]


class RiskPart(BaseModel):
    """One logistic regression of the risk model: ``σ(w · (x − mean) / scale + b)``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

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


class ProbeSpec(BaseModel):
    """The linear probe on the mean projected middle-layer state (docs/signals.md, "Representation
    features"), for models of one shape."""

    model_config = ConfigDict(extra="forbid", frozen=True)

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


class RiskModelSpec(BaseModel):
    """The fitted risk model as stored in a profile (docs/evaluation.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    split_output_tokens: int = Field(ge=1)
    short: RiskPart
    long: RiskPart
    probe: ProbeSpec | None = Field(
        default=None, description="Linear probe on the middle layer's states; none: the feature is unused"
    )


class ModelProfile(BaseModel):
    """Thresholds for one family of models (docs/signals.md, "Model profiles")."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = DEFAULT_PROFILE
    version: Literal[1] = 1
    architectures: tuple[str, ...] = Field(default=(), description="Model class names, e.g. LlamaForCausalLM")
    l2_explosion_multiplier: float = Field(
        default=8.0,
        gt=1,
        description="A middle layer's L2 norm above this × the early layers' median is anomalous",
    )
    high_entropy_threshold_bits: float = Field(
        default=4.0, gt=0, description="A step above this entropy is uncertain"
    )
    focused_head_concentration_threshold: float = Field(
        default=0.9, gt=0, le=1, description="A head whose largest attention weight is above this is focused"
    )
    collapsed_head_entropy_threshold: float = Field(
        default=0.03,
        ge=0,
        lt=1,
        description="A head whose normalised attention entropy is below this is collapsed",
    )
    repetition_ngram: int = Field(
        default=8, ge=2, le=64, description="Tokens in the repeated n-gram of a loop"
    )
    repetition_similarity_threshold: float = Field(
        default=0.0,
        ge=-1,
        le=1,
        description="Cosine of the last-layer state to an earlier one that confirms a loop",
    )
    mid_layer_min_run: int = Field(
        default=3, ge=1, description="Consecutive anomalous steps that make a mid-layer anomaly"
    )
    mid_layer_min_share: float = Field(
        default=0.25, gt=0, le=1, description="Share of anomalous steps that makes a mid-layer anomaly"
    )
    basin_score_baseline: float = Field(
        default=0.25, ge=0, description="The model's typical attention basin score"
    )
    early_warning: bool = Field(
        default=False,
        description="Run the early-warning trend detectors while generating (off: no measured benefit, "
        "docs/signals.md)",
    )
    risk_model: RiskModelSpec | None = Field(
        default=None, description="The fitted risk model; none: the heuristic"
    )
    baselines: list[BaselineSpec] = Field(
        default_factory=list,
        description="Healthy baselines, one per model shape (hidden size, layers, vocabulary); the one of "
        'the model\'s shape replaces the fixed thresholds above (docs/signals.md, "Baseline")',
    )

    _risk: RiskModel | None = PrivateAttr(default=None)
    _baseline: Baseline | None = PrivateAttr(default=None)
    _by_shape: dict[tuple[int, int, int], ModelProfile] = PrivateAttr(default_factory=dict)

    def model_post_init(self, context: Any) -> None:
        if self.risk_model is not None:
            self._risk = RiskModel.from_mapping(self.risk_model.model_dump())

    @property
    def risk(self) -> RiskModel | None:
        """The fitted risk model, ``None`` for the heuristic score."""
        return self._risk

    @property
    def baseline(self) -> Baseline | None:
        """The healthy baseline this profile judges with, ``None`` when none applies (a profile
        only gets one from :meth:`for_shape`)."""
        return self._baseline

    def for_shape(self, hidden_size: int, layers: int, vocab_size: int) -> ModelProfile:
        """This profile for a model of that shape: when one of its ``baselines`` was built on such a
        model, a copy that judges with it (its thresholds replace the fixed ones); else itself."""
        key = (hidden_size, layers, vocab_size)
        if key not in self._by_shape:
            spec = next((b for b in self.baselines if (b.hidden_size, b.layers, b.vocab_size) == key), None)
            self._by_shape[key] = self if spec is None else self.with_baseline(spec.to_baseline())
        return self._by_shape[key]

    def with_baseline(self, baseline: Baseline) -> ModelProfile:
        """A copy that judges with ``baseline``: its entropy threshold and mid-layer multiplier
        replace this profile's."""
        copy = self.model_copy(
            update={
                "high_entropy_threshold_bits": baseline.high_entropy_threshold_bits,
                "l2_explosion_multiplier": baseline.l2_explosion_multiplier,
            }
        )
        copy._baseline = baseline
        copy._by_shape = {}
        return copy


# -- model profiles -------------------------------------------------------------------------------
def _shipped_directory() -> Path | None:
    """The shipped profiles: inside the wheel, or ``configs/`` in a source checkout."""
    packaged = Path(str(resources.files(__package__).joinpath("profiles")))
    source = Path(__file__).resolve().parents[5] / "configs" / "model_profiles"
    return next((d for d in (packaged, source) if d.is_dir()), None)


def _read_yaml(path: Path) -> dict[str, Any] | None:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        logger.warning(
            "CoreVital: ignoring model profile %s: it cannot be read (%s).", path, _first_line(exc)
        )
        return None
    if data is None:
        return {}
    if not isinstance(data, dict):
        logger.warning(
            "CoreVital: ignoring model profile %s: it must be a mapping of settings, not a %s.",
            path, type(data).__name__,
        )  # fmt: skip
        return None
    return data


def _validated(path: Path, own: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    """``base`` updated with every valid field of ``own``; one warning per field left out."""
    values = dict(base)
    for key, value in own.items():
        if key not in ModelProfile.model_fields:
            logger.warning("CoreVital: model profile %s: unknown key %r ignored.", path, key)
            continue
        if key == "baselines" and isinstance(value, list):
            value = merge_baselines(values.get(key, []), value)
        try:
            ModelProfile.model_validate({**values, key: value})
        except ValidationError as exc:
            fallback = values.get(key, ModelProfile.model_fields[key].default)
            logger.warning(
                "CoreVital: model profile %s: invalid %s = %r (%s); using %r.",
                path, key, value, _reason(exc), fallback,
            )  # fmt: skip
            continue
        except ValueError as exc:  # raised while building the risk model
            logger.warning(
                "CoreVital: model profile %s: invalid %s (%s); using the shipped one.", path, key, exc
            )
            continue
        values[key] = value
    return values


@functools.lru_cache(maxsize=8)
def load_profiles(user_dir: str | None = None) -> dict[str, ModelProfile]:
    """Every profile by name.

    A shipped profile starts from the shipped ``default`` profile's values (the fitted risk model
    among them) and overrides what it sets; a profile in ``user_dir`` overrides, field by field,
    the shipped profile of the same name (or adds a new one on top of the default).
    """
    shipped = _shipped_directory()
    raw: dict[str, dict[str, Any]] = {}
    base: dict[str, Any] = {}
    if shipped is not None and (shipped / f"{DEFAULT_PROFILE}.yaml").exists():
        base = _validated(
            shipped / f"{DEFAULT_PROFILE}.yaml", _read_yaml(shipped / f"{DEFAULT_PROFILE}.yaml") or {}, {}
        )
    sources = [(path, False) for path in sorted(shipped.glob("*.yaml"))] if shipped else []
    if user_dir:
        sources += [(path, True) for path in sorted(Path(user_dir).glob("*.yaml"))]
    for path, from_user in sources:
        if not from_user and path.stem == DEFAULT_PROFILE:
            raw[DEFAULT_PROFILE] = {**base, "name": DEFAULT_PROFILE}
            continue
        own = _read_yaml(path)
        if own is None:
            continue
        name = str(own.get("name", path.stem))
        start = raw.get(name, {**base, "architectures": []}) if from_user else {**base, "architectures": []}
        raw[name] = _validated(path, {**own, "name": name}, start)
    profiles = {name: ModelProfile.model_validate(data) for name, data in raw.items()}
    profiles.setdefault(DEFAULT_PROFILE, ModelProfile())
    return profiles


def profile_for(model: Any, user_dir: str | None = None) -> ModelProfile:
    """The profile of ``model``: by architecture class name, then by ``config.model_type``; with the
    healthy baseline of the model's shape when the profile has one (:meth:`ModelProfile.for_shape`)."""
    profiles = load_profiles(user_dir)
    architecture = type(model).__name__
    chosen = next((p for p in profiles.values() if architecture in p.architectures), None)
    if chosen is None:
        model_type = getattr(getattr(model, "config", None), "model_type", None)
        chosen = profiles.get(str(model_type), profiles[DEFAULT_PROFILE])
    shape = model_shape(model)
    return chosen.for_shape(*shape) if shape is not None and chosen.baselines else chosen


# -- calibration profiles ---------------------------------------------------------------------------
class DistributionSpec(BaseModel):
    """One metric's values over healthy runs: count, mean, standard deviation and 5 quantiles."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    count: int = Field(ge=0)
    mean: float
    std: float = Field(ge=0, allow_inf_nan=True)
    quantiles: tuple[float, float, float, float, float]


class CalibrationFile(BaseModel):
    """A calibration profile file (``corevital calibrate --prompts``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1]
    model: str
    runs: int = Field(ge=0)
    metrics: dict[str, DistributionSpec] = Field(default_factory=dict)
    layer_metrics: dict[str, list[DistributionSpec]] = Field(default_factory=dict)


def load_calibration(path: str | Path) -> CalibrationProfile | None:
    """The calibration profile at ``path``; ``None`` (no calibration) with one warning when the file
    cannot be read or is not a valid profile."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        spec = CalibrationFile.model_validate(data)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        if isinstance(exc, ValidationError):
            reason = _reason(exc)
        elif isinstance(exc, json.JSONDecodeError):
            reason = f"it is not valid JSON ({_first_line(exc)})"
        else:
            reason = f"it cannot be read ({_first_line(exc)})"
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


def json_schemas() -> dict[str, dict[str, Any]]:
    """The JSON Schemas of the profile files, by file name (``configs/schema/``)."""
    return {
        "model-profile.schema.json": ModelProfile.model_json_schema(),
        "calibration-profile.schema.json": CalibrationFile.model_json_schema(),
    }


def _reason(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error.get("loc", ()))
    return f"{where}: {error.get('msg', 'invalid')}" if where else str(error.get("msg", "invalid"))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
