"""vcal: audit and recalibrate image-classifier checkpoints.

The command line (`vcal ...`) is a thin layer over these functions.
"""

from vcal_cli._memory import return_freed_memory
from vcal_cli._version import __version__
from vcal_cli.api import ExtractOptions, audit, export_features, load_features
from vcal_cli.checkpoints import LoadedModel, load_checkpoint, save_checkpoint
from vcal_cli.data import load_split
from vcal_cli.errors import VcalError
from vcal_cli.features import FeatureSet, get_features
from vcal_cli.metrics import METRIC_NAMES, Metrics, compute_metrics
from vcal_cli.reports import AuditReport, read_report, write_report

__all__ = [
    "__version__",
    # commands, as functions
    "audit",
    "export_features",
    "load_features",
    "ExtractOptions",
    # building blocks
    "load_checkpoint",
    "save_checkpoint",
    "LoadedModel",
    "load_split",
    "get_features",
    "FeatureSet",
    "compute_metrics",
    "Metrics",
    "METRIC_NAMES",
    "AuditReport",
    "write_report",
    "read_report",
    "VcalError",
    "return_freed_memory",
]
