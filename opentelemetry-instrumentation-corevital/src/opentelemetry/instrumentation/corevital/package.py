"""The library versions this instrumentation supports (the tox matrix tests both ends)."""

_instruments = ("transformers >= 4.50, < 6", "torch >= 2.4")

_supports_metrics = True
