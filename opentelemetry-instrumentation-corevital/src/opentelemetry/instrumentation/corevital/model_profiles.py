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


def _profile_files(user_dir: str | None = None) -> list[Path]:
    """The shipped profiles (inside the wheel; ``configs/`` in a source checkout), then the user's."""
    packaged = Path(str(resources.files(__package__).joinpath("profiles")))
    source = Path(__file__).resolve().parents[5] / "configs" / "model_profiles"
    shipped = next((d for d in (packaged, source) if d.is_dir()), None)
    files = sorted(shipped.glob("*.yaml")) if shipped else []
    if user_dir:
        files += sorted(Path(user_dir).glob("*.yaml"))
    return files


@functools.lru_cache(maxsize=8)
def load_profiles(user_dir: str | None = None) -> dict[str, ModelProfile]:
    """Every profile by name: the shipped ones, overridden by those in ``user_dir`` (same name);
    the built-in default when none can be read."""
    profiles: dict[str, ModelProfile] = {}
    files = _profile_files(user_dir)
    # Every profile starts from the shipped default's values (the risk model among them).
    base: dict[str, Any] = {}
    for path in files:
        if path.stem == DEFAULT_PROFILE and not base:
            try:
                base = dict(yaml.safe_load(path.read_text()) or {})
            except (OSError, yaml.YAMLError) as exc:
                logger.warning("CoreVital: ignoring unreadable model profile %s: %s", path, exc)
    for path in files:
        try:
            own = yaml.safe_load(path.read_text()) or {}
            if not isinstance(own, dict):
                raise ValueError("a model profile is a mapping")
            merged = {**base, "architectures": [], **own}
            profile = ModelProfile.from_mapping(merged)
        except (OSError, yaml.YAMLError, TypeError, ValueError, KeyError) as exc:
            logger.warning("CoreVital: ignoring unreadable model profile %s: %s", path, exc)
            continue
        profiles[profile.name] = profile
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
