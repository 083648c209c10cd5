"""vcal: audit and recalibrate image-classifier checkpoints.

The command line (`vcal ...`) is a thin layer over these functions. They are imported on first use
(PEP 562), so `import vcal_cli` and `vcal --help` do not load torch.
"""

from __future__ import annotations

import importlib
from typing import Any

from vcal_cli._version import __version__

_EXPORTS = {
    # commands, as functions
    "audit": "vcal_cli.api",
    "export_features": "vcal_cli.api",
    "retrain": "vcal_cli.api",
    "prediction_sets": "vcal_cli.api",
    "gate": "vcal_cli.api",
    "frontier": "vcal_cli.api",
    "load_features": "vcal_cli.api",
    "Workbench": "vcal_cli.api",
    "ExtractOptions": "vcal_cli.api",
    "AuditSettings": "vcal_cli.api",
    "RetrainSettings": "vcal_cli.api",
    "FrontierSettings": "vcal_cli.api",
    "Statistics": "vcal_cli.api",
    "ConformalOptions": "vcal_cli.api",
    # building blocks
    "load_checkpoint": "vcal_cli.checkpoints",
    "save_checkpoint": "vcal_cli.checkpoints",
    "LoadedModel": "vcal_cli.checkpoints",
    "load_split": "vcal_cli.data",
    "get_features": "vcal_cli.features",
    "FeatureSet": "vcal_cli.features",
    "compute_metrics": "vcal_cli.metrics",
    "Metrics": "vcal_cli.metrics",
    "METRIC_NAMES": "vcal_cli.metrics",
    "AuditReport": "vcal_cli.reports",
    "write_report": "vcal_cli.reports",
    "read_report": "vcal_cli.reports",
    "VcalError": "vcal_cli.errors",
    "return_freed_memory": "vcal_cli._memory",
}
__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'vcal_cli' has no attribute '{name}'")


def __dir__() -> list[str]:
    return sorted(__all__)
