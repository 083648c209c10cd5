"""Heads: recalibration methods that fit on cached features. One file per head, one registry."""

from vcal_cli.heads import (  # noqa: F401  (each registers its head)
    bayes,
    ce,
    dirichlet,
    haframe,
    histogram,
    isotonic,
    matrix,
    temperature,
    vc,
    vector,
    vtst,
)
from vcal_cli.heads._train import check_train_options, resolve_epochs, resolve_train_device
from vcal_cli.heads.base import HEADS, FitData, Head, HeadParams, list_heads
from vcal_cli.heads.compose import build_module, get_head

__all__ = [
    "HEADS",
    "FitData",
    "Head",
    "HeadParams",
    "build_module",
    "check_train_options",
    "get_head",
    "list_heads",
    "resolve_epochs",
    "resolve_train_device",
]
