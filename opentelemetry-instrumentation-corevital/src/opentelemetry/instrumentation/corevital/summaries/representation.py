"""A few dozen numbers per step that stand for one middle layer's state (docs/signals.md,
"Representation features").

At the ``hidden`` level the last-position state of the middle decoder layer is multiplied by a
fixed random Gaussian matrix (``[hidden, PROJECTION_DIMS]``, scaled by ``1/sqrt(dims)``, the same for
every call, process and machine: it is drawn from a seeded NumPy generator, never from torch's global
random state, so sampling in the user's generation is untouched). Random projections keep distances
and inner products up to a small distortion (Johnson–Lindenstrauss), so the projected states keep the
geometry the risk features read: the spread of the states over the generated steps and their mean,
which a per-model linear probe scores.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

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


@functools.lru_cache(maxsize=16)
def _projection_matrix(hidden_size: int, dims: int, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(projection_matrix_numpy(hidden_size, dims).copy()).to(device)


def project_states(states: torch.Tensor, dims: int = PROJECTION_DIMS) -> torch.Tensor:
    """``states @ R``: ``[..., hidden]`` in any float dtype → ``[..., dims]`` float32, on the
    states' device (non-finite states give non-finite projections, which the features ignore)."""
    matrix = _projection_matrix(int(states.shape[-1]), dims, states.device)
    return states.float() @ matrix
