"""Extraction from WebDataset shards against an image folder of the same images, in one run.

Fashion-MNIST's 10,000 test images are written twice as PNG files: one folder per class (`imagefolder:`), and tar
shards of 1,000 samples each written by `webdataset.TarWriter` (`wds:`, a `.png` and a `.cls` per sample). A real
resnet18 (`train_models.py`'s `early.pth.tar`) then extracts the test split from each with the cache off, one
`vcal features` process per source (best of `--repeat`), and the features are compared (they must be equal: the same
pixels through the same model, once the rows are in one order: the folder lists them class by class).

    python benchmarks/bench_wds.py [--model ~/.cache/vcal-bench/models/early.pth.tar] [--repeat 2]
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import webdataset as wds
from PIL import Image
from safetensors.numpy import load_file
from train_models import DEFAULT_OUT, DEFAULT_ROOT, _tensors


def write_sources(folder: Path, root: str) -> tuple[str, str]:
    x, y = _tensors("test", root)
    images = folder / "images"
    shards = folder / "shards"
    shards.mkdir(parents=True)
    per = 1000
    for k in range(0, len(y), per):
        with wds.TarWriter(str(shards / f"test-{k // per:06d}.tar")) as w:
            for i in range(k, min(len(y), k + per)):
                buf = io.BytesIO()
                Image.fromarray(x[i, 0].numpy()).save(buf, "PNG")
                w.write({"__key__": f"{i:06d}", "png": buf.getvalue(), "cls": str(int(y[i]))})
                d = images / "test" / f"{int(y[i])}"
                d.mkdir(parents=True, exist_ok=True)
                (d / f"{i:06d}.png").write_bytes(buf.getvalue())
    return f"imagefolder:{images}", f"wds:{shards}"


def extract(model: Path, data: str, out: Path) -> float:
    cmd = [sys.executable, "-m", "vcal_cli", "features", str(model), "--data", data, "--split", "test"]
    cmd += ["--no-cache", "--features-out", str(out)]
    t = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=DEFAULT_OUT / "early.pth.tar")
    ap.add_argument("--root", default=DEFAULT_ROOT)
    ap.add_argument("--repeat", type=int, default=2)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        t = time.perf_counter()
        sources = write_sources(folder, a.root)
        print(f"wrote 10,000 PNGs as an image folder and as 10 shards in {time.perf_counter() - t:.1f} s")
        times, feats = {}, {}
        for data in sources:
            out = folder / f"{data.split(':')[0]}.safetensors"
            times[data] = min(extract(a.model, data, out) for _ in range(a.repeat))
            feats[data] = load_file(out)
        # the folder lists images class by class, the shards in their written order: align by a stable sort on label
        folder_f, shard_f = (feats[s] for s in sources)
        order = np.argsort(shard_f["labels"], kind="stable")
        same = np.array_equal(folder_f["labels"], shard_f["labels"][order])
        same = same and np.array_equal(folder_f["features"], shard_f["features"][order])
        for data, dt in times.items():
            print(f"  {data.split(':')[0]:<12} {dt:6.1f} s (best of {a.repeat}, a whole `vcal features` process)")
        print(f"  ratio wds / imagefolder: {times[sources[1]] / times[sources[0]]:.2f}; features equal: {same}")


if __name__ == "__main__":
    main()
