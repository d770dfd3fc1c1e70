"""One frozen settings object, resolved once per ``instrument()`` call and validated with pydantic.

Precedence: an ``instrument()`` keyword wins over the environment variable, which wins over the
default. An invalid value is never fatal: one warning names the setting, the bad value, what is
allowed and the fallback used, and the next source (environment, then default) is used.
"""

from __future__ import annotations

import enum
import logging
import os
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, SecretBytes, ValidationError, field_validator

from . import semconv as sc
from .signals.risk import DEFAULT_EXPECTED_FAILURE_RATE

logger = logging.getLogger(__name__)

ENV_CAPTURE = "OTEL_INSTRUMENTATION_COREVITAL_CAPTURE"
ENV_SERIES_MAX_POINTS = "OTEL_INSTRUMENTATION_COREVITAL_SERIES_MAX_POINTS"
ENV_CAPTURE_MESSAGE_CONTENT = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
ENV_STOP_ON = "OTEL_INSTRUMENTATION_COREVITAL_STOP_ON"
ENV_PROFILES_DIR = "OTEL_INSTRUMENTATION_COREVITAL_PROFILES_DIR"
ENV_CALIBRATION_PROFILE = "OTEL_INSTRUMENTATION_COREVITAL_CALIBRATION_PROFILE"
ENV_PROMPT_HASH_KEY = "OTEL_INSTRUMENTATION_COREVITAL_PROMPT_HASH_KEY"
ENV_EXPECTED_FAILURE_RATE = "OTEL_INSTRUMENTATION_COREVITAL_EXPECTED_FAILURE_RATE"

#: Signals that can stop a sequence (they are detected while it is generated), with short aliases.
STOPPABLE_SIGNALS: tuple[str, ...] = (
    sc.FLAG_REPETITION_LOOP,
    sc.FLAG_NAN_DETECTED,
    sc.FLAG_INF_DETECTED,
    sc.EARLY_WARNING_ENTROPY_ACCELERATING,
    sc.EARLY_WARNING_MARGIN_COLLAPSED,
    sc.EARLY_WARNING_MARGIN_DECLINING,
    sc.EARLY_WARNING_SURPRISAL_VOLATILE,
    sc.EARLY_WARNING_ENTROPY_MARGIN_DIVERGENCE,
)
_SIGNAL_ALIASES = {
    "nan": sc.FLAG_NAN_DETECTED,
    "inf": sc.FLAG_INF_DETECTED,
    "repetition": sc.FLAG_REPETITION_LOOP,
}


class CaptureLevel(str, enum.Enum):
    """How much of the model's internals is summarised at every decoding step.

    Each level includes the previous one: ``logits`` (entropy, margin, surprisal, top-k),
    ``hidden`` (plus per-layer hidden-state statistics; the default) and ``attention`` (plus
    per-layer attention statistics, read where transformers computes attention; the model's own
    attention kernel runs unchanged).
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


class ContentCapture(str, enum.Enum):
    """Where prompt and completion text may go (``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT``).

    The values of the upstream GenAI instrumentations, with the same meaning: ``true`` / ``false``
    (the classic switch; ``true`` = on the span), and ``NO_CONTENT``, ``SPAN_ONLY``, ``EVENT_ONLY``,
    ``SPAN_AND_EVENT`` (``opentelemetry-util-genai``), case-insensitive.
    """

    NO_CONTENT = "no_content"
    SPAN_ONLY = "span_only"
    EVENT_ONLY = "event_only"
    SPAN_AND_EVENT = "span_and_event"

    @property
    def on_span(self) -> bool:
        return self in (ContentCapture.SPAN_ONLY, ContentCapture.SPAN_AND_EVENT)

    @property
    def in_event(self) -> bool:
        return self in (ContentCapture.EVENT_ONLY, ContentCapture.SPAN_AND_EVENT)

    @property
    def enabled(self) -> bool:
        return self is not ContentCapture.NO_CONTENT


_CONTENT_WORDS = {
    "true": ContentCapture.SPAN_ONLY, "1": ContentCapture.SPAN_ONLY, "yes": ContentCapture.SPAN_ONLY,
    "on": ContentCapture.SPAN_ONLY, "false": ContentCapture.NO_CONTENT, "0": ContentCapture.NO_CONTENT,
    "no": ContentCapture.NO_CONTENT, "off": ContentCapture.NO_CONTENT, "": ContentCapture.NO_CONTENT,
}  # fmt: skip


class Settings(BaseModel):
    """Everything the instrumentation can be told, after validation."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    capture: CaptureLevel = CaptureLevel.HIDDEN
    series_max_points: Annotated[int, Field(ge=2, le=100_000, strict=False)] = 256
    capture_content: ContentCapture = ContentCapture.NO_CONTENT
    stop_on: frozenset[str] = frozenset()
    profiles_dir: str | None = None
    calibration_profile: str | None = None
    prompt_hash_key: SecretBytes | None = None
    expected_failure_rate: Annotated[float, Field(gt=0, lt=1, allow_inf_nan=False)] = (
        DEFAULT_EXPECTED_FAILURE_RATE
    )

    @field_validator("capture", mode="before")
    @classmethod
    def _capture(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("series_max_points", mode="before")
    @classmethod
    def _max_points(cls, value: Any) -> Any:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError("an integer")
        return value.strip() if isinstance(value, str) else value

    @field_validator("expected_failure_rate", mode="before")
    @classmethod
    def _rate(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError("a number")
        return value.strip() if isinstance(value, str) else value

    @field_validator("capture_content", mode="before")
    @classmethod
    def _content(cls, value: Any) -> Any:
        if isinstance(value, bool):
            return ContentCapture.SPAN_ONLY if value else ContentCapture.NO_CONTENT
        if isinstance(value, str):
            text = value.strip().lower()
            return _CONTENT_WORDS.get(text, text)
        return value

    @field_validator("stop_on", mode="before")
    @classmethod
    def _stop_on(cls, value: Any) -> Any:
        items = value.split(",") if isinstance(value, str) else list(value)
        names = {_SIGNAL_ALIASES.get(str(i).strip().lower(), str(i).strip().lower()) for i in items}
        names.discard("")
        unknown = names - set(STOPPABLE_SIGNALS)
        if unknown:
            raise ValueError(f"unknown signals {sorted(unknown)}")
        return frozenset(names)

    @field_validator("profiles_dir", mode="before")
    @classmethod
    def _directory(cls, value: Any) -> Any:
        path = os.path.expanduser(str(value))
        if not os.path.isdir(path):
            raise ValueError("not an existing directory")
        return path

    @field_validator("calibration_profile", mode="before")
    @classmethod
    def _file(cls, value: Any) -> Any:
        path = os.path.expanduser(str(value))
        if not os.path.isfile(path):
            raise ValueError("not an existing file")
        return path

    @field_validator("prompt_hash_key", mode="before")
    @classmethod
    def _key(cls, value: Any) -> Any:
        # Counted as documented: characters for text (the environment variable), bytes for bytes.
        if isinstance(value, str) and len(value) >= 16:
            return value.encode()
        if isinstance(value, bytes) and len(value) >= 16:
            return value
        raise ValueError("at least 16 characters (16 bytes, given as bytes)")

    @classmethod
    def resolve(cls, options: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> Settings:
        """Build the settings from ``instrument()`` keywords and environment variables."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for name, (variable, allowed) in _SOURCES.items():
            for source, value in (
                (f"instrument({name}=...)", options.get(name)),
                (variable, env.get(variable)),
            ):
                if value is None:
                    continue
                try:
                    cls.model_validate({name: value})
                except ValidationError:
                    fallback = "the environment or default" if source != variable else "the default"
                    shown = "<hidden>" if name == "prompt_hash_key" else repr(value)
                    logger.warning(
                        "CoreVital: invalid value %s for %s; allowed: %s. Using %s.",
                        shown, source, allowed, fallback,
                    )  # fmt: skip
                    continue
                values[name] = value
                break
        return cls.model_validate(values)


_SOURCES: dict[str, tuple[str, str]] = {
    "capture": (ENV_CAPTURE, ", ".join(level.value for level in CaptureLevel)),
    "series_max_points": (ENV_SERIES_MAX_POINTS, "an integer from 2 to 100000"),
    "capture_content": (
        ENV_CAPTURE_MESSAGE_CONTENT,
        "true, false, NO_CONTENT, SPAN_ONLY, EVENT_ONLY or SPAN_AND_EVENT",
    ),
    "stop_on": (ENV_STOP_ON, "a comma-separated list of " + ", ".join(STOPPABLE_SIGNALS)),
    "profiles_dir": (ENV_PROFILES_DIR, "an existing directory of *.yaml model profiles"),
    "calibration_profile": (
        ENV_CALIBRATION_PROFILE,
        "the path of a calibration profile JSON file (corevital calibrate --out)",
    ),
    "prompt_hash_key": (ENV_PROMPT_HASH_KEY, "a secret of at least 16 characters (16 bytes, given as bytes)"),
    "expected_failure_rate": (
        ENV_EXPECTED_FAILURE_RATE,
        f"a number between 0 and 1, exclusive (default {DEFAULT_EXPECTED_FAILURE_RATE})",
    ),
}

#: ``instrument()`` keywords that are not settings.
PROVIDER_KEYWORDS = frozenset(
    {
        "tracer_provider",
        "meter_provider",
        "logger_provider",
        "on_report",
        "skip_dep_check",
        "raise_exception_on_conflict",
    }
)


def unknown_keywords(options: Mapping[str, Any]) -> list[str]:
    """``instrument()`` keywords CoreVital does not know (reported once, then ignored)."""
    return sorted(set(options) - set(_SOURCES) - PROVIDER_KEYWORDS)
