"""Calibration and accuracy metrics, named by their report keys (definitions in `vcal_cli.metrics.compute`).
Torch only: nothing here reads a checkpoint, a data set or the cache."""

from vcal_cli.metrics._validate import DEFAULT_N_BINS, check_bins
from vcal_cli.metrics.calibration import ReliabilityBin
from vcal_cli.metrics.compute import (
    LOWER_IS_BETTER,
    METRIC_NAMES,
    Metrics,
    MetricsResult,
    accuracy,
    aurc,
    brier,
    classwise_ece,
    compute_metrics,
    ece,
    ece_adaptive,
    evaluate_scores,
    make_scores,
    mce,
    nll,
)

__all__ = [
    "DEFAULT_N_BINS",
    "LOWER_IS_BETTER",
    "METRIC_NAMES",
    "Metrics",
    "MetricsResult",
    "ReliabilityBin",
    "accuracy",
    "aurc",
    "brier",
    "check_bins",
    "classwise_ece",
    "compute_metrics",
    "ece",
    "ece_adaptive",
    "evaluate_scores",
    "make_scores",
    "mce",
    "nll",
]
