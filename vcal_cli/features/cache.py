"""The feature cache: one safetensors file per (checkpoint, data set, split, preprocessing, storage).

Entries are written atomically (temp file + rename), so an interrupted run leaves either a complete
entry or none, plus the finished shards it can resume from (`<key>.parts/`, see `store`). An
unreadable entry is treated as a miss and rebuilt.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vcal_cli._io import read_header, sha256_json

CACHE_FORMAT = (
    "3"  # 2: sharded build, vcal's own tensor order, cache dtype in the key; 3: a checksum in every entry and shard
)


def default_cache_dir() -> Path:
    """$VCAL_CACHE, else $XDG_CACHE_HOME/vcal, else ~/.cache/vcal."""
    if os.environ.get("VCAL_CACHE"):
        return Path(os.environ["VCAL_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vcal"


def cache_key(parts: dict[str, Any]) -> str:
    return sha256_json({"cache_format": CACHE_FORMAT, **parts})[:24]


@dataclass(frozen=True, kw_only=True)
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
                info = json.loads((read_header(p)[0].get("__metadata__") or {}).get("vcal_cache", "{}"))
            except Exception:  # a foreign or broken file is listed, not fatal
                info = {"error": "unreadable"}
            st = p.stat()
            created = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(st.st_mtime))
            out.append(CacheEntry(path=p, key=p.stem, size=st.st_size, info={**info, "created": created}))
        return out

    def orphans(self) -> list[tuple[Path, str, int]]:
        """What interrupted runs left: (path, what it is, bytes). A shard folder beside a complete entry, or
        temp files, are pure leftovers (the next run that touches the entry removes them too); a shard folder
        without its entry is an unfinished build a rerun resumes from."""
        if not self.root.is_dir():
            return []
        out = []
        for d in sorted(self.root.glob("*.parts")):
            done = d.with_name(d.name.removesuffix(".parts") + ".safetensors").exists()
            size = sum(p.stat().st_size for p in d.rglob("*") if p.is_file())
            out.append((d, "shards of a finished entry" if done else "unfinished build (resumable)", size))
        for t in sorted(self.root.glob(".*.tmp")):
            out.append((t, "temp file of a killed run", t.stat().st_size))
        return out

    def clear(self) -> int:
        """Delete every entry, unfinished shards and stray temp files; return how many entries were removed."""
        if not self.root.is_dir():
            return 0
        n = 0
        for p in (
            list(self.root.glob("*.safetensors"))
            + list(self.root.glob(".*.tmp"))
            + list(self.root.glob("*.probe.json"))
            + list(self.root.glob("*.safetensors.lock"))  # the build locks of concurrent runs
        ):
            p.unlink(missing_ok=True)
            n += p.suffix == ".safetensors"
        for d in self.root.glob("*.parts"):
            shutil.rmtree(d, ignore_errors=True)
        return n


def cache_info(**fields: Any) -> dict[str, str]:
    """The entry's metadata; no timestamp (the file's mtime tells), so equal extractions give equal bytes."""
    return {"vcal_cache": json.dumps(fields, sort_keys=True)}
