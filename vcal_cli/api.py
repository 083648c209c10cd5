"""The functions behind the commands, in one place for users to import:

from vcal_cli import audit
report = audit("sample_checkpoints/mlp_digits.safetensors", data="digits")
print(report.metrics["ece"])

Each lives in its own module under `vcal_cli.commands` and takes a checkpoint path or a `Workbench` (the checkpoint
opened once with its data, from the features layer, `vcal_cli.session.workbench`).
"""

from __future__ import annotations

from typing import Any

import torch

from vcal_cli.commands.audit import audit, export_features
from vcal_cli.commands.frontier import frontier
from vcal_cli.commands.gate import check_comparable, compare, gate
from vcal_cli.commands.retrain import head_params, resolve_heads, retrain
from vcal_cli.commands.steps import guarantees, load_logits
from vcal_cli.metrics.conformal import ConformalOptions
from vcal_cli.metrics.conformal import check_options as check_conformal
from vcal_cli.metrics.risk_control import check_risk
from vcal_cli.reports.retrain_schema import HeadResult, RetrainReport
from vcal_cli.session.workbench import (
    ExtractOptions,
    Workbench,
    default_data,
    load_features,
    model_preprocessing,
    open_checkpoint,
)

__all__ = [
    "prediction_sets",
    "ConformalOptions",
    "ExtractOptions",
    "default_data",
    "load_features",
    "Workbench",
    "model_preprocessing",
    "open_checkpoint",
    "audit",
    "export_features",
    "load_logits",
    "retrain",
    "resolve_heads",
    "head_params",
    "HeadResult",
    "RetrainReport",
    "frontier",
    "gate",
    "check_comparable",
    "compare",
]


def prediction_sets(
    val_scores: Any,
    val_labels: Any,
    test_scores: Any,
    test_labels: Any,
    *,
    alphas: tuple[float, ...] = (0.1,),
    scores: tuple[str, ...] | None = None,
    probs: bool = False,
    target_risk: float | None = None,
    delta: float = 0.05,
    k_reg: int | None = None,
    lam: float | None = None,
    n_bootstrap: int = 200,
    seed: int = 0,
    class_names: list[str] | None = None,
) -> dict[str, Any]:
    """Prediction sets with a coverage guarantee, and risk-controlled abstention, on arrays from any framework.

    `val_scores` / `test_scores` are logits (N, K), or probabilities with `probs=True` (NumPy arrays or tensors);
    the labels are class indices. Returns what `vcal audit --conformal ... --target-risk ...` writes into report.json:
    `{"conformal": {score: {alpha: row}}, "risk_control": {...}}` (see `vcal_cli.metrics.conformal` and
    `vcal_cli.metrics.risk_control`)::

        from vcal_cli import prediction_sets
        out = prediction_sets(val_logits, val_y, test_logits, test_y, alphas=(0.1,), target_risk=0.02)
        out["conformal"]["aps"]["0.1"]["coverage"], out["conformal"]["aps"]["0.1"]["set_size"]
    """
    tensors = [torch.as_tensor(x) for x in (val_scores, val_labels, test_scores, test_labels)]
    vs, vy, ts, ty = tensors
    if probs:
        vs, ts = vs.double().clamp_min(1e-300).log(), ts.double().clamp_min(1e-300).log()
    o = ConformalOptions(
        tuple(alphas), scores if scores is None else tuple(scores), k_reg, lam, target_risk, delta, n_bootstrap, seed
    )
    check_risk(target_risk, delta)
    o, _ = check_conformal(o, vy if o.alphas else None, class_names)
    found, _ = guarantees(vs, vy.long(), ts, ty.long(), o, class_names)
    return found
