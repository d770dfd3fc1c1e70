"""Profile files users can edit, validated with pydantic: model profiles (YAML) and calibration
profiles (JSON).

A model profile holds the thresholds that depend on the model (docs/signals.md, "Model profiles")
and the fitted risk model; the shipped ones are package data (``model_profiles/*.yaml`` beside this module).
A calibration profile (``corevital calibrate --prompts``) describes a model's healthy runs.

Bad input never raises into the user's process: a file that cannot be read or parsed (or is not a
regular file, too large or nested too deeply), a key that is not known, a value of the wrong type,
out of range or not finite each give one warning naming the file, the field, the bad value (cut
short) and the fallback used — the shipped profile's value (model profiles), or no calibration
(calibration profiles, :mod:`.calibration_file`). Files are read safely (:mod:`.profile_files`),
once, and again only when they change (:mod:`.file_cache`). JSON Schemas of both files are
generated into ``configs/schema/`` (``python configs/generate_schemas.py``) so that editors can
validate them.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, PrivateAttr, ValidationError

from . import calibration_file
from .baseline_spec import BaselineSpec, merge_baselines, model_shape
from .calibration_file import CalibrationFile, DistributionSpec, load_calibration
from .file_cache import FileCache, FolderListing
from .profile_files import (
    MAX_PROFILE_BYTES,
    MAX_PROFILE_FILES,
    ProfileModel,
    Unusable,
    clip,
    first_non_finite,
    listed,
    parse_yaml,
    read_text,
    short,
    validation_problem,
)
from .risk_spec import RiskModelSpec
from .signals.baseline import Baseline
from .signals.risk import RiskModel
from .signals.thresholds import Thresholds

__all__ = [
    "CalibrationFile",
    "DistributionSpec",
    "ModelProfile",
    "ProfileModel",
    "clear_caches",
    "json_schemas",
    "load_calibration",
    "load_profiles",
    "profile_for",
]

logger = logging.getLogger(__name__)

DEFAULT_PROFILE = "default"


class ModelProfile(ProfileModel):
    """Thresholds for one family of models (docs/signals.md, "Model profiles")."""

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
    def thresholds(self) -> Thresholds:
        """What the read-out judges with (``signals`` reads only this, never the profile)."""
        return Thresholds(
            high_entropy_threshold_bits=self.high_entropy_threshold_bits,
            l2_explosion_multiplier=self.l2_explosion_multiplier,
            mid_layer_min_run=self.mid_layer_min_run,
            mid_layer_min_share=self.mid_layer_min_share,
            basin_score_baseline=self.basin_score_baseline,
            repetition_ngram=self.repetition_ngram,
            repetition_similarity_threshold=self.repetition_similarity_threshold,
            early_warning=self.early_warning,
            baseline=self._baseline,
            risk=self._risk,
        )

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
@dataclass(frozen=True)
class _ProfileFile:
    """What one model-profile file sets: its profile's name and its valid fields."""

    name: str
    fields: dict[str, Any]


def _shipped_directory() -> Path | None:
    """The shipped profiles: package data (``model_profiles/`` beside this module), in a wheel and in
    a source checkout alike."""
    packaged = Path(str(resources.files(__package__).joinpath("model_profiles")))
    return packaged if packaged.is_dir() else None


def _read_profile(
    path: Path, text: str | Unusable, start: Callable[[str], dict[str, Any]]
) -> _ProfileFile | None:
    """The valid fields of the profile at ``path`` (its ``text``, or why it cannot be read); one
    warning per problem. ``start(name)``: the values the file's fields override (for the fallbacks
    its warnings name)."""
    try:
        if isinstance(text, Unusable):
            raise text
        data = parse_yaml(text)
    except Unusable as exc:
        logger.warning("CoreVital: ignoring model profile %s: %s.", path, exc)
        return None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        logger.warning(
            "CoreVital: ignoring model profile %s: it must be a mapping of settings, not a %s.",
            path, type(data).__name__,
        )  # fmt: skip
        return None
    name = data.get("name", path.stem)
    if not isinstance(name, str):
        logger.warning(
            "CoreVital: model profile %s: invalid name = %s (a string); using %r.",
            path, short(name), path.stem,
        )  # fmt: skip
        name = path.stem
    return _ProfileFile(name, _valid_fields(path, {**data, "name": name}, start(name)))


def _valid_fields(path: Path, own: dict[Any, Any], start: dict[str, Any]) -> dict[str, Any]:
    """The fields of ``own`` that are valid over ``start``; one warning per invalid field and one
    for all unknown keys. Every field of :class:`ModelProfile` goes through the same path."""
    known = ModelProfile.model_fields
    unknown = [key for key in own if key not in known]
    if unknown:
        logger.warning(
            "CoreVital: model profile %s: unknown key%s %s ignored.",
            path, "s" if len(unknown) > 1 else "", listed(unknown),
        )  # fmt: skip
    values, valid = dict(start), {}
    for key, value in own.items():
        if key not in known:
            continue
        if key == "baselines" and isinstance(value, list):
            value = merge_baselines(values.get(key, []), value)
        problem = _field_problem(key, value, values)
        if problem is not None:
            fallback = values.get(key, known[key].default)
            logger.warning(
                "CoreVital: model profile %s: invalid %s%s (%s); using %s.",
                path, key, "" if isinstance(value, dict) else f" = {short(value)}", problem,
                "the shipped value" if isinstance(fallback, dict) else short(fallback),
            )  # fmt: skip
            continue
        values[key] = valid[key] = value
    return valid


def _field_problem(key: str, value: Any, values: dict[str, Any]) -> str | None:
    """Why ``value`` cannot be field ``key`` of a profile holding ``values``; ``None`` if it can."""
    where = first_non_finite(value, key)
    if where is not None:
        return f"{where}: not a finite number"
    try:
        ModelProfile.model_validate({**values, key: value})
    except ValidationError as exc:
        return validation_problem(exc)
    except Exception as exc:  # raised while building the risk model
        return clip(str(exc) or type(exc).__name__)
    return None


@functools.cache
def _shipped() -> tuple[dict[str, Any], dict[str, dict[str, Any]], dict[str, ModelProfile]]:
    """The shipped default's values, and every shipped profile's values and profile (read once)."""
    directory = _shipped_directory()
    base: dict[str, Any] = {}
    default = directory / f"{DEFAULT_PROFILE}.yaml" if directory is not None else None
    if default is not None and default.is_file():
        read = _read_profile(default, _text(default), lambda name: {})
        base = dict(read.fields) if read is not None else {}
    raw: dict[str, dict[str, Any]] = {DEFAULT_PROFILE: {**base, "name": DEFAULT_PROFILE}}
    for path in sorted(directory.glob("*.yaml")) if directory is not None else ():
        if path.stem != DEFAULT_PROFILE:
            read = _read_profile(path, _text(path), lambda name: {**base, "architectures": []})
            if read is not None:
                raw[read.name] = {**base, "architectures": [], **read.fields}
    return base, raw, _build(raw, {})


def _text(path: Path) -> str | Unusable:
    try:
        return read_text(path, MAX_PROFILE_BYTES)
    except Unusable as exc:
        return exc


def _build(raw: dict[str, dict[str, Any]], fallback: dict[str, ModelProfile]) -> dict[str, ModelProfile]:
    profiles: dict[str, ModelProfile] = {}
    for name, data in raw.items():
        try:
            profiles[name] = ModelProfile.model_validate(data)
        except Exception as exc:  # each field was valid alone; together they are not
            logger.warning("CoreVital: ignoring model profile %r: %s.", name, clip(str(exc)))
            if name in fallback:
                profiles[name] = fallback[name]
    profiles.setdefault(DEFAULT_PROFILE, ModelProfile())
    return profiles


def _start(name: str) -> dict[str, Any]:
    """What a user's profile of ``name`` overrides: the shipped profile of that name, or the default."""
    base, raw, _ = _shipped()
    return dict(raw.get(name) or {**base, "architectures": []})


_USER_FILES: FileCache[_ProfileFile | None] = FileCache(
    lambda path, text: _read_profile(path, text, _start), MAX_PROFILE_BYTES
)
_USER_FOLDERS = FolderListing(".yaml", MAX_PROFILE_FILES, "profiles directory", "using the shipped profiles")
_MERGED: dict[str, tuple[tuple[str, ...], tuple[Any, ...], dict[str, ModelProfile]]] = {}
_MERGED_LOCK = threading.Lock()


def load_profiles(user_dir: str | None = None) -> dict[str, ModelProfile]:
    """Every profile by name. Never raises; cheap when nothing changed (one ``stat`` per file).

    A shipped profile starts from the shipped ``default`` profile's values (the fitted risk model
    among them) and overrides what it sets; a profile in ``user_dir`` overrides, field by field,
    the shipped profile of the same name (or adds a new one on top of the default). Each file is
    read once, and again only when it changes (:mod:`.file_cache`).
    """
    base, shipped_raw, shipped = _shipped()
    if not user_dir:
        return shipped
    paths = _USER_FOLDERS.paths(user_dir)
    reads = tuple(_USER_FILES.get(path) for path in paths)
    with _MERGED_LOCK:
        cached = _MERGED.get(user_dir)
        if cached is not None and cached[0] == paths and _same(cached[1], reads):
            return cached[2]
        raw = {name: dict(data) for name, data in shipped_raw.items()}
        for read in reads:
            if read is not None:
                raw[read.name] = {**raw.get(read.name, {**base, "architectures": []}), **read.fields}
        profiles = _build(raw, shipped)
        _MERGED.pop(user_dir, None)
        if len(_MERGED) >= 16:  # one directory in practice; many only in a test run
            _MERGED.pop(next(iter(_MERGED)))
        _MERGED[user_dir] = (paths, reads, profiles)
        return profiles


def _same(old: tuple[Any, ...], new: tuple[Any, ...]) -> bool:
    """Whether every file gave the very result it gave before (a changed file gives a new one)."""
    return len(old) == len(new) and all(a is b for a, b in zip(old, new, strict=True))


def clear_caches() -> None:
    """Forget every file read (tests; a changed file is read again without this)."""
    _USER_FILES.clear()
    calibration_file.clear_cache()
    _USER_FOLDERS.clear()
    with _MERGED_LOCK:
        _MERGED.clear()


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


def json_schemas() -> dict[str, dict[str, Any]]:
    """The JSON Schemas of the profile files, by file name (``configs/schema/``)."""
    return {
        "model-profile.schema.json": ModelProfile.model_json_schema(),
        "calibration-profile.schema.json": CalibrationFile.model_json_schema(),
    }
