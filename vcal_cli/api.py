"""The functions behind the commands, in one place for users to import:

from vcal_cli import audit
report = audit("sample_checkpoints/mlp_digits.safetensors", data="digits")
print(report.metrics["ece"])

Each lives in its own module under `vcal_cli.commands`; the extraction options and `load_features` come from
the features layer (`vcal_cli.features.options`).
"""

from __future__ import annotations

from vcal_cli.commands._shared import load_logits
from vcal_cli.commands.audit import audit, export_features
from vcal_cli.commands.frontier import frontier
from vcal_cli.commands.gate import check_comparable, compare, gate
from vcal_cli.commands.retrain import head_params, resolve_heads, retrain
from vcal_cli.features.options import (
    ExtractOptions,
    default_data,
    load_features,
    load_train_views,
    model_preprocessing,
    open_checkpoint,
)
from vcal_cli.reports.retrain_schema import HeadResult, RetrainReport

__all__ = [
    "ExtractOptions",
    "default_data",
    "load_features",
    "load_train_views",
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
