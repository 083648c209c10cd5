"""What the cache's checksum costs: verifying an entry against reading it, at ImageNet shape.

    python benchmarks/bench_checksum.py [--n 1280000] [--dim 2048] [--classes 1000] [--dir DIR] [--keep]

Writes one entry of n rows the way the cache does (float16 features, float32 logits, int64 labels; the digest is
computed while writing), then times, in the same run, on the same file:

1. a plain read of its data section in 16 MB blocks (what any use of the entry costs at least once);
2. `vcal_cli.features.checksum.verify`: the same read, hashed with xxh3-128;

each with the page cache dropped first where this process may drop it (root: /proc/sys/vm/drop_caches), and warm.
Also the write of the entry with and without the digest. Needs n * (2 * dim + 4 * classes + 8) bytes of disk
(5.8 GB at the defaults).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

BLOCK = 16 << 20


def drop_caches() -> bool:
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def plain_read(path: Path, start: int) -> float:
    t = time.perf_counter()
    with open(path, "rb") as f:
        f.seek(start)
        while f.read(BLOCK):
            pass
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_280_000)
    ap.add_argument("--dim", type=int, default=2048)
    ap.add_argument("--classes", type=int, default=1000)
    ap.add_argument("--dir", type=Path, default=None)
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
    from vcal_cli.features import checksum
    from vcal_cli.features.store import write_entry

    folder = Path(a.dir or tempfile.mkdtemp(prefix="vcal-checksum-"))
    path = folder / "entry.safetensors"
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(a.n, a.dim, generator=g, dtype=torch.float32).to(torch.float16)
    logits = torch.randn(a.n, a.classes, generator=g)
    labels = torch.randint(0, a.classes, (a.n,), generator=g)
    size = feats.numel() * 2 + logits.numel() * 4 + labels.numel() * 8
    print(f"entry: {a.n:,} x {a.dim} float16 features, {a.classes} float32 logits: {size / 1e9:.2f} GB")
    t = time.perf_counter()
    write_entry(path, {"features": feats, "logits": logits, "labels": labels}, {})
    print(f"write with the digest: {time.perf_counter() - t:.1f} s")
    del feats, logits, labels
    _, start = checksum.stored(path)
    cold = drop_caches()
    read_cold = plain_read(path, start) if cold else float("nan")
    if cold:
        drop_caches()
    t = time.perf_counter()
    assert checksum.verify(path) is None
    verify_cold = time.perf_counter() - t if cold else float("nan")
    read_warm = min(plain_read(path, start) for _ in range(2))
    t = time.perf_counter()
    assert checksum.verify(path) is None
    verify_warm = time.perf_counter() - t
    if cold:
        print(
            f"cold page cache: read {read_cold:.2f} s, verify {verify_cold:.2f} s: ratio {verify_cold / read_cold:.2f}x"
        )
    else:
        print("cold page cache: cannot drop it here (not root)")
    print(f"warm page cache: read {read_warm:.2f} s, verify {verify_warm:.2f} s: ratio {verify_warm / read_warm:.2f}x")
    print(f"hash rate {size / verify_warm / 1e9:.1f} GB/s (warm)")
    if not a.keep:
        path.unlink()
        if a.dir is None:
            folder.rmdir()


if __name__ == "__main__":
    main()
