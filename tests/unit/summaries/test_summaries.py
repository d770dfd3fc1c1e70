"""The per-step tensor summaries against straightforward reference computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from opentelemetry.instrumentation.corevital.capture.similarity import StateSimilarity
from opentelemetry.instrumentation.corevital.summaries import (
    ATTENTION_LAYER_FIELDS,
    HIDDEN_LAYER_FIELDS,
    LOGIT_FIELDS,
    chosen_probability,
    last_position_layers,
    logit_metrics,
    summarize_attention,
    summarize_hidden,
    summarize_logits,
    surprisal_bits,
)


def column(name: str, fields: tuple[str, ...]) -> int:
    return fields.index(name)


def metrics_of(logits: torch.Tensor) -> dict[str, np.ndarray]:
    packed, _ = summarize_logits(logits)
    assert packed.shape == (logits.shape[0], len(LOGIT_FIELDS)) and packed.dtype == torch.float32
    return logit_metrics(packed.numpy())


def test_logits_reference_values() -> None:
    torch.manual_seed(0)
    logits = torch.randn(3, 50) * 3
    m = metrics_of(logits)
    _, probs = summarize_logits(logits)
    p = torch.softmax(logits.double(), -1).numpy()
    entropy = -(p * np.log2(p)).sum(-1)
    top = np.sort(p, -1)[:, ::-1]
    np.testing.assert_allclose(m["entropy"], entropy, atol=1e-4)
    np.testing.assert_allclose(m["margin"], top[:, 0] - top[:, 1], atol=1e-6)
    np.testing.assert_allclose(m["topk_mass"], top[:, :10].sum(-1), atol=1e-6)
    np.testing.assert_allclose(m["top_probs"], top[:, :5], atol=1e-6)
    assert m["top_ids"][:, 0].tolist() == logits.argmax(-1).tolist()
    chosen = torch.tensor([0, 5, 49])
    expected = -np.log2(p[np.arange(3), chosen.numpy()])
    np.testing.assert_allclose(surprisal_bits(chosen_probability(probs, chosen).numpy()), expected, rtol=1e-5)


def test_logits_extremes() -> None:
    one_hot = torch.full((1, 20), -1e4)
    one_hot[0, 3] = 1e4
    uniform = torch.zeros(1, 20)
    m = metrics_of(torch.cat([one_hot, uniform]))
    assert m["entropy"][0] == pytest.approx(0.0, abs=1e-6)
    assert m["entropy"][1] == pytest.approx(math.log2(20), rel=1e-6)
    assert m["margin"][0] == pytest.approx(1.0)
    assert m["margin"][1] == pytest.approx(0.0, abs=1e-7)


def test_nan_logits_give_nan_metrics() -> None:
    logits = torch.zeros(2, 10)
    logits[1, 4] = float("nan")
    m = metrics_of(logits)
    assert not np.isnan(m["entropy"][0]) and np.isnan(m["entropy"][1])


def test_entropy_is_never_negative() -> None:
    # Large logits with one clear winner: log-normaliser − Σ p·x cancels to about −0.0003 in float32,
    # and the SDK's histogram rejects a negative sample.
    logits = torch.full((3, 50), 100.0)
    logits[:, 0] = torch.tensor([117.0, 118.0, 116.0])
    logits[2, 7] = float("nan")
    entropy = metrics_of(logits)["entropy"]
    assert (entropy[:2] >= 0).all() and entropy[:2] == pytest.approx([0.0, 0.0], abs=1e-3)
    assert np.isnan(entropy[2])


def test_small_vocabulary_pads_top_k() -> None:
    m = metrics_of(torch.zeros(1, 4))
    assert m["topk_mass"][0] == pytest.approx(1.0)
    assert m["top_ids"][0, 4] == -1


def test_hidden_reference_values() -> None:
    torch.manual_seed(1)
    states = tuple(torch.randn(2, 5, 16) for _ in range(4))  # embeddings + 3 layers
    layers = last_position_layers(states)
    assert layers.shape == (3, 2, 16)
    assert torch.equal(layers[0], states[1][:, -1])
    stats = summarize_hidden(layers)
    assert stats.shape == (2, 3, len(HIDDEN_LAYER_FIELDS))
    x = layers.transpose(0, 1).double()  # [batch, layers, hidden]
    np.testing.assert_allclose(stats[..., column("l2_norm", HIDDEN_LAYER_FIELDS)], x.norm(dim=-1), rtol=1e-5)
    np.testing.assert_allclose(stats[..., column("mean", HIDDEN_LAYER_FIELDS)], x.mean(-1), atol=1e-6)
    np.testing.assert_allclose(
        stats[..., column("std", HIDDEN_LAYER_FIELDS)], x.std(-1, unbiased=False), rtol=1e-5
    )
    np.testing.assert_allclose(
        stats[..., column("max_abs", HIDDEN_LAYER_FIELDS)], x.abs().amax(-1), rtol=1e-6
    )
    assert stats[..., column("nan_count", HIDDEN_LAYER_FIELDS)].sum() == 0


def test_hidden_nan_inf_and_clamping() -> None:
    layers = torch.ones(2, 1, 4)
    layers[1, 0, 0] = float("nan")
    layers[1, 0, 1] = float("inf")
    layers[0, 0, 2] = 5e6
    stats = summarize_hidden(layers)[0]  # [layers, fields]
    assert stats[1, column("nan_count", HIDDEN_LAYER_FIELDS)] == 1
    assert stats[1, column("inf_count", HIDDEN_LAYER_FIELDS)] == 1
    assert stats[0, column("clipped_count", HIDDEN_LAYER_FIELDS)] == 1
    assert stats[0, column("max_abs", HIDDEN_LAYER_FIELDS)] == 1e6
    assert torch.isfinite(stats).all()


def test_hidden_blocks_equal_step_by_step_statistics() -> None:
    """Block-wise statistics (across block boundaries, a size-limited block, a step with NaN/Inf)
    equal the step-by-step ones."""
    from opentelemetry.instrumentation.corevital.capture.hidden_blocks import HiddenSummaryBlocks

    torch.manual_seed(3)
    steps = [torch.randn(3, 2, 16) * (1 + i) for i in range(9)]  # [layers, rows, hidden]
    steps[4][1, 0, 2] = float("nan")
    steps[6][0, 1, 5] = float("inf")
    expected = torch.stack([summarize_hidden(step).flatten(1) for step in steps])  # [steps, rows, L*F]
    for blocks in (HiddenSummaryBlocks(max_block=4), HiddenSummaryBlocks(block_bytes=3 * 2 * 16 * 4 * 2)):
        for step in steps:
            blocks.push(step)
        result = blocks.results()
        assert result is not None and result.shape == expected.shape
        torch.testing.assert_close(result, expected)
    assert HiddenSummaryBlocks().results() is None


def test_state_similarity_previous_and_max() -> None:
    ring = StateSimilarity(window=3)
    a = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    b = torch.tensor([[0.0, 1.0], [2.0, 2.0]])
    previous, similarity = ring.update(a)
    assert torch.isnan(previous).all() and torch.isnan(similarity).all()
    previous, similarity = ring.update(b)
    assert previous.tolist() == pytest.approx([0.0, 1.0])
    assert torch.isnan(similarity).all()  # the previous step does not count
    previous, similarity = ring.update(a)
    assert similarity.tolist() == pytest.approx([1.0, 1.0])  # back where it was two steps ago
    for _ in range(3):  # the ring forgets beyond its window
        ring.update(b)
    assert ring.update(b)[1].tolist() == pytest.approx([1.0, 1.0])


def test_attention_reference_values() -> None:
    uniform = torch.full((1, 2, 3, 4), 0.25)  # [batch, heads, queries, keys]
    one_hot = torch.zeros(1, 2, 3, 4)
    one_hot[..., 0] = 1.0
    stats = summarize_attention([uniform, one_hot])
    assert stats.shape == (1, 2, len(ATTENTION_LAYER_FIELDS))
    col = lambda name: column(name, ATTENTION_LAYER_FIELDS)  # noqa: E731
    assert stats[0, 0, col("entropy_mean")] == pytest.approx(math.log(4))
    assert stats[0, 0, col("entropy_normalized_mean")] == pytest.approx(1.0)
    assert stats[0, 0, col("collapsed_heads")] == 0
    assert stats[0, 1, col("entropy_mean")] == pytest.approx(0.0, abs=1e-7)
    assert stats[0, 1, col("collapsed_heads")] == 2
    assert stats[0, 1, col("focused_heads")] == 2
    assert stats[0, 1, col("concentration_mean")] == pytest.approx(1.0)


def test_attention_normalises_by_unpadded_keys() -> None:
    weights = torch.zeros(2, 1, 1, 4)
    weights[0, 0, 0] = 0.25
    weights[1, 0, 0, 2:] = 0.5  # row 1 has two padding keys
    stats = summarize_attention([weights], key_lengths=torch.tensor([4, 2]))
    normalized = stats[:, 0, column("entropy_normalized_mean", ATTENTION_LAYER_FIELDS)]
    assert normalized.tolist() == pytest.approx([1.0, 1.0])


def test_attention_missing_layer_is_nan() -> None:
    weights = torch.full((1, 2, 1, 4), 0.25)
    stats = summarize_attention([weights, None])
    assert torch.isnan(stats[0, 1]).all() and not torch.isnan(stats[0, 0]).any()
    with pytest.raises(ValueError):
        summarize_attention([None])
