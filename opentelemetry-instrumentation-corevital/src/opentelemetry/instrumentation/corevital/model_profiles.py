"""Model profiles: thresholds that depend on the model (SIGNALS §13), shipped as YAML in the wheel."""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from .signals.risk import RiskModel

logger = logging.getLogger(__name__)

DEFAULT_PROFILE = "default"


@dataclass(frozen=True)
class ModelProfile:
    """Thresholds for one family of models."""

    name: str = DEFAULT_PROFILE
    architectures: tuple[str, ...] = ()
    l2_explosion_multiplier: float = 8.0
    high_entropy_threshold_bits: float = 4.0
    repetition_cosine_threshold: float = 0.9995
    focused_head_concentration_threshold: float = 0.9
    collapsed_head_entropy_threshold: float = 0.03
    repetition_ngram: int = 8
    repetition_similarity_threshold: float = 0.0
    mid_layer_min_run: int = 3
    mid_layer_min_share: float = 0.25
    basin_score_baseline: float = 0.25
    risk_model: RiskModel | None = None  # the fitted risk model; None: the SIGNALS §6 heuristic

    @classmethod
    def from_mapping(cls, data: dict[str, Any]) -> ModelProfile:
        known = {f.name for f in fields(cls)}
        values = {key: value for key, value in data.items() if key in known}
        values["architectures"] = tuple(values.get("architectures") or ())
        if values.get("risk_model") is not None:
            values["risk_model"] = RiskModel.from_mapping(values["risk_model"])
        return cls(**values)


def _shipped_directory() -> Path | None:
    """The shipped profiles: inside the wheel, or ``configs/`` in a source checkout."""
    packaged = Path(str(resources.files(__package__).joinpath("profiles")))
    source = Path(__file__).resolve().parents[5] / "configs" / "model_profiles"
    return next((d for d in (packaged, source) if d.is_dir()), None)


def _profile_files(user_dir: str | None = None) -> list[Path]:
    """The shipped profile files, then the user's."""
    shipped = _shipped_directory()
    files = sorted(shipped.glob("*.yaml")) if shipped else []
    if user_dir:
        files += sorted(Path(user_dir).glob("*.yaml"))
    return files


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = yaml.safe_load(path.read_text()) or {}
        if not isinstance(data, dict):
            raise ValueError("a model profile is a mapping")
        return data
    except (OSError, yaml.YAMLError, ValueError) as exc:
        logger.warning("CoreVital: ignoring unreadable model profile %s: %s", path, exc)
        return None


@functools.lru_cache(maxsize=8)
def load_profiles(user_dir: str | None = None) -> dict[str, ModelProfile]:
    """Every profile by name.

    A shipped profile starts from the shipped ``default`` profile's values (the fitted risk model
    among them) and overrides what it sets; a profile in ``user_dir`` overrides, field by field,
    the profile of the same name (or adds a new one on top of the default).
    """
    shipped = _shipped_directory()
    user = Path(user_dir) if user_dir else None
    raw: dict[str, dict[str, Any]] = {}
    base: dict[str, Any] = {}
    if shipped is not None and (shipped / f"{DEFAULT_PROFILE}.yaml").exists():
        base = _read(shipped / f"{DEFAULT_PROFILE}.yaml") or {}
    for path in _profile_files(user_dir):
        own = _read(path)
        if own is None:
            continue
        name = str(own.get("name", path.stem))
        if user is not None and path.parent == user:
            raw[name] = {**raw.get(name, {**base, "architectures": []}), **own}
        else:
            raw[name] = {**base, "architectures": [], **own}
    profiles: dict[str, ModelProfile] = {}
    for name, data in raw.items():
        try:
            profiles[name] = ModelProfile.from_mapping({**data, "name": name})
        except (TypeError, ValueError, KeyError) as exc:
            logger.warning("CoreVital: ignoring invalid model profile %r: %s", name, exc)
    profiles.setdefault(DEFAULT_PROFILE, ModelProfile())
    return profiles


def profile_for(model: Any, user_dir: str | None = None) -> ModelProfile:
    """The profile of ``model``: by architecture class name, then by ``config.model_type``."""
    profiles = load_profiles(user_dir)
    architecture = type(model).__name__
    for profile in profiles.values():
        if architecture in profile.architectures:
            return profile
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    return profiles.get(str(model_type), profiles[DEFAULT_PROFILE])
