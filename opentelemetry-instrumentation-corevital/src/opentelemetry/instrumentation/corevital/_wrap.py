"""The ``generate`` wrapper: wiring only.

One call, in order (:mod:`.lifecycle` does each step): open the call — its request, span, model
profile and capture session; add the ``stop_on`` criterion; run ``generate`` with the session current
in this context (the forward hooks report to it) and the span current (so that the user's own spans
nest under it); close the call — read out, write telemetry, deliver the health report. The model's
exceptions are recorded on the span and re-raised unchanged.
"""

from __future__ import annotations

import contextlib
import contextvars
import time
from collections.abc import Callable
from typing import Any

from opentelemetry import trace
from opentelemetry.instrumentation.utils import is_instrumentation_enabled

from .capture import active_session
from .capture.intervention import inject_criterion
from .generation import inspect_result, resolve_request
from .lifecycle import CallLifecycle
from .messages import current_pipeline_call

# True while a generate() call is being traced in this context: a pipeline, an overridden
# generate calling super().generate, or an assistant model's generate gives one span, not several.
_IN_GENERATE: contextvars.ContextVar[bool] = contextvars.ContextVar("corevital_in_generate", default=False)


class GenerateWrapper:
    """``wrapt`` wrapper of ``GenerationMixin.generate``."""

    def __init__(self, lifecycle: CallLifecycle) -> None:
        self.lifecycle = lifecycle

    def __call__(
        self, wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        if instance is None or _IN_GENERATE.get():
            return wrapped(*args, **kwargs)
        holds = self.lifecycle.hooks.holds()  # what an enclosing forward of this thread holds
        if not is_instrumentation_enabled():
            try:
                return wrapped(*args, **kwargs)
            finally:
                self._release_forward(holds)
        token = _IN_GENERATE.set(True)
        try:
            return self._traced_call(wrapped, instance, args, kwargs, holds)
        finally:
            _IN_GENERATE.reset(token)

    def _traced_call(
        self,
        wrapped: Callable[..., Any],
        model: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        holds: dict[Any, int],
    ) -> Any:
        started = time.perf_counter()
        lifecycle = self.lifecycle
        call = lifecycle.open_call(model, started, lambda guard: guard(
            "reading the generate() arguments", resolve_request, model, args, kwargs, current_pipeline_call()
        ))  # fmt: skip
        session = call.session
        if session is not None and session.stop_on and session.level is not None:
            injected = call.guard("adding the stop_on criterion", inject_criterion, args, kwargs, session)
            args, kwargs = injected or (args, kwargs)
        call.hook_seconds = time.perf_counter() - started
        capture = active_session(session) if session is not None else contextlib.nullcontext()
        with trace.use_span(
            call.span, end_on_exit=False, record_exception=False, set_status_on_exception=False
        ):
            try:
                with capture:
                    try:
                        result = wrapped(*args, **kwargs)
                    finally:
                        self._release_forward(holds)
            except BaseException as exc:
                lifecycle.close_call(call, time.perf_counter(), exception=exc)
                raise
        ended = time.perf_counter()
        outcome = call.guard("reading the result", inspect_result, result, call.request)
        lifecycle.close_call(call, ended, outcome=outcome)
        return result

    def _release_forward(self, holds: dict[Any, int]) -> None:
        """Let go of the forward gates the call took if an interrupted forward left them held."""
        try:
            self.lifecycle.hooks.release(holds)
        except Exception as exc:  # pragma: no cover - defensive: never on the user's path
            self.lifecycle.log_once("releasing the forward gate", exc)
