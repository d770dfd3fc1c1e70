"""How per-step tensors are obtained while ``generate`` runs.

Persistent forward hooks on each model instance (:mod:`.hooks`) hand every forward's outputs to
the capture session that is current in this context (:mod:`.session`); the session summarises
them on the model's device and keeps only the small packed per-step tensors.
"""

from .hooks import HookRegistry, active_session
from .session import CaptureSession, StepTiming

__all__ = ["CaptureSession", "HookRegistry", "StepTiming", "active_session"]
