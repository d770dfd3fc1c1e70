"""The request's OpenTelemetry context, carried from where a request is submitted to where it runs.

``transformers serve`` (5.x) runs each model in a process of its own: the API server's handler
sends ``(method, request id, *args)`` to the model's process through a multiprocessing queue
(``EngineClient._send_request``); there, the engine hands the request to its runner
(``GenerateRunner.generate`` / ``submit``, ``CBGenerateRunner.generate``), and the sequential runner
queues it once more, to its own generation thread. The context is lost twice: across the process
boundary and across the thread hand-off. Three small pieces carry it, each doing one thing:

1. :func:`carry` (API server): the context current where the request is submitted (the HTTP server
   span) is injected with the global propagator (W3C ``traceparent`` by default) into a carrier
   that travels *inside* the request's arguments: the ``generation_kwargs`` dict becomes a
   :class:`CarriedKwargs` (a ``dict`` with one extra attribute), a submitted function a
   :class:`CarriedCall`. Both behave exactly like what they wrap, so a model process without
   CoreVital runs them unchanged.
2. :func:`attached` (model's process): the runner's method runs with the carried context attached.
3. :func:`capture_handoffs` (model's process): the runner's own queue captures the context current
   when work is put on it, and its generation thread runs that work inside it.

Everything here is best-effort: a failure leaves the request as it was (logged once by the caller).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate

Carrier = dict[str, str]


class CarriedKwargs(dict):
    """A request's ``generation_kwargs``, with the submitter's context in ``carrier`` (pickled
    with the dict: a ``dict`` subclass keeps its instance attributes across processes)."""

    carrier: Carrier

    def __init__(self, kwargs: Mapping[str, Any], carrier: Carrier) -> None:
        super().__init__(kwargs)
        self.carrier = dict(carrier)


class CarriedCall:
    """A function submitted to the model's process, with the submitter's context in ``carrier``;
    calling it calls the function."""

    def __init__(self, function: Callable[..., Any], carrier: Carrier) -> None:
        self.function = function
        self.carrier = dict(carrier)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.function(*args, **kwargs)


def current_carrier() -> Carrier:
    """The current context as propagation headers (empty when there is nothing to carry)."""
    carrier: Carrier = {}
    propagate.inject(carrier)
    return carrier


def carry(method: str, args: tuple[Any, ...]) -> tuple[Any, ...]:
    """The arguments of an engine request (``EngineClient._send_request(method, args)``), with the
    current context inside them; unchanged for a method that carries nothing or an empty context.

    ``generate`` takes ``(inputs, generation_kwargs)``; ``submit`` takes ``(function, args)``.
    """
    if method not in ("generate", "submit") or len(args) != 2:
        return args
    carrier = current_carrier()
    if not carrier:
        return args
    first, second = args
    if method == "generate" and isinstance(second, dict) and not isinstance(second, CarriedKwargs):
        return (first, CarriedKwargs(second, carrier))
    if method == "submit" and callable(first) and not isinstance(first, CarriedCall):
        return (CarriedCall(first, carrier), second)
    return args


def carried_context(values: tuple[Any, ...]) -> otel_context.Context | None:
    """The context carried by any of a runner method's arguments (``None``: none carried)."""
    for value in values:
        carrier = getattr(value, "carrier", None)
        if isinstance(value, (CarriedKwargs, CarriedCall)) and carrier:
            return propagate.extract(carrier)
    return None


@contextlib.contextmanager
def attached(context: otel_context.Context | None) -> Iterator[None]:
    """Run the block inside ``context`` (nothing when ``None``)."""
    if context is None:
        yield
        return
    token = otel_context.attach(context)
    try:
        yield
    finally:
        otel_context.detach(token)


class InContext:
    """A piece of work that runs inside the context current when it was handed off."""

    def __init__(self, function: Callable[..., Any], context: otel_context.Context) -> None:
        self.function = function
        self.context = context

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with attached(self.context):
            return self.function(*args, **kwargs)


def capture_handoffs(work_queue: Any) -> None:
    """Make ``work_queue`` (a ``GenerateRunner``'s ``queue.Queue`` of ``(request id, function,
    args, stream)``) capture the context current at ``put`` and run each function inside it.

    The queue's own ``put`` is shadowed on this one instance (its generation thread, already blocked
    in ``get``, is untouched); any other item passes through as it is.
    """
    if getattr(work_queue, "_corevital_put", None) is not None:
        return
    original = work_queue.put

    def put(item: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            if isinstance(item, tuple) and len(item) == 4 and callable(item[1]):
                item = (item[0], InContext(item[1], otel_context.get_current()), item[2], item[3])
        except Exception:  # never lose the request
            pass
        return original(item, *args, **kwargs)

    work_queue._corevital_put = original
    work_queue.put = put


def release_handoffs(work_queue: Any) -> None:
    """Undo :func:`capture_handoffs` on ``work_queue``."""
    original = getattr(work_queue, "_corevital_put", None)
    if original is not None:
        del work_queue.put
        del work_queue._corevital_put
