"""Caches larger than memory: peak resident memory of vcal's steps on a 1,000,000 x 2048 float16 cache.

    python benchmarks/bench_cache.py [--n 1000000] [--dim 2048] [--classes 100] [--dir DIR] [--heads ...]

Writes a synthetic cache the way extraction does (float16 shards of 8,192 rows as they are produced,
then one streamed merge) plus a val entry of n/20 rows, then runs each step in its own process and
prints its peak RSS (`ru_maxrss`, which counts the mapped file pages the process holds):

- baseline: the entry loaded with `safetensors.torch.load_file` and read once (everything in memory);
- audit metrics: all eight metrics with the 200-resample bootstrap, streamed over the mapped logits;
- every head that trains in mini-batches (ce, vtst, vc, haframe; temperature fits on the val logits)
  for one epoch over the mapped train features, with a small latent (memory does not depend on it).

`bayes` is left out: its Laplace fit solves on the whole (N, D+1) design matrix in float64.
Needs about n * (2 * dim + 4 * classes + 8) bytes of disk (4.5 GB at the defaults).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

SHARD = 8192


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def write_cache(path: Path, n: int, dim: int, classes: int, seed: int) -> None:
    from vcal_cli.features.store import Parts, ShardPlan

    g = torch.Generator().manual_seed(seed)
    means = torch.randn(classes, dim, generator=torch.Generator().manual_seed(0)) * 0.5
    plan = ShardPlan.make(n, SHARD, 256)
    parts = Parts(path, plan, {"entry": path.name})
    parts.prepare()
    for i in range(len(plan)):
        a, b = plan.bounds(i)
        y = torch.randint(0, classes, (b - a,), generator=g)
        feats = (means[y] + torch.randn(b - a, dim, generator=g)).half()
        logits = torch.randn(b - a, classes, generator=g) * 2 + 3 * torch.nn.functional.one_hot(y, classes)
        parts.write(i, {"features": feats, "logits": logits.float(), "labels": y})
    info = {"n": n, "feature_dim": dim, "cache_dtype": "float16", "data": "synthetic"}
    parts.merge({"vcal_cache": json.dumps(info)})


def phase(a: argparse.Namespace) -> dict:
    from vcal_cli._memory import return_freed_memory

    return_freed_memory()  # as the CLI does
    d = Path(a.dir)
    train, val = d / "train.safetensors", d / "val.safetensors"
    t0 = time.perf_counter()
    out: dict = {}
    if a.phase == "write":
        write_cache(train, a.n, a.dim, a.classes, 1)
        write_cache(val, max(1000, a.n // 20), a.dim, a.classes, 2)
        out["disk_gb"] = (train.stat().st_size + val.stat().st_size) / 1e9
    elif a.phase == "baseline":
        from safetensors.torch import load_file

        t = load_file(str(train))  # lazy: touch every byte so the whole cache is resident, as in memory
        out["rows"] = len(t["labels"])
        out["max_byte"] = max(int(v.view(torch.uint8).max()) for v in t.values())
    elif a.phase == "metrics":
        from vcal_cli.features import FeatureSet
        from vcal_cli.metrics import compute_metrics

        fs = FeatureSet.load(train)
        r = compute_metrics(fs.labels, logits=fs.logits, n_bootstrap=200)
        out["ece"] = r.metrics.ece
    else:
        from vcal_cli.features import FeatureSet
        from vcal_cli.heads import FitData, get_head
        from vcal_cli.hierarchy import Hierarchy

        tr, va = FeatureSet.load(train), FeatureSet.load(val)
        cls = get_head(a.phase)
        fields = {f for f in cls.Params.__dataclass_fields__}
        params = {k: v for k, v in {"epochs": 1, "hidden": 64, "samples": 4}.items() if k in fields}
        tree = None
        if cls.needs_hierarchy:  # ten superclasses of the synthetic classes
            names = tuple(str(i) for i in range(a.classes))
            tree = Hierarchy(names, tuple((f"super{i % 10}", c) for i, c in enumerate(names)), "synthetic")
        base = torch.nn.Linear(a.dim, a.classes)
        head = cls(cls.make_params(**params)).fit(
            FitData(tr.features, tr.logits, tr.labels),
            FitData(va.features, va.logits, va.labels),
            base=base,
            hierarchy=tree,
        )
        if a.phase != "temperature":  # temperature rescales `base`, a random layer here
            lp = head.predict_log_proba(va.features, batch_size=8192)
            out["val_accuracy"] = float((lp.argmax(1) == va.labels).double().mean())
    out["seconds"] = time.perf_counter() - t0
    out["peak_rss_mb"] = _peak_mb()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=2048)
    ap.add_argument("--classes", type=int, default=100)
    ap.add_argument("--dir", default="/tmp/vcal-bench-cache")
    ap.add_argument("--heads", default="ce,vtst,vc,haframe,temperature")
    ap.add_argument("--steps", help="comma-separated subset of: baseline, metrics and the heads")
    ap.add_argument("--phase", help=argparse.SUPPRESS)
    ap.add_argument("--keep", action="store_true", help="keep the cache files (reused by the next run)")
    a = ap.parse_args()
    if a.phase:
        print(json.dumps(phase(a)))
        return
    Path(a.dir).mkdir(parents=True, exist_ok=True)
    print(f"cache: {a.n:,} x {a.dim} float16 features, {a.classes} classes (float32 logits), in {a.dir}")
    steps = ([] if (Path(a.dir) / "val.safetensors").exists() else ["write"]) + ["baseline", "metrics"]
    steps += [h for h in a.heads.split(",") if h]
    if a.steps:
        steps = [s for s in steps if s == "write" or s in a.steps.split(",")]
    rows = {}
    for step in steps:
        cmd = [sys.executable, __file__, "--phase", step, "--n", str(a.n), "--dim", str(a.dim)]
        cmd += ["--classes", str(a.classes), "--dir", a.dir]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode:
            print(f"{step}: failed\n{r.stderr[-2000:]}")
            continue
        rows[step] = json.loads(r.stdout.strip().splitlines()[-1])
        extra = {k: round(v, 4) for k, v in rows[step].items() if k not in ("seconds", "peak_rss_mb")}
        print(f"{step:<12} peak RSS {rows[step]['peak_rss_mb']:8.0f} MB  {rows[step]['seconds']:8.1f} s  {extra}")
    if "baseline" in rows and set(rows) - {"baseline", "write"}:
        base = rows["baseline"]["peak_rss_mb"]
        vcal = max(v["peak_rss_mb"] for k, v in rows.items() if k not in ("baseline", "write"))
        print(f"largest vcal step: {vcal:.0f} MB; everything in memory: {base:.0f} MB ({base / vcal:.1f}x more)")
        print("under 2 GB: " + ("yes" if vcal < 2048 else "NO"))
    if not a.keep:
        for f in Path(a.dir).glob("*.safetensors"):
            f.unlink()


if __name__ == "__main__":
    main()
