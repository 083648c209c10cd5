"""Heads: recalibration methods that fit on cached features. One file per head, one registry."""

from vcal_cli.heads import bayes, ce, haframe, temperature, vc, vtst  # noqa: F401  (each registers its head)
from vcal_cli.heads.base import HEADS, FitData, Head, HeadParams, build_module, get_head, list_heads

__all__ = ["HEADS", "FitData", "Head", "HeadParams", "build_module", "get_head", "list_heads"]
