"""OpenTelemetry instrumentation for Hugging Face ``transformers`` ``generate()``: CoreVital.

Every call of ``generate()`` (directly, through a ``pipeline``, or through a model class whose own
``generate`` calls ``super().generate``) becomes one span ``text_completion {model}`` carrying the
OpenTelemetry GenAI attributes (operation, provider ``huggingface``, model, request parameters,
exact token usage, finish reasons) and CoreVital's health read-out of the model's internals,
computed at every decoding step while the model runs: entropy, top-1/top-2 margin, top-10 mass and
surprisal of the raw logits; per-layer hidden-state statistics; optionally per-layer attention
statistics. The GenAI metrics (operation duration, token usage, time to first token, time per
output token) and a per-step entropy histogram are recorded alongside.

Usage
-----
Zero code change::

    pip install opentelemetry-instrumentation-corevital opentelemetry-distro
    opentelemetry-instrument --traces_exporter console python app.py

Or in code::

    from opentelemetry.instrumentation.corevital import CoreVitalInstrumentor

    CoreVitalInstrumentor().instrument(capture="hidden")
    ...
    CoreVitalInstrumentor().uninstrument()

Configuration (an ``instrument()`` keyword wins over the environment variable)
--------------------------------------------------------------------------------
``OTEL_INSTRUMENTATION_COREVITAL_CAPTURE`` / ``capture=``
    ``logits``, ``hidden`` (default) or ``attention``. ``attention`` runs the model with eager
    attention for the duration of each call and restores its attention implementation after.
``OTEL_INSTRUMENTATION_COREVITAL_SERIES_MAX_POINTS`` / ``series_max_points=``
    Longest per-step series put on a span (default 256); longer series are bucket-averaged.
``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`` / ``capture_content=``
    ``true`` to record prompt and completion text (needs ``generate(tokenizer=...)``). Default
    ``false``: no content leaves the process.

Guarantees: the instrumented ``generate`` returns exactly what the plain one returns; CoreVital's
own failures are logged once and recorded as ``corevital.error.type``, never raised; unsampled
spans pay for no capture.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import Any

from opentelemetry._logs import get_logger
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from opentelemetry.instrumentation.utils import unwrap
from opentelemetry.metrics import get_meter
from opentelemetry.trace import get_tracer
from wrapt import wrap_function_wrapper

from .config import CaptureLevel, Settings
from .package import _instruments
from .version import __version__

__all__ = ["CaptureLevel", "CoreVitalInstrumentor", "Settings", "__version__"]

logger = logging.getLogger(__name__)

_GENERATE_MODULE = "transformers.generation.utils"
_GENERATE_NAME = "GenerationMixin.generate"
_SCHEMA_URL = "https://opentelemetry.io/schemas/1.37.0"


class CoreVitalInstrumentor(BaseInstrumentor):
    """Instruments ``transformers`` ``GenerationMixin.generate`` with CoreVital telemetry.

    ``instrument(tracer_provider=..., meter_provider=..., logger_provider=..., capture=...,
    series_max_points=..., capture_content=...)``; every keyword is optional.
    """

    # BaseInstrumentor is a singleton whose __init__ runs on every CoreVitalInstrumentor() call, so
    # state lives in attributes set by _instrument, never in __init__.
    _hooks: Any = None  # capture.HookRegistry: every hook added, for uninstrument()
    settings: Settings | None = None  # the resolved settings of the current instrument() call

    def instrumentation_dependencies(self) -> Collection[str]:
        return _instruments

    def _instrument(self, **kwargs: Any) -> None:
        from transformers.generation.utils import GenerationMixin  # noqa: F401  (fail early if absent)

        # torch and transformers are imported only here, so that loading the entry point of an
        # environment without them (``opentelemetry-instrument`` checks dependencies after) is safe.
        from ._wrap import GenerateWrapper
        from .capture import HookRegistry
        from .telemetry import Instruments

        if self._hooks is None:
            self._hooks = HookRegistry()
        self.settings = Settings.resolve(kwargs)
        tracer = get_tracer(__name__, __version__, kwargs.get("tracer_provider"), schema_url=_SCHEMA_URL)
        meter = get_meter(__name__, __version__, kwargs.get("meter_provider"), schema_url=_SCHEMA_URL)
        event_logger = get_logger(
            __name__, __version__, kwargs.get("logger_provider"), schema_url=_SCHEMA_URL
        )
        wrapper = GenerateWrapper(
            tracer,
            Instruments(meter),
            self.settings,
            self._hooks,
            logger=event_logger,
            calibration=_load_calibration(self.settings.calibration_profile),
            report_listener=kwargs.get("_report_listener"),
        )
        wrap_function_wrapper(_GENERATE_MODULE, _GENERATE_NAME, wrapper)

    def _uninstrument(self, **kwargs: Any) -> None:
        from transformers.generation.utils import GenerationMixin

        unwrap(GenerationMixin, "generate")
        if self._hooks is not None:
            self._hooks.remove_all()


def _load_calibration(path: str | None) -> Any:
    """The calibration profile at ``path``; a bad one is reported once and ignored, never fatal."""
    if path is None:
        return None
    from .signals.calibration import CalibrationProfile, ProfileError

    try:
        return CalibrationProfile.load(path)
    except ProfileError as exc:
        logger.warning("CoreVital: ignoring the calibration profile: %s", exc)
        return None
