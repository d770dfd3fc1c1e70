"""One frozen settings object, resolved once per ``instrument()`` call.

Precedence: an ``instrument()`` keyword wins over the environment variable, which wins over the
default. An invalid value is never fatal: one warning names the setting and the allowed values, and
the next source (environment, then default) is used.
"""

from __future__ import annotations

import enum
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

logger = logging.getLogger(__name__)

ENV_CAPTURE = "OTEL_INSTRUMENTATION_COREVITAL_CAPTURE"
ENV_SERIES_MAX_POINTS = "OTEL_INSTRUMENTATION_COREVITAL_SERIES_MAX_POINTS"
ENV_CAPTURE_MESSAGE_CONTENT = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
ENV_STOP_ON = "OTEL_INSTRUMENTATION_COREVITAL_STOP_ON"
ENV_PROFILES_DIR = "OTEL_INSTRUMENTATION_COREVITAL_PROFILES_DIR"
ENV_CALIBRATION_PROFILE = "OTEL_INSTRUMENTATION_COREVITAL_CALIBRATION_PROFILE"

#: Signals that can stop a sequence (they are detected while it is generated), with short aliases.
STOPPABLE_SIGNALS: tuple[str, ...] = (
    "repetition_loop",
    "nan_detected",
    "inf_detected",
    "entropy_accelerating",
    "margin_collapsed",
    "margin_declining",
    "surprisal_volatile",
    "entropy_margin_divergence",
)
_SIGNAL_ALIASES = {"nan": "nan_detected", "inf": "inf_detected", "repetition": "repetition_loop"}

_TRUE = frozenset({"true", "1", "yes", "on", "span_only", "span_and_event"})
_FALSE = frozenset({"false", "0", "no", "off", "no_content", "event_only", ""})


class CaptureLevel(str, enum.Enum):
    """How much of the model's internals is summarised at every decoding step.

    Each level includes the previous one: ``logits`` (entropy, margin, surprisal, top-k),
    ``hidden`` (plus per-layer hidden-state statistics; the default) and ``attention`` (plus
    per-layer attention statistics; runs the model with eager attention for the call).
    """

    LOGITS = "logits"
    HIDDEN = "hidden"
    ATTENTION = "attention"

    @property
    def captures_hidden(self) -> bool:
        return self is not CaptureLevel.LOGITS

    @property
    def captures_attention(self) -> bool:
        return self is CaptureLevel.ATTENTION


@dataclass(frozen=True)
class Settings:
    """Everything the instrumentation can be told, after validation."""

    capture: CaptureLevel = CaptureLevel.HIDDEN
    series_max_points: int = 256
    capture_content: bool = False
    stop_on: frozenset[str] = frozenset()
    profiles_dir: str | None = None
    calibration_profile: str | None = None

    @classmethod
    def resolve(cls, options: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> Settings:
        """Build the settings from ``instrument()`` keywords and environment variables."""
        env = os.environ if environ is None else environ
        default = cls()
        return cls(
            capture=_pick(
                options.get("capture"), env.get(ENV_CAPTURE), "capture", ENV_CAPTURE,
                _parse_capture, default.capture, ", ".join(level.value for level in CaptureLevel),
            ),
            series_max_points=_pick(
                options.get("series_max_points"), env.get(ENV_SERIES_MAX_POINTS), "series_max_points",
                ENV_SERIES_MAX_POINTS, _parse_max_points, default.series_max_points,
                "an integer from 2 to 100000",
            ),
            capture_content=_pick(
                options.get("capture_content"), env.get(ENV_CAPTURE_MESSAGE_CONTENT), "capture_content",
                ENV_CAPTURE_MESSAGE_CONTENT, _parse_bool, default.capture_content, "true or false",
            ),
            stop_on=_pick(
                options.get("stop_on"), env.get(ENV_STOP_ON), "stop_on", ENV_STOP_ON, _parse_signals,
                default.stop_on, "a comma-separated list of " + ", ".join(STOPPABLE_SIGNALS),
            ),
            profiles_dir=_pick(
                options.get("profiles_dir"), env.get(ENV_PROFILES_DIR), "profiles_dir", ENV_PROFILES_DIR,
                _parse_directory, default.profiles_dir, "an existing directory of *.yaml model profiles",
            ),
            calibration_profile=_pick(
                options.get("calibration_profile"), env.get(ENV_CALIBRATION_PROFILE), "calibration_profile",
                ENV_CALIBRATION_PROFILE, _parse_file, default.calibration_profile,
                "the path of a calibration profile JSON file (corevital calibrate --out)",
            ),
        )  # fmt: skip


T = TypeVar("T")


def _pick(
    option: Any,
    env_value: str | None,
    option_name: str,
    env_name: str,
    parse: Callable[[Any], T],
    default: T,
    allowed: str,
) -> T:
    for source, value in ((f"instrument({option_name}=...)", option), (env_name, env_value)):
        if value is None:
            continue
        try:
            return parse(value)
        except (TypeError, ValueError):
            logger.warning(
                "CoreVital: invalid value %r for %s; allowed: %s. Using the %s.",
                value, source, allowed, "environment or default" if source != env_name else "default",
            )  # fmt: skip
    return default


def _parse_capture(value: Any) -> CaptureLevel:
    if isinstance(value, CaptureLevel):
        return value
    return CaptureLevel(str(value).strip().lower())


def _parse_max_points(value: Any) -> int:
    if isinstance(value, bool):
        raise TypeError(value)
    number = int(str(value).strip()) if isinstance(value, str) else int(value)
    if number != value and not isinstance(value, str):
        raise ValueError(value)
    if not 2 <= number <= 100_000:
        raise ValueError(value)
    return number


def _parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(value)


def _parse_signals(value: Any) -> frozenset[str]:
    items = value.split(",") if isinstance(value, str) else list(value)
    names = {_SIGNAL_ALIASES.get(str(item).strip().lower(), str(item).strip().lower()) for item in items}
    names.discard("")
    unknown = names - set(STOPPABLE_SIGNALS)
    if unknown:
        raise ValueError(value)
    return frozenset(names)


def _parse_directory(value: Any) -> str:
    path = os.path.expanduser(str(value))
    if not os.path.isdir(path):
        raise ValueError(value)
    return path


def _parse_file(value: Any) -> str:
    path = os.path.expanduser(str(value))
    if not os.path.isfile(path):
        raise ValueError(value)
    return path
