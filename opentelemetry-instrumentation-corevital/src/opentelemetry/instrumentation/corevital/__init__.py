"""OpenTelemetry instrumentation for Hugging Face ``transformers`` ``generate()``: CoreVital.

Every call of ``generate()`` (directly, through a ``pipeline``, or through a model class whose own
``generate`` calls ``super().generate``) becomes one span ``text_completion {model}`` carrying the
OpenTelemetry GenAI attributes (operation, provider ``huggingface``, model, request parameters,
exact token usage, finish reasons) and CoreVital's health read-out of the model's internals,
computed at every decoding step while the model runs: entropy, top-1/top-2 margin, top-10 mass and
surprisal of the raw logits; per-layer hidden-state statistics; optionally per-layer attention
statistics; and from them health flags, a risk score, blamed layers and a narrative. The GenAI
metrics, CoreVital's risk, flag and overhead metrics and the ``gen_ai.evaluation.result`` event are
recorded alongside.

Usage
-----
Zero code change::

    pip install opentelemetry-distro opentelemetry-instrumentation-corevital
    opentelemetry-instrument --traces_exporter corevital_console --metrics_exporter none \
        --logs_exporter none python app.py

In code, like every OpenTelemetry instrumentor, with the health report of each call at hand::

    from opentelemetry.instrumentation.corevital import CoreVitalInstrumentor, health_reports

    CoreVitalInstrumentor().instrument(capture="hidden")
    with health_reports() as reports:
        model.generate(...)
    print(reports.last.risk_score, reports.last.flags)
    CoreVitalInstrumentor().uninstrument()

Configuration (an ``instrument()`` keyword wins over the environment variable): see README.md and
docs/configuration.md — ``capture``, ``series_max_points``, ``capture_content``, ``stop_on``,
``profiles_dir``, ``calibration_profile``, ``prompt_hash_key``, and ``on_report`` (a callback given
each call's :class:`HealthReport`).

Guarantees: the instrumented ``generate`` returns exactly what the plain one returns; CoreVital's
own failures are logged once and recorded as ``corevital.error.type``, never raised; unsampled
spans pay for no capture (unless a report is collected in code); see docs/reliability.md.
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

from . import semconv as sc
from .config import CaptureLevel, Settings, unknown_keywords
from .package import _instruments
from .reports import HealthReport, HealthReports, SequenceHealth, health_reports
from .version import __version__

__all__ = [
    "CaptureLevel",
    "CoreVitalInstrumentor",
    "HealthReport",
    "HealthReports",
    "SequenceHealth",
    "Settings",
    "__version__",
    "health_reports",
]

logger = logging.getLogger(__name__)

_GENERATE_MODULE = "transformers.generation.utils"
_GENERATE_NAME = "GenerationMixin.generate"
_PIPELINE_MODULE = "transformers.pipelines.base"
_PIPELINE_NAME = "Pipeline.forward"
_BATCHING_MODULE = "transformers.generation.continuous_batching.continuous_api"
_BATCHING_SEAMS = (
    ("ContinuousBatchingManager.add_request", "add_request"),
    ("ContinuousBatchingManager.cancel_request", "cancel_request"),
    ("ContinuousBatchProcessor._generation_step", "generation_step"),
    ("ContinuousBatchProcessor.update_batch", "update_batch"),
    ("OutputRouter.fail_and_deliver", "fail_and_deliver"),
)
_BATCHING_REQUESTS_MODULE = "transformers.generation.continuous_batching.requests"
_BATCHING_STOP_SEAM = "RequestState.update_and_check_completion"
_SERVE_CLIENT_MODULE = "transformers.cli.serving.model_manager"
_SERVE_RUNNER_MODULE = "transformers.cli.serving.utils"
_SERVE_SEAMS = (
    (_SERVE_CLIENT_MODULE, "EngineClient._send_request", "send_request"),
    (_SERVE_RUNNER_MODULE, "GenerateRunner.__init__", "runner_init"),
    (_SERVE_RUNNER_MODULE, "GenerateRunner.generate", "runner_method"),
    (_SERVE_RUNNER_MODULE, "GenerateRunner.submit", "runner_method"),
    (_SERVE_RUNNER_MODULE, "CBGenerateRunner.generate", "runner_method"),
)


class CoreVitalInstrumentor(BaseInstrumentor):
    """Instruments ``transformers`` ``GenerationMixin.generate`` with CoreVital telemetry.

    ``instrument(tracer_provider=..., meter_provider=..., logger_provider=..., on_report=...,
    capture=..., series_max_points=..., capture_content=..., stop_on=..., profiles_dir=...,
    calibration_profile=..., prompt_hash_key=...)``; every keyword is optional.
    """

    # BaseInstrumentor is a singleton whose __init__ runs on every CoreVitalInstrumentor() call, so
    # state lives in attributes set by _instrument, never in __init__.
    _hooks: Any = None  # capture.HookRegistry: every hook added, for uninstrument()
    _attention_lookup: str | None = None  # the attention-interface method wrapped (capture.attention)
    _pipeline_wrapped = False  # Pipeline.forward is wrapped (content capture only)
    _seams: Any = None  # integrations.Seams: the continuous-batching and serving wrappers
    settings: Settings | None = None  # the resolved settings of the current instrument() call

    def instrumentation_dependencies(self) -> Collection[str]:
        return _instruments

    def _instrument(self, **kwargs: Any) -> None:
        from transformers.generation.utils import GenerationMixin  # noqa: F401  (fail early if absent)

        # torch and transformers are imported only here, so that loading the entry point of an
        # environment without them (``opentelemetry-instrument`` checks dependencies after) is safe.
        from ._wrap import GenerateWrapper
        from .capture import HookRegistry
        from .lifecycle import CallLifecycle
        from .profiles import load_calibration, load_profiles
        from .reports import ReportDelivery
        from .telemetry import Instruments, Writer

        unknown = unknown_keywords(kwargs)
        if unknown:
            logger.warning("CoreVital: ignoring unknown instrument() keywords %s.", ", ".join(unknown))
        # A registry per instrument(): a call still in flight from an earlier instrumentation holds
        # the old, closed one and can never add hooks after uninstrument() removed them.
        self._hooks = HookRegistry()
        self.settings = settings = Settings.resolve(kwargs)
        tracer = get_tracer(__name__, __version__, kwargs.get("tracer_provider"), schema_url=sc.SCHEMA_URL)
        meter = get_meter(__name__, __version__, kwargs.get("meter_provider"), schema_url=sc.SCHEMA_URL)
        event_logger = get_logger(
            __name__, __version__, kwargs.get("logger_provider"), schema_url=sc.SCHEMA_URL
        )
        writer = Writer(
            tracer,
            Instruments(meter),
            event_logger,
            max_points=settings.series_max_points,
            content_on_span=settings.capture_content.on_span,
            content_in_event=settings.capture_content.in_event,
        )
        calibration = load_calibration(settings.calibration_profile) if settings.calibration_profile else None
        # Read the model profiles now, so that a bad file is reported at start-up rather than in
        # the first generate() (each file is read again only when it changes). Never fatal.
        try:
            load_profiles(settings.profiles_dir)
        except Exception as exc:  # pragma: no cover - the loader reports bad files itself
            logger.warning(
                "CoreVital: the model profiles could not be read now (%r); trying at the first call.", exc
            )
        lifecycle = CallLifecycle(
            writer, settings, self._hooks, ReportDelivery(kwargs.get("on_report")), calibration=calibration
        )
        wrapper = GenerateWrapper(lifecycle)
        wrap_function_wrapper(_GENERATE_MODULE, _GENERATE_NAME, wrapper)
        self._wrap_attention_lookup()
        self._wrap_integrations(lifecycle, settings)
        if settings.capture_content.enabled:
            wrap_function_wrapper(_PIPELINE_MODULE, _PIPELINE_NAME, _pipeline_forward)
            self._pipeline_wrapped = True

    def _wrap_integrations(self, lifecycle: Any, settings: Settings) -> None:
        """Continuous batching and ``transformers serve``, wrapped when (and if) their modules are
        imported: neither is imported here, as importing the server pulls in its web stack."""
        from .batching.wrap import BatchingWrappers
        from .integrations import Seams
        from .serving.wrap import ServingWrappers

        batching = BatchingWrappers(lifecycle, settings.capture)
        serving = ServingWrappers(lifecycle.log_once)
        seams = Seams(lifecycle.log_once)
        seams.add(_BATCHING_MODULE, [(name, getattr(batching, method)) for name, method in _BATCHING_SEAMS])
        if settings.stop_on:  # only then: it runs for every request at every step
            seams.add(
                _BATCHING_REQUESTS_MODULE, [(_BATCHING_STOP_SEAM, batching.update_and_check_completion)]
            )
        for module, name, method in _SERVE_SEAMS:
            seams.add(module, [(name, getattr(serving, method))])
        self._seams = seams

    def _wrap_attention_lookup(self) -> None:
        """Wrap the lookup of the attention function (capture.attention): it hands every model its
        own function, observed only inside a call that captures attention."""
        from .capture import attention

        method = attention.interface_method()
        if method is None:
            logger.info("CoreVital: this transformers has no attention interface; no attention read-out.")
            return
        wrap_function_wrapper(attention.INTERFACE_MODULE, f"{attention.INTERFACE_CLASS}.{method}",
                              attention.lookup_wrapper)  # fmt: skip
        self._attention_lookup = method

    def _uninstrument(self, **kwargs: Any) -> None:
        from transformers.generation.utils import GenerationMixin
        from transformers.pipelines.base import Pipeline

        unwrap(GenerationMixin, "generate")
        if self._attention_lookup is not None:
            from transformers.modeling_utils import AttentionInterface

            unwrap(AttentionInterface, self._attention_lookup)
            self._attention_lookup = None
        if self._seams is not None:
            self._seams.remove_all()
            self._seams = None
        if self._pipeline_wrapped:
            unwrap(Pipeline, "forward")
            self._pipeline_wrapped = False
        if self._hooks is not None:
            self._hooks.remove_all()


def _pipeline_forward(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Make a pipeline's tokenizer and prompts known to the ``generate`` it runs (content capture)."""
    from .messages import PipelineCall, pipeline_call, pipeline_prompts

    try:
        model_inputs = args[0] if args else kwargs.get("model_inputs")
        call = PipelineCall(getattr(instance, "tokenizer", None), pipeline_prompts(model_inputs))
    except Exception:  # never let CoreVital break the pipeline
        return wrapped(*args, **kwargs)
    with pipeline_call(call):
        return wrapped(*args, **kwargs)
