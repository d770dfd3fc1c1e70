"""Wrapping the seams of optional transformers modules when they are imported, and unwrapping them.

Continuous batching and ``transformers serve`` live in modules that ``generate()`` does not need
(the server's pulls in its web stack), so they are wrapped through post-import hooks: at once when
the module is already imported, else the moment it is. A module's seams are wrapped all or none:
when one is missing (another transformers version, e.g. 4.5x's continuous batching), one INFO line
says which and the module is left alone, so a request is never half traced.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

import wrapt
from opentelemetry.instrumentation.utils import unwrap

logger = logging.getLogger(__name__)

Wrapper = Callable[[Callable[..., Any], Any, tuple[Any, ...], dict[str, Any]], Any]


class Seams:
    """The seams to wrap, per module, and those wrapped so far."""

    def __init__(self, log_once: Callable[[str, BaseException], None]) -> None:
        self._log_once = log_once
        self._active = True
        self._wrapped: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def add(self, module: str, seams: Sequence[tuple[str, Wrapper]]) -> None:
        """Wrap each ``("Class.method", wrapper)`` of ``module`` once it is imported."""

        def wrap_all(loaded: Any) -> None:
            with self._lock:
                if not self._active:
                    return
                missing = [name for name, _ in seams if not _resolves(loaded, name)]
                if missing:
                    logger.info(
                        "CoreVital: %s is not instrumented with this transformers version (no %s); "
                        "generate() still is.", module, ", ".join(missing),
                    )  # fmt: skip
                    return
                for name, wrapper in seams:
                    try:
                        wrapt.wrap_function_wrapper(loaded, name, wrapper)
                        self._wrapped.append((module, name))
                    except Exception as exc:
                        self._log_once(f"wrapping {module}.{name}", exc)

        wrapt.register_post_import_hook(wrap_all, module)

    def remove_all(self) -> None:
        """Unwrap every seam wrapped so far; seams of modules imported later stay unwrapped."""
        with self._lock:
            self._active = False
            for module, name in reversed(self._wrapped):
                owner_name, _, attribute = name.rpartition(".")
                owner = getattr(sys.modules.get(module), owner_name, None)
                if owner is not None:
                    unwrap(owner, attribute)
            self._wrapped.clear()


def _resolves(module: Any, path: str) -> bool:
    """Whether ``Class.method`` exists in ``module``."""
    target: Any = module
    for part in path.split("."):
        target = getattr(target, part, None)
        if target is None:
            return False
    return True
