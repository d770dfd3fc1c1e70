"""What ``corevital calibrate`` writes: a refitted risk model, or a healthy baseline, into a model
profile (YAML). The healthy-run calibration profile (JSON) is written by ``signals.calibration``."""

from __future__ import annotations

import logging
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

from .calibrate_inputs import BadInput
from .profile_files import MAX_PROFILE_BYTES, Unusable, parse_yaml, read_text
from .projection import PROJECTION_DIMS
from .signals.risk import DEFAULT_RISK_FEATURES, RISK_FEATURES

logger = logging.getLogger(__name__)

__all__ = ["write_baseline_profile", "write_risk_profile"]


def write_risk_profile(
    prompts: list[dict[str, Any]],
    done: dict[int, dict[str, Any]],
    model: Any,
    out: Path,
    partial: Path,
    state_features: bool = False,
) -> int:
    """Fit the risk model on the labelled runs (with the hidden-state features and the state probe
    when ``state_features``) and write it as a model profile (YAML)."""
    import yaml

    from .fitting import fit_risk_model

    indices = sorted(done)
    features = np.array(
        [done[i]["features"] + done[i].get("state_mean", [math.nan] * PROJECTION_DIMS) for i in indices],
        dtype=float,
    )
    labels = np.array([float(prompts[i]["label"]) for i in indices])
    if len(set(labels.tolist())) < 2:
        raise BadInput("--labels needs both failed (1) and good (0) generations")
    shapes = {tuple(done[i].get("probe_shape", (0, 0))) for i in indices} - {(0, 0)}
    shape = shapes.pop() if len(shapes) == 1 else (0, 0)
    probe_shape = (int(shape[0]), int(shape[1])) if min(shape) > 0 else None
    use = RISK_FEATURES if state_features else DEFAULT_RISK_FEATURES
    risk_model = fit_risk_model(features, labels, probe_shape=probe_shape, use=use)
    if state_features and risk_model.probe is None:
        logger.warning(
            "--state-features: no state probe fitted (the runs have no hidden states of one shape, or "
            "the usable runs lack a failed or a good one); the risk model reads state_spread only"
        )
    model_type = str(getattr(getattr(model, "config", None), "model_type", "") or "default")
    profile = {"name": model_type, "risk_model": risk_model.to_mapping()}
    header = f"# Risk model refitted by `corevital calibrate --labels` on {len(indices)} labelled runs.\n"
    out.write_text(header + yaml.safe_dump(profile, sort_keys=False))
    partial.unlink(missing_ok=True)
    print(f"wrote {out}: risk model for model type {model_type!r} from {len(indices)} runs", file=sys.stderr)
    return 0


def write_baseline_profile(
    done: dict[int, dict[str, Any]], model: Any, out: Path, partial: Path, budget: float
) -> int:
    """Build the healthy baseline from the runs and write it into the model profile ``out``."""
    import yaml

    from .baseline_spec import baseline_spec, merge_baselines, model_shape
    from .signals.baseline import HealthyRun, build_baseline

    shape = model_shape(model)
    if shape is None:
        raise BadInput("the model's config has no hidden_size, num_hidden_layers and vocab_size: no baseline")
    runs = [
        HealthyRun(
            np.asarray(record["series"]["entropy"], dtype=float),
            np.asarray(record["layers"]["hidden.l2_norm"], dtype=float),
        )
        for record in done.values()
    ]
    try:
        baseline = build_baseline(runs, *shape, budget=budget)
    except ValueError as exc:
        raise BadInput(f"no baseline written: {exc}") from None
    data: dict[str, Any] = {}
    if out.exists():  # a profile to update: read as safely as the instrumentor reads one
        try:
            loaded = parse_yaml(read_text(out, MAX_PROFILE_BYTES))
        except Unusable as exc:
            raise BadInput(f"--out {out}: {exc}") from None
        data = loaded if isinstance(loaded, dict) else {}
    model_type = str(getattr(getattr(model, "config", None), "model_type", "") or "default")
    data.setdefault("name", model_type)
    spec = baseline_spec(baseline, f"corevital calibrate --prompts ({len(runs)} healthy runs)")
    data["baselines"] = merge_baselines(data.get("baselines") or [], [spec])
    header = '# Healthy baseline written by `corevital calibrate --prompts` (docs/signals.md, "Baseline").\n'
    out.write_text(header + yaml.safe_dump(data, sort_keys=False, width=110))
    partial.unlink(missing_ok=True)
    print(
        f"wrote {out}: baseline of {shape} from {len(runs)} runs at a false-alarm budget of {budget:g} "
        f"(high entropy above {baseline.high_entropy_threshold_bits:.2f} bits)",
        file=sys.stderr,
    )
    return 0
