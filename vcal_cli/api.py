"""The functions behind the commands, in one place for users to import:

from vcal_cli import audit
report = audit("sample_checkpoints/mlp_digits.safetensors", data="digits")
print(report.metrics["ece"])

Each lives in its own module under `vcal_cli.commands` and takes a checkpoint path or a `Workbench` (the checkpoint
opened once with its data, from the features layer, `vcal_cli.features.workbench`).
"""

from __future__ import annotations

from vcal_cli.commands.audit import audit, export_features
from vcal_cli.commands.frontier import frontier
from vcal_cli.commands.gate import check_comparable, compare, gate
from vcal_cli.commands.retrain import head_params, resolve_heads, retrain
from vcal_cli.commands.steps import load_logits
from vcal_cli.features.workbench import (
    ExtractOptions,
    Workbench,
    default_data,
    load_features,
    model_preprocessing,
    open_checkpoint,
)
from vcal_cli.reports.retrain_schema import HeadResult, RetrainReport

__all__ = [
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
