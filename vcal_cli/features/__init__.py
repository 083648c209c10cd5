"""Penultimate features, logits and labels of a split: from the cache, else from one forward pass.

Names are imported on first use (PEP 562), so `vcal cache list` reads the cache without loading torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "DEFAULT_SHARD_SIZE": "settings",
    "ExtractOptions": "settings",
    "LoadOptions": "settings",
    "DataOptions": "settings",
    "CacheOptions": "settings",
    "RuntimeOptions": "settings",
    "FeatureSet": "load",
    "get_features": "load",
    "FeatureCache": "cache",
    "default_cache_dir": "cache",
    "Runtime": "extract",
    "extract_features": "extract",
    "resolve_device": "extract",
    "quiet": "extract",
    "Track": "extract",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"vcal_cli.features.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'vcal_cli.features' has no attribute '{name}'")
