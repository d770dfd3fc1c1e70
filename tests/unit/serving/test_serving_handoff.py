"""The request's context across the hand-offs of ``transformers serve`` (serving.handoff), without
a server: what travels pickled to the model's process, and what runs on the generation thread."""

from __future__ import annotations

import pickle
import queue
import threading
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from opentelemetry.instrumentation.corevital.serving import handoff

TRACER = TracerProvider().get_tracer("test")


def double(x: int) -> int:
    return 2 * x


def test_generate_kwargs_carry_the_context_across_pickling() -> None:
    kwargs = {"max_new_tokens": 5, "temperature": None}
    with TRACER.start_as_current_span("server") as span:
        inputs, carried = handoff.carry("generate", ({"input_ids": [1, 2]}, kwargs))
    assert inputs == {"input_ids": [1, 2]}
    assert isinstance(carried, handoff.CarriedKwargs) and carried == kwargs
    arrived = pickle.loads(pickle.dumps(carried))  # what multiprocessing does
    assert dict(arrived) == kwargs and {**arrived} == kwargs  # spreads as the plain dict did
    context = handoff.carried_context((7, inputs, arrived, False))
    assert context is not None
    parent = trace.get_current_span(context).get_span_context()
    assert parent.trace_id == span.get_span_context().trace_id
    assert parent.span_id == span.get_span_context().span_id


def test_submitted_functions_carry_the_context_and_still_work() -> None:
    with TRACER.start_as_current_span("server"):
        function, args = handoff.carry("submit", (double, (21,)))
    arrived = pickle.loads(pickle.dumps(function))
    assert arrived(*args) == 42
    assert handoff.carried_context((3, arrived, args, False)) is not None


def test_nothing_changes_without_a_context_or_for_other_methods() -> None:
    kwargs: dict[str, Any] = {"max_new_tokens": 5}
    assert handoff.carry("generate", ({}, kwargs))[1] is kwargs  # no span: nothing to carry
    with TRACER.start_as_current_span("server"):
        assert handoff.carry("cancel", (kwargs,)) == (kwargs,)
    assert handoff.carried_context(({}, kwargs)) is None


def test_the_generation_thread_runs_work_in_the_context_it_was_queued_in() -> None:
    work: queue.Queue[Any] = queue.Queue()
    seen: list[Any] = []

    def generation_thread() -> None:  # the shape of GenerateRunner._process_requests
        request_id, function, args, _stream = work.get()
        seen.append((request_id, function(*args), trace.get_current_span().get_span_context()))

    thread = threading.Thread(target=generation_thread)
    thread.start()  # blocked in get() before the queue is patched, as the runner's thread is
    handoff.capture_handoffs(work)
    with TRACER.start_as_current_span("request") as span:
        work.put((1, lambda: trace.get_current_span().get_span_context(), (), False))
    thread.join(timeout=10)
    handoff.release_handoffs(work)
    (request_id, inside, after) = seen[0]
    assert request_id == 1
    assert inside.span_id == span.get_span_context().span_id  # ran inside the request's context
    assert not after.is_valid  # and left the thread's own context as it was
    assert "put" not in vars(work)
