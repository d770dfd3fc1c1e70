"""The random projection of one middle layer's state (docs/signals.md, "Representation features"):
its width, seed, layer and matrix, in one neutral place (pure NumPy) that the device-side summaries
(``summaries.representation``) and the host-side features and probes (``signals.representation``)
both read, so that neither room imports the other.
"""

from __future__ import annotations

import functools

import numpy as np

#: Width of the projected state.
PROJECTION_DIMS = 32
#: Seed of the projection matrix (changing it invalidates every fitted probe).
PROJECTION_SEED = 13


def representation_layer(layers: int) -> int:
    """Index (among the decoder layers, embeddings excluded) of the layer that is projected: the
    middle one, where hallucination-detection work finds the most separable states.

    >>> representation_layer(30), representation_layer(2), representation_layer(1)
    (15, 1, 0)
    """
    return max(0, layers // 2)


@functools.lru_cache(maxsize=8)
def projection_matrix_numpy(hidden_size: int, dims: int = PROJECTION_DIMS) -> np.ndarray:
    """The fixed ``[hidden_size, dims]`` float32 projection (read-only)."""
    rng = np.random.default_rng([PROJECTION_SEED, hidden_size, dims])
    matrix = (rng.standard_normal((hidden_size, dims)) / np.sqrt(dims)).astype(np.float32)
    matrix.setflags(write=False)
    return matrix
