"""Detection-quality evaluation of CoreVital on the real SmolLM2-135M (see docs/evaluation.md)."""
