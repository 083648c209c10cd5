"""A checksum of every cache entry and shard: the data section's xxh3-128 (xxhash), in the file's own metadata.

The header is written first with a placeholder of the digest's length under `vcal_checksum`; the data is hashed
as it is written, and the placeholder is overwritten in place before the file is renamed into place, so writing
costs no second pass. Reading verifies the data section against it (`verify`); a file without the key, or whose
digest differs, or that is shorter than its header says, is damaged: the cache rebuilds it with a warning and never
uses it. xxh3 hashes at several GB/s on one core, a small share of reading the same bytes
(benchmarks/bench_cache.py --checksum measures it).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any, BinaryIO

import xxhash

KEY = "vcal_checksum"
ALGO = "xxh3_128"
PLACEHOLDER = f"{ALGO}:" + "0" * 32  # the digest's exact length, patched in place
_BLOCK = 16 << 20


class Hasher:
    def __init__(self) -> None:
        self._h = xxhash.xxh3_128()

    def update(self, data: Any) -> None:
        self._h.update(data)

    def value(self) -> str:
        return f"{ALGO}:{self._h.hexdigest()}"


def patch(f: BinaryIO, header: bytes, digest: str) -> None:
    """Overwrite the placeholder in the header (at the start of the open file f) with the digest."""
    at = header.index(PLACEHOLDER.encode())
    f.seek(at)
    f.write(digest.encode())
    f.seek(0, 2)


def patch_bytes(blob: bytes) -> bytes:
    """A whole safetensors file in memory, with the placeholder replaced by its data section's digest."""
    (n,) = struct.unpack("<Q", blob[:8])
    h = Hasher()
    h.update(memoryview(blob)[8 + n :])
    return blob.replace(PLACEHOLDER.encode(), h.value().encode(), 1)


def stored(path: Path) -> tuple[str | None, int]:
    """(the digest the file claims, where its data section starts); (None, start) when it claims none."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    return (header.get("__metadata__") or {}).get(KEY), 8 + n


def verify(path: Path) -> str | None:
    """None when the file's data section matches its checksum; otherwise what is wrong, in a few words."""
    try:
        claimed, start = stored(path)
    except (OSError, ValueError, struct.error):
        return "its header is unreadable"
    if not claimed or claimed == PLACEHOLDER:
        return "it carries no checksum"
    h = Hasher()
    with open(path, "rb") as f:
        f.seek(start)
        while block := f.read(_BLOCK):
            h.update(block)
    return None if h.value() == claimed else "its contents do not match its checksum"
