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
from vcal_cli.commands.settings import AuditSettings, FrontierSettings, RetrainSettings, Statistics
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
    "AuditSettings",
    "RetrainSettings",
    "FrontierSettings",
    "Statistics",
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
    options: ConformalOptions | None = None,
    probs: bool = False,
    class_names: list[str] | None = None,
) -> dict[str, Any]:
    """Prediction sets with a coverage guarantee, and risk-controlled abstention, on arrays from any framework.

    `val_scores` / `test_scores` are logits (N, K), or probabilities with `probs=True` (NumPy arrays or tensors);
    the labels are class indices; `options` says what to compute (default: sets at alpha 0.1 by every score).
    Returns what `vcal audit --conformal ... --target-risk ...` writes into report.json:
    `{"conformal": {score: {alpha: row}}, "risk_control": {...}}` (see `vcal_cli.metrics.conformal` and
    `vcal_cli.metrics.risk_control`)::

        from vcal_cli import ConformalOptions, prediction_sets
        want = ConformalOptions(alphas=(0.1,), target_risk=0.02)
        out = prediction_sets(val_logits, val_y, test_logits, test_y, options=want)
        out["conformal"]["aps"]["0.1"]["coverage"], out["conformal"]["aps"]["0.1"]["set_size"]
    """
    tensors = [torch.as_tensor(x) for x in (val_scores, val_labels, test_scores, test_labels)]
    vs, vy, ts, ty = tensors
    if probs:
        vs, ts = vs.double().clamp_min(1e-300).log(), ts.double().clamp_min(1e-300).log()
    o = options or ConformalOptions(alphas=(0.1,))
    check_risk(o.target_risk, o.delta)
    o, _ = check_conformal(o, vy if o.alphas else None, class_names)
    found, _ = guarantees(vs, vy.long(), ts, ty.long(), o, class_names)
    return found
