"""Feature files on disk: shards written as they are produced, merged by streaming, read memory-mapped.

A cache entry is one safetensors file holding `labels` (N,) int64, `logits` (N, K) float32 and
`features` (N, D) in the cache dtype (float32, float16 or bfloat16), in that order so every tensor
starts aligned. vcal writes the header itself (sorted keys, padded to 8 bytes), so the same tensors
give the same bytes whoever wrote them; any safetensors reader can open it.

While an entry is built its rows live in `<key>.parts/`: `plan.json` (how the rows are cut) and one
`shard-NNNNNN.safetensors` per finished shard, each written atomically. A killed run leaves the finished
shards behind and the next run with the same plan extracts only the missing ones. The merge copies the
shards into the entry block by block, so peak memory does not grow with the data set.

Reads map the file (copy-on-write: a tensor may be changed in memory, never on disk). `MappedFile.release()`
drops the pages read so far from this process (they stay in the OS page cache), which keeps the resident
set bounded while a loop walks over a cache larger than memory.
"""

from __future__ import annotations

import json
import shutil
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from vcal_cli._io import atomic_write, atomic_write_json, read_header, safetensors_bytes
from vcal_cli._mapped import (  # noqa: F401  (MappedFile, take_rows re-exported)
    FROM_SAFETENSORS,
    SAFETENSORS_DTYPE,
    MappedFile,
    nbytes,
    release_pages,
    take_rows,
)
from vcal_cli.errors import CacheError, UsageError, VcalWarning
from vcal_cli.features import checksum

CACHE_DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
ORDER = ("labels", "logits", "features")  # int64 first, then 4-byte, then 2/4-byte: every tensor starts aligned
_BLOCK = 16 << 20  # bytes copied at a time when merging


def cache_dtype(name: str) -> torch.dtype:

    if name not in CACHE_DTYPES:
        raise UsageError(f"--cache-dtype '{name}' is not supported; choose one of: {', '.join(CACHE_DTYPES)}")
    return CACHE_DTYPES[name]


def header_bytes(specs: dict[str, tuple[torch.dtype, tuple[int, ...]]], metadata: dict[str, str]) -> bytes:
    """The 8-byte length and JSON header for tensors laid out in `ORDER` (then any others by name)."""
    names = [n for n in ORDER if n in specs] + sorted(set(specs) - set(ORDER))
    header: dict[str, Any] = {"__metadata__": metadata} if metadata else {}
    off = 0
    for name in names:
        dtype, shape = specs[name]
        size = nbytes(dtype, shape)
        header[name] = {"dtype": SAFETENSORS_DTYPE[dtype], "shape": list(shape), "data_offsets": [off, off + size]}
        off += size
    text = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text


@dataclass(frozen=True)
class ShardPlan:
    """How N rows are cut into shards of `rows` (a multiple of the batch size, so batches never straddle)."""

    n: int
    rows: int
    batch_size: int

    @classmethod
    def make(cls, n: int, shard_size: int, batch_size: int) -> ShardPlan:
        rows = max(batch_size, -(-shard_size // batch_size) * batch_size)
        return cls(n, rows, batch_size)

    def __len__(self) -> int:
        return -(-self.n // self.rows)

    def bounds(self, i: int) -> tuple[int, int]:
        return i * self.rows, min((i + 1) * self.rows, self.n)


class Parts:
    """The shards of an entry being built, in `<entry>.parts/`."""

    def __init__(self, entry: Path, plan: ShardPlan, identity: dict[str, Any]) -> None:
        self.entry, self.plan = entry, plan
        self.dir = entry.with_name(entry.stem + ".parts")
        self.spec = {"plan": {"n": plan.n, "rows": plan.rows, "batch_size": plan.batch_size}, **identity}

    def prepare(self) -> int:
        """Create the folder; shards of a different plan are dropped. Returns the number of finished shards."""
        plan_file = self.dir / "plan.json"
        try:
            same = json.loads(plan_file.read_text()) == json.loads(json.dumps(self.spec))
        except (OSError, ValueError):  # no plan (or a broken one): shards of unknown cut are not trusted
            same = False
        if not same:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir.mkdir(parents=True, exist_ok=True)
            atomic_write_json(plan_file, self.spec)
        self.check()
        return sum(self.done(i) for i in range(len(self.plan)))

    def shard(self, i: int) -> Path:
        return self.dir / f"shard-{i:06d}.safetensors"

    def done(self, i: int) -> bool:
        return self.shard(i).exists()

    def missing(self) -> list[int]:
        return [i for i in range(len(self.plan)) if not self.done(i)]

    def write(self, i: int, tensors: dict[str, Tensor]) -> None:
        blob = checksum.patch_bytes(safetensors_bytes(tensors, {checksum.KEY: checksum.PLACEHOLDER}))
        atomic_write(self.shard(i), lambda tmp: tmp.write_bytes(blob))

    def check(self) -> int:
        """Drop finished shards that are damaged (truncated, garbled, replaced: their checksum says so), each
        with a warning naming it, and temp files of shards a killed run was writing; returns how many shards were
        dropped (they are extracted again)."""
        for tmp in self.dir.glob(".shard-*.tmp"):
            tmp.unlink(missing_ok=True)
        dropped = 0
        for i in range(len(self.plan)):
            if self.done(i) and (why := checksum.verify(self.shard(i))):
                warnings.warn(
                    f"cache shard '{self.shard(i)}' is damaged ({why}); extracting it again", VcalWarning, stacklevel=2
                )
                self.shard(i).unlink(missing_ok=True)
                dropped += 1
        return dropped

    def merge(self, metadata: dict[str, str]) -> Path:
        """Stream every shard into the entry (atomically), then remove the parts folder."""
        missing = self.missing()
        if missing:
            raise CacheError(f"cannot merge '{self.dir}': {len(missing)} shards are missing (first: {missing[0]})")
        heads = [read_header(self.shard(i)) for i in range(len(self.plan))]
        first = heads[0][0]
        specs = {
            name: (FROM_SAFETENSORS[first[name]["dtype"]], (self.plan.n, *first[name]["shape"][1:]))
            for name in ORDER
            if name in first
        }

        def write(tmp: Path) -> None:
            head = header_bytes(specs, {**metadata, checksum.KEY: checksum.PLACEHOLDER})
            digest = checksum.Hasher()
            with open(tmp, "wb") as out:
                out.write(head)
                for name in [n for n in ORDER if n in specs]:
                    for i, (h, start) in enumerate(heads):
                        lo, hi = h[name]["data_offsets"]
                        with open(self.shard(i), "rb") as src:
                            src.seek(start + lo)
                            _copy(src, out, hi - lo, digest)
                checksum.patch(out, head, digest.value())

        atomic_write(self.entry, write)
        shutil.rmtree(self.dir, ignore_errors=True)
        return self.entry


def _copy(src: Any, dst: Any, n: int, digest: checksum.Hasher) -> None:
    while n > 0:
        block = src.read(min(_BLOCK, n))
        if not block:
            raise CacheError("a shard ended early while merging the feature cache")
        dst.write(block)
        digest.update(block)
        n -= len(block)


def write_entry(path: Path, tensors: dict[str, Tensor], metadata: dict[str, str]) -> Path:
    """Write tensors (in memory or mapped) as one entry in vcal's layout, 16 MB at a time (exports)."""
    specs = {k: (v.dtype, tuple(v.shape)) for k, v in tensors.items()}

    def write(tmp: Path) -> None:
        head = header_bytes(specs, {**metadata, checksum.KEY: checksum.PLACEHOLDER})
        digest = checksum.Hasher()
        with open(tmp, "wb") as out:
            out.write(head)
            for name in [n for n in ORDER if n in specs] + sorted(set(specs) - set(ORDER)):
                t = tensors[name].contiguous()
                t = t.view(torch.int16) if t.dtype == torch.bfloat16 else t
                rows = max(1, _BLOCK // max(1, t[0].numel() * t.element_size())) if t.ndim else 1
                for a in range(0, max(1, len(t)) if t.ndim else 1, rows):
                    block = t[a : a + rows] if t.ndim else t
                    data = block.numpy().data
                    out.write(data)
                    digest.update(data)
                    release_pages(block)  # a mapped source leaves the process block by block
            checksum.patch(out, head, digest.value())

    return atomic_write(path, write)
