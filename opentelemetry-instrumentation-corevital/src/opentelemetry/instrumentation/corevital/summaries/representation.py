"""A few dozen numbers per step that stand for one middle layer's state (docs/signals.md,
"Representation features").

At the ``hidden`` level the last-position state of the middle decoder layer is multiplied by a
fixed random Gaussian matrix (``[hidden, PROJECTION_DIMS]``, scaled by ``1/sqrt(dims)``, the same for
every call, process and machine: it is drawn from a seeded NumPy generator, never from torch's global
random state, so sampling in the user's generation is untouched). Random projections keep distances
and inner products up to a small distortion (Johnson–Lindenstrauss), so the projected states keep the
geometry the risk features read: the spread of the states over the generated steps and their mean,
which a per-model linear probe scores. The matrix, its width and the layer are defined in
``projection`` (pure NumPy), so that a fitted probe can check them without torch.
"""

from __future__ import annotations

import functools

import torch

from ..projection import PROJECTION_DIMS, PROJECTION_SEED, projection_matrix_numpy, representation_layer

__all__ = [
    "PROJECTION_DIMS",
    "PROJECTION_SEED",
    "project_states",
    "projection_matrix_numpy",
    "representation_layer",
]


@functools.lru_cache(maxsize=16)
def _projection_matrix(hidden_size: int, dims: int, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(projection_matrix_numpy(hidden_size, dims).copy()).to(device)


def project_states(states: torch.Tensor, dims: int = PROJECTION_DIMS) -> torch.Tensor:
    """``states @ R``: ``[..., hidden]`` in any float dtype → ``[..., dims]`` float32, on the
    states' device (non-finite states give non-finite projections, which the features ignore)."""
    matrix = _projection_matrix(int(states.shape[-1]), dims, states.device)
    return states.float() @ matrix
