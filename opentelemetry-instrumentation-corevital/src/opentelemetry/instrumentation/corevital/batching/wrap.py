"""The continuous-batching wrappers: wiring only.

Continuous batching (``ContinuousBatchingManager``: ``transformers serve --continuous-batching``,
``model.generate_batch``, ``model.init_continuous_batching``) never calls ``generate()``. Five seams
of ``transformers.generation.continuous_batching.continuous_api`` give one span per request, from
admission to completion, with the same read-out as ``generate()``:

- ``ContinuousBatchingManager.add_request`` (the submitter's thread): open the request's call (span
  in the current context, capture session) — ``CallLifecycle.open_call``;
- ``ContinuousBatchProcessor._generation_step`` (generation thread): one packed forward, observed by
  a :class:`~.step.BatchStep` for the traced requests in it;
- ``ContinuousBatchProcessor.update_batch``: the step's tokens are known: hand each request its row,
  and close the requests that finished — ``CallLifecycle.close_call`` (read-out, telemetry);
- ``OutputRouter.fail_and_deliver``: a request failed: close it with the error;
- ``ContinuousBatchingManager.cancel_request``: close it as cancelled.

Nothing here may break the user's batch: CoreVital's failures are caught, logged once per kind and
recorded on the request's span as ``corevital.error.type``; the manager's exceptions pass through.
"""

from __future__ import annotations

import inspect
import threading
import time
from collections.abc import Callable
from typing import Any

from opentelemetry.instrumentation.utils import is_instrumentation_enabled

from ..capture import active_session
from ..config import CaptureLevel
from ..lifecycle import CallLifecycle
from .request import batched_outcome, batched_request
from .step import BatchRow, BatchStep
from .traces import RequestTrace, TraceTable, table_for

#: Why attention is not read out under continuous batching (on the span when it was asked for).
ATTENTION_UNAVAILABLE = (
    "continuous batching packs many requests into one paged attention call; CoreVital does not "
    "yet read one request's attention rows out of it"
)


class RequestCancelled(RuntimeError):
    """The request was cancelled before it finished (recorded on its span as ``error.type``)."""


class RequestNotAdmitted(RuntimeError):
    """The manager did not take the request (it was stopping or not accepting requests)."""


class BatchingWrappers:
    """The ``wrapt`` wrappers of the continuous-batching seams, living through the same call
    lifecycle as ``generate()``."""

    def __init__(self, lifecycle: CallLifecycle, capture: CaptureLevel) -> None:
        self._lifecycle = lifecycle
        self._capture = capture
        self._log_once = lifecycle.log_once
        # stop_on: the request states in a step whose tokens are not yet accepted, by id (a
        # RequestState is a dataclass, so neither hashable nor weak-referenceable)
        self._live: dict[int, tuple[BatchStep, int]] = {}
        self._live_lock = threading.Lock()

    # -- admission (submitter's thread) ---------------------------------------------------------
    def add_request(
        self, wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        if not is_instrumentation_enabled() or not getattr(instance, "is_tp_driver", True):
            return wrapped(*args, **kwargs)
        opened = None
        try:
            opened = self._admit(wrapped, instance, args, kwargs)
        except Exception as exc:
            self._log_once("tracing a continuous-batching request", exc)
        if opened is None:
            return wrapped(*args, **kwargs)
        table, trace, call_kwargs = opened
        try:
            result = wrapped(**call_kwargs)
        except BaseException as exc:
            self._close(table, trace, exception=exc)
            raise
        if result is None:
            self._close(
                table, trace, exception=RequestNotAdmitted("the continuous-batching manager dropped it")
            )
        return result

    def _admit(
        self, wrapped: Callable[..., Any], manager: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[TraceTable, RequestTrace, dict[str, Any]] | None:
        bound = inspect.signature(wrapped).bind(*args, **kwargs)
        call_kwargs = dict(bound.arguments)
        call_kwargs.update(call_kwargs.pop("logit_processor_kwargs", None) or {})
        request_id = call_kwargs.get("request_id")
        if request_id is None:  # the manager's own naming, under its own lock
            with manager._request_lock:
                request_id = f"req_{manager._request_counter}"
                manager._request_counter += 1
            call_kwargs["request_id"] = request_id
        table = table_for(manager.output_router, create=True)
        assert table is not None
        settings = {key: value for key, value in call_kwargs.items() if key != "input_ids"}
        unavailable = {CaptureLevel.ATTENTION.value: ATTENTION_UNAVAILABLE}
        call = self._lifecycle.open_call(
            manager.model,
            time.perf_counter(),
            lambda guard: guard(
                "reading the request", batched_request, manager, call_kwargs["input_ids"], settings
            ),
            level_unavailable=unavailable if self._capture is CaptureLevel.ATTENTION else None,
        )
        trace = RequestTrace(str(request_id), call)
        table.add(trace)
        return table, trace, call_kwargs

    # -- one packed forward (generation thread) -------------------------------------------------
    def generation_step(
        self, wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        table = table_for(getattr(instance, "output_router", None))
        if table is None or not len(table):
            return wrapped(*args, **kwargs)
        step = None
        try:
            model = args[0] if args else kwargs.get("model")
            step = self._step(instance, table, model)
        except Exception as exc:
            self._log_once("preparing a continuous-batching step", exc)
        if step is None:
            return wrapped(*args, **kwargs)
        with active_session(step):
            result = wrapped(*args, **kwargs)
        step.at = time.perf_counter()
        table.pending.append(step)
        return result

    def _step(self, processor: Any, table: TraceTable, model: Any) -> BatchStep | None:
        io = processor.inputs_and_outputs
        host = io.io_pairs[io.current_pair].host_io if hasattr(io, "io_pairs") else io
        rows: list[BatchRow] = []
        logits_row = 0
        for future in host.requests_in_batch:
            if not future.has_new_token:
                continue
            trace = table.get(future.state.request_id)
            if trace is not None:
                rows.append(BatchRow(trace, logits_row, future.state, future.state.generated_len()))
            logits_row += 1
        if not rows:
            return None
        sessions = [row.trace.call.session for row in rows if row.trace.call.session is not None]
        levels = [s.level for s in sessions if s.level is not None and s.error is None]
        if levels:
            self._lifecycle.hooks.ensure(model)
        hidden = any(level.captures_hidden for level in levels)
        step = BatchStep(model, rows, hidden=hidden, summarise=bool(levels))
        for index, row in enumerate(rows):
            session = row.trace.call.session
            if session is not None and session.stop_on and session.level is not None:
                with self._live_lock:  # its monitor must see the step before its token is accepted
                    self._live[id(row.state)] = (step, index)
        return step

    # -- the step's tokens are known (generation thread) ----------------------------------------
    def update_batch(
        self, wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        table = table_for(getattr(instance, "output_router", None))
        # The oldest forward is the one this update is for (one behind with asynchronous batching);
        # taken before the update, so that a failing update never leaves it behind for the next one.
        step = table.pending.popleft() if table is not None and table.pending else None
        result = wrapped(*args, **kwargs)
        if table is not None and step is not None:
            try:
                self._after_update(table, step)
            except Exception as exc:
                self._log_once("reading a continuous-batching step", exc)
        return result

    def update_and_check_completion(
        self, wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        """``RequestState.update_and_check_completion(token, logprob)`` (``stop_on`` only): once the
        token is accepted, feed the request's monitor; a stop signal ends the request right there, as
        its end of sequence would (the manager then finishes and delivers it as usual)."""
        with self._live_lock:
            live = self._live.pop(id(instance), None) if self._live else None
        finished = wrapped(*args, **kwargs)
        if live is None or finished:
            if live is not None:
                live[0].deliver_row(live[1])
            return finished
        try:
            step, index = live
            step.deliver_row(index)
            trace = step.rows[index].trace
            session = trace.call.session
            if session is not None and session.batched_stop():
                instance.status = type(instance.status).FINISHED
                return True
        except Exception as exc:
            self._log_once("checking a continuous-batching request for stop_on", exc)
        return finished

    def _after_update(self, table: TraceTable, step: BatchStep) -> None:
        if self._live:
            with self._live_lock:
                for row in step.rows:
                    self._live.pop(id(row.state), None)
        if step.error is not None:
            for row in step.rows:
                row.trace.call.internal_error("summarising a continuous-batching step", step.error)
        step.deliver()
        share = step.overhead / max(1, len(step.rows))
        for row in step.rows:
            row.trace.call.hook_seconds += share
            status = getattr(row.state.status, "name", "")
            if status == "FINISHED":
                self._close(table, row.trace, generated=row.state.to_generation_output().generated_tokens)
            elif status == "FAILED":
                self._close(table, row.trace, exception=RuntimeError(row.state.error or "request failed"))

    # -- failure and cancellation -----------------------------------------------------------------
    def fail_and_deliver(
        self, wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        result = wrapped(*args, **kwargs)
        try:
            table = table_for(instance)
            state = args[0] if args else kwargs.get("state")
            error = args[1] if len(args) > 1 else kwargs.get("error")
            if state is not None:
                exception = error if isinstance(error, BaseException) else RuntimeError(str(error))
                self._close_request(table, state.request_id, exception)
        except Exception as exc:
            self._log_once("ending a failed continuous-batching request", exc)
        return result

    def cancel_request(
        self, wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        result = wrapped(*args, **kwargs)
        try:
            table = table_for(getattr(instance, "output_router", None))
            request_id = args[0] if args else kwargs.get("request_id")
            self._close_request(table, request_id, RequestCancelled("the request was cancelled"))
        except Exception as exc:
            self._log_once("ending a cancelled continuous-batching request", exc)
        return result

    def _close_request(self, table: TraceTable | None, request_id: Any, exception: BaseException) -> None:
        """End the traced request ``request_id`` (if it is one) with ``exception``."""
        trace = table.get(request_id) if table is not None and request_id is not None else None
        if table is not None and trace is not None:
            self._close(table, trace, exception=exception)

    def _close(
        self,
        table: TraceTable,
        trace: RequestTrace,
        *,
        generated: list[int] | None = None,
        exception: BaseException | None = None,
    ) -> None:
        """End the request's call once (whoever takes it out of the table ends it)."""
        if table.pop(trace.request_id) is None:
            return
        call = trace.call
        ended = time.perf_counter()
        if exception is not None:
            self._lifecycle.close_call(call, ended, exception=exception)
            return
        outcome = call.guard("reading the result", batched_outcome, call.request, generated or [])
        self._lifecycle.close_call(call, ended, outcome=outcome)
