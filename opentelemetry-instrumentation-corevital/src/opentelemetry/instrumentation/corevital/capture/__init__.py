"""How per-step tensors are obtained while ``generate`` runs.

Persistent forward hooks on each model instance (:mod:`.hooks`) hand every forward's outputs to
the capture session that is current in this context (:mod:`.session`); the session summarises
them on the model's device and keeps only the small packed per-step tensors. Attention is read where
transformers computes it, through its attention interface (:mod:`.attention`).
"""

from .hooks import HookRegistry, active_session
from .layout import StepLayout
from .outputs import drop_outputs
from .recording import Recording, Steps
from .session import CaptureSession
from .steps import CaptureError

__all__ = [
    "CaptureError",
    "CaptureSession",
    "HookRegistry",
    "Recording",
    "StepLayout",
    "Steps",
    "active_session",
    "drop_outputs",
]
