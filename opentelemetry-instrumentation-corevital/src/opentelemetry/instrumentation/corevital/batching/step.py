"""One packed forward of continuous batching, summarised for the requests it carries.

A continuous-batching forward packs every scheduled request's new tokens into one ``[1, tokens]``
sequence; ``logits_indices`` names the position whose logits predict each request's next token
(only requests whose prefill is complete have one, first in the batch order). The summaries are the
same functions ``generate()`` uses (:mod:`..summaries`), run once over the rows of all the traced
requests together (vectorised), never per request: the raw logits of those rows, and, at the hidden
level, every layer's state at those same positions. Each request then keeps only its own
``[1, width]`` row of the packed step (:meth:`CaptureSession.add_batched_step`).

The probabilities are kept until the step's tokens are sampled (the batch update), to look up the
probability of the token each request got.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch

from ..capture import CaptureError, StepLayout, drop_outputs
from ..summaries import chosen_probability, summarize_hidden, summarize_logits


@dataclass
class BatchRow:
    """A traced request in one packed forward: its trace, its logits row, and how many tokens it had
    generated before this step (its new token is the one after)."""

    trace: Any  # batching.traces.RequestTrace
    logits_row: int
    state: Any  # transformers' RequestState
    generated_before: int
    delivered: bool = False


@dataclass
class BatchStep:
    """Observer of one packed forward (the forward hooks dispatch to it, as to a capture session).

    Args:
        model: the model whose forward is observed.
        rows: the traced requests with a new token in this forward.
        hidden: summarise hidden states too (some row is captured at the hidden level).
        summarise: some row is captured at all (otherwise only times are recorded).
    """

    model: Any
    rows: list[BatchRow]
    hidden: bool
    summarise: bool
    packed: torch.Tensor | None = None
    probs: torch.Tensor | None = None
    states: torch.Tensor | None = None
    layout: StepLayout = field(default_factory=StepLayout)
    at: float = 0.0
    error: BaseException | None = None
    overhead: float = 0.0
    _added: bool = False

    # -- the forward hooks (see capture.hooks) --------------------------------------------------
    def before_forward(
        self, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]] | None:
        """Ask the forward for hidden states when a traced row needs them."""
        if not (self.summarise and self.hidden) or kwargs.get("output_hidden_states"):
            return None
        kwargs["output_hidden_states"] = True
        self._added = True
        return args, kwargs

    def after_forward(self, kwargs: dict[str, Any], output: Any) -> None:
        """Summarise the traced rows of the forward, then drop what only the capture asked for."""
        started = time.perf_counter()
        try:
            if self.summarise and self.error is None:
                self._summarize(kwargs, output)
        except Exception as exc:
            self.error = exc
        finally:
            if self._added:
                drop_outputs(output, ("hidden_states",))
                self._added = False
            self.overhead += time.perf_counter() - started

    def _summarize(self, kwargs: dict[str, Any], output: Any) -> None:
        logits = getattr(output, "logits", None)
        if not isinstance(logits, torch.Tensor) or logits.dim() != 3:
            raise CaptureError(f"{type(output).__name__} has no [1, tokens, vocab] logits")
        indices = kwargs.get("logits_indices")
        if not isinstance(indices, torch.Tensor):
            raise CaptureError("the packed forward has no logits_indices")
        rows = torch.tensor([row.logits_row for row in self.rows], device=logits.device)
        if "logits_to_keep" in kwargs:  # the model kept only the logits_indices positions
            selected = logits[0].index_select(0, rows)
        else:
            selected = logits[0].index_select(0, indices.to(logits.device).long().index_select(0, rows))
        packed_logits, self.probs = summarize_logits(selected)
        parts = [packed_logits]
        hidden_layers = 0
        if self.hidden:
            hidden = getattr(output, "hidden_states", None)
            if not hidden:
                raise CaptureError("the packed forward returned no hidden states")
            layers = hidden[1:] if len(hidden) > 1 else hidden
            positions = indices.to(layers[0].device).long().index_select(0, rows.to(layers[0].device))
            stacked = torch.stack([layer[0].index_select(0, positions) for layer in layers])  # [L, k, H]
            hidden_layers = int(stacked.shape[0])
            summary = summarize_hidden(stacked)
            nan_columns = torch.full((stacked.shape[1], 2), float("nan"), device=summary.device)
            parts += [summary.flatten(1), nan_columns]
            self.states = stacked[-1].float()
        self.layout = StepLayout(hidden_layers, 0)
        self.packed = torch.cat(parts, dim=1)

    # -- after the batch update: the step's tokens are known ----------------------------------------
    def deliver(self) -> None:
        """Hand each traced request (not yet handed it) its row of the step; the probabilities of
        all the new tokens are looked up in one gather."""
        chosen = None
        if self.probs is not None and self.error is None:
            tokens = torch.tensor([max(_new_token(row), 0) for row in self.rows], device=self.probs.device)
            chosen = chosen_probability(self.probs, tokens)
        for index, row in enumerate(self.rows):
            if not row.delivered:
                self.deliver_row(index, chosen[index : index + 1] if chosen is not None else None)
        self.probs = None

    def deliver_row(self, index: int, chosen: torch.Tensor | None = None) -> None:
        """Hand one request its row, with the probability of its new token (looked up here unless
        given) and the token itself (fed to its monitor when it runs live, ``stop_on``)."""
        row = self.rows[index]
        row.delivered = True
        session = row.trace.call.session
        token = _new_token(row)
        if session is None or token < 0:
            return  # no token this step (e.g. the request was cancelled meanwhile)
        at = self.at or time.perf_counter()
        if self.packed is None or self.probs is None or self.error is not None:
            session.add_batched_step(at)
            return
        if chosen is None:
            probs = self.probs[index : index + 1]
            chosen = chosen_probability(probs, torch.tensor([token], device=probs.device))
        state = self.states[index : index + 1] if self.states is not None else None
        session.add_batched_step(at, self.packed[index : index + 1], self.layout, chosen, state, token)


def _new_token(row: BatchRow) -> int:
    generated = row.state.generated_tokens
    return int(generated[-1]) if len(generated) > row.generated_before else -1
