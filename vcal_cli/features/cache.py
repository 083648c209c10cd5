"""The feature cache: one safetensors file per (checkpoint, data set, split, preprocessing).

Files are written atomically (temp file + rename), so an interrupted run leaves either a complete
entry or none. An unreadable entry is treated as a miss and rebuilt.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors import safe_open

from vcal_cli._io import sha256_json

CACHE_FORMAT = "1"


def default_cache_dir() -> Path:
    """$VCAL_CACHE, else $XDG_CACHE_HOME/vcal, else ~/.cache/vcal."""
    if os.environ.get("VCAL_CACHE"):
        return Path(os.environ["VCAL_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vcal"


def cache_key(parts: dict[str, Any]) -> str:
    return sha256_json({"cache_format": CACHE_FORMAT, **parts})[:24]


@dataclass(frozen=True)
class CacheEntry:
    path: Path
    key: str
    size: int
    info: dict[str, Any]


class FeatureCache:
    """A directory of feature files named by their key."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root).expanduser() if root else default_cache_dir()

    def path(self, key: str) -> Path:
        return self.root / f"{key}.safetensors"

    def entries(self) -> list[CacheEntry]:
        out = []
        for p in sorted(self.root.glob("*.safetensors")) if self.root.is_dir() else []:
            try:
                with safe_open(p, "pt") as f:
                    info = json.loads((f.metadata() or {}).get("vcal_cache", "{}"))
            except Exception:  # noqa: BLE001 - a foreign or broken file is listed, not fatal
                info = {"error": "unreadable"}
            out.append(CacheEntry(p, p.stem, p.stat().st_size, info))
        return out

    def clear(self) -> int:
        """Delete every entry (and stray temp files); return how many entries were removed."""
        n = 0
        for p in list(self.root.glob("*.safetensors")) + list(self.root.glob(".*.tmp")) if self.root.is_dir() else []:
            p.unlink(missing_ok=True)
            n += p.suffix == ".safetensors"
        return n


def cache_info(**fields: Any) -> dict[str, str]:
    return {"vcal_cache": json.dumps({**fields, "created": time.strftime("%Y-%m-%dT%H:%M:%S")})}
