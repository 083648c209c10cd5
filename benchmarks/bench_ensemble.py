"""A deep ensemble of real Fashion-MNIST resnet18s, audited, recalibrated and gated like one model.

Three timm `resnet18`s (`in_chans=1`, 10 classes, 28x28) trained from scratch on vcal's Fashion-MNIST train split
with the recipe of `train_models.py` (Adam, one-cycle, `--epochs` each) and seeds 10, 11, 12, saved the way timm's
train.py saves. Then, as a user runs it:

1. `vcal audit M1 M2 M3 --data fashion-mnist`: the ensemble's metrics with intervals, each member's row, and the
   ensemble's paired verdict against its best member;
2. `vcal retrain M1 M2 M3 --head temperature`: temperature scaling of the ensemble, fitted on its val predictions;
3. `vcal gate ENSEMBLE --baseline BEST_MEMBER`: the gate on the two reports.

Printed: the members' and the ensemble's accuracy, NLL and ECE with intervals, the paired verdicts, the ensemble's
temperature and what it does, the gate's result. `--write-docs` puts them in docs/ensembles.md.

    python benchmarks/bench_ensemble.py [--epochs 2] [--work ~/.cache/vcal-bench/ensemble] [--write-docs]

Needs Debian's `dataset-fashion-mnist`. About a minute per epoch and member on 2 cores; models are reused.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import torch
from _timing import write_block
from train_models import DEFAULT_ROOT, _tensors, train

SEEDS = (10, 11, 12)
DOCS = Path(__file__).resolve().parents[1] / "docs" / "ensembles.md"


def vcal(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vcal_cli", *args], capture_output=True, text=True)


def _cell(row: dict, m: str) -> str:
    iv = row["intervals"].get(m)
    return f"{row[m]:.4f} [{iv[0]:.4f}, {iv[1]:.4f}]" if iv else f"{row[m]:.4f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--work", type=Path, default=Path("~/.cache/vcal-bench/ensemble").expanduser())
    ap.add_argument("--root", default=DEFAULT_ROOT)
    ap.add_argument("--write-docs", action="store_true")
    a = ap.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(2)
    paths = [a.work / f"resnet18_seed{s}_e{a.epochs}.pth.tar" for s in SEEDS]
    if not all(p.exists() for p in paths):
        x, y = _tensors("train", a.root)
        for s, p in zip(SEEDS, paths, strict=True):
            if not p.exists():
                train(x, y, a.epochs, s, {a.epochs: p})
    data = ["--data", "fashion-mnist", "--data-root", a.root, "--cache-dir", str(a.work / "cache")]
    r = vcal("audit", *map(str, paths), *data, "--json", "--out", str(a.work / "audit"))
    assert r.returncode == 0, r.stderr[-2000:]
    rep = json.loads(r.stdout)
    e = rep["ensemble"]
    best = e["best_member"]
    r = vcal("audit", str(paths[best - 1]), *data, "--json", "--out", str(a.work / "best"))
    assert r.returncode == 0, r.stderr[-2000:]
    t = vcal("retrain", *map(str, paths), *data, "--head", "temperature", "--json", "--out", str(a.work / "rt"))
    assert t.returncode == 0, t.stderr[-2000:]
    heads = json.loads(t.stdout)["heads"]
    g = vcal("gate", str(a.work / "audit" / "report.json"), "--baseline", str(a.work / "best" / "report.json"))
    lines = [
        f"Three timm resnet18s, {a.epochs} epochs each (seeds {', '.join(map(str, SEEDS))}), on Fashion-MNIST's "
        f"test split ({rep['data']['n']:,} images), 200 bootstrap resamples; best member by test NLL: {best}.",
        "",
        "| model | accuracy [95%] | NLL [95%] | ECE-15 [95%] |",
        "| --- | --- | --- | --- |",
    ]
    for row in e["members"]:
        lines.append(
            f"| member {row['member']} | {_cell(row, 'accuracy')} | {_cell(row, 'nll')} | {_cell(row, 'ece')} |"
        )
    own = {**rep["metrics"], "intervals": rep["intervals"]}
    lines.append(f"| ensemble | {_cell(own, 'accuracy')} | {_cell(own, 'nll')} | {_cell(own, 'ece')} |")
    temp = heads["temperature"]
    lines.append(
        f"| ensemble + temperature (T = {temp['fitted']['temperature']:.3f}, fitted on val) "
        f"| {temp['metrics']['accuracy']:.4f} | {temp['metrics']['nll']:.4f} | {temp['metrics']['ece']:.4f} |"
    )
    lines += ["", "The ensemble against its best member, paired bootstrap (ensemble - member):", ""]
    for m in ("accuracy", "nll", "brier", "ece"):
        v = e["vs_best_member"][m]
        lines.append(f"- {m}: {v['delta']:+.4f} [{v['interval'][0]:+.4f}, {v['interval'][1]:+.4f}]: {v['verdict']}")
    verdict = "passed" if g.returncode == 0 else "failed (exit 1)" if g.returncode == 1 else f"error {g.returncode}"
    lines += ["", f"`vcal gate ensemble/report.json --baseline best-member/report.json`: {verdict}."]
    out = "\n".join(lines)
    print(out)
    if a.write_docs:
        write_block(DOCS, "bench_ensemble", out)


if __name__ == "__main__":
    main()
