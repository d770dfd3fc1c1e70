"""The ``transformers serve`` wrappers: wiring only (the how is in :mod:`.handoff`).

API server process (``transformers.cli.serving.model_manager``):

- ``EngineClient._send_request(method, args, streamer)``: every request sent to a model's process
  (``generate`` for chat completions, completions and responses, streaming or not; ``submit`` for
  transcriptions and the decision endpoint) carries the submitter's context.

Model's process (``transformers.cli.serving.utils``):

- ``GenerateRunner.generate`` / ``GenerateRunner.submit`` / ``CBGenerateRunner.generate``: run with
  the carried context attached (the continuous-batching runner admits the request right there, so
  its span opens as a child of the request's);
- ``GenerateRunner.__init__``: its work queue carries the context on to its generation thread, where
  ``model.generate()`` opens its span.

A failure here is logged once and the request goes on as it would without CoreVital.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import handoff


class ServingWrappers:
    """The ``wrapt`` wrappers of the ``transformers serve`` seams."""

    def __init__(self, log_once: Callable[[str, BaseException], None]) -> None:
        self._log_once = log_once

    def send_request(
        self, wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        """``EngineClient._send_request(method, args, streamer=None)`` (a coroutine function: the
        context is read when it is called, in the handler's task)."""
        try:
            if len(args) >= 2:
                args = (args[0], handoff.carry(args[0], tuple(args[1])), *args[2:])
            elif "args" in kwargs:
                method = args[0] if args else kwargs.get("method")
                kwargs = {**kwargs, "args": handoff.carry(str(method), tuple(kwargs["args"]))}
        except Exception as exc:
            self._log_once("carrying the request's context to the model's process", exc)
        return wrapped(*args, **kwargs)

    def runner_method(
        self, wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        """A runner's ``generate`` / ``submit``: run inside the context the request carried."""
        context = None
        try:
            context = handoff.carried_context((*args, *kwargs.values()))
        except Exception as exc:
            self._log_once("reading the request's carried context", exc)
        with handoff.attached(context):
            return wrapped(*args, **kwargs)

    def runner_init(
        self, wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        """``GenerateRunner.__init__``: its queue carries the context to its generation thread."""
        result = wrapped(*args, **kwargs)
        try:
            handoff.capture_handoffs(instance.queue)
        except Exception as exc:
            self._log_once("carrying the context to the generation thread", exc)
        return result
