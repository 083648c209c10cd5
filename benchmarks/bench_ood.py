"""Which OOD detector wins on a real model, beyond noise: Fashion-MNIST with 4 classes held out.

A timm `resnet18` (`in_chans=1`, 28x28, from scratch, Adam with a one-cycle schedule, seeded) is trained on the 6
in-distribution classes of vcal's Fashion-MNIST train split (T-shirt, trouser, pullover, dress, coat, sandal), saved
the way timm's train.py saves, and audited by `vcal audit` as a user would:

- in-distribution: the 6 classes' val and test images (`npz:` with `x_train`/`x_val`/`x_test`);
- near-OOD: the 4 held-out classes' test images (shirt, sneaker, bag, ankle boot: each looks like an ID class);
- far-OOD: scikit-learn's digits (`--ood digits`, 8x8 scaled to 28x28 by vcal's preprocessing).

Every detector (`--ood-detectors all`), 200 stratified bootstrap resamples. Printed: per OOD set, each detector's
AUROC, AUPR and FPR95 with intervals, the paired verdict against MSP and the leader against the runner-up;
`--write-docs` puts the table in docs/robustness.md.

    python benchmarks/bench_ood.py [--epochs 3] [--work ~/.cache/vcal-bench/ood] [--write-docs]
                                   [--root /usr/share/datasets/fashion-mnist]

Needs Debian's `dataset-fashion-mnist`. The model is trained once (about 40 s an epoch on 2 cores) and reused.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from _timing import write_block
from train_models import DEFAULT_ROOT, train

ID_CLASSES = (0, 1, 2, 3, 4, 5)  # T-shirt/top, trouser, pullover, dress, coat, sandal
HELD_OUT = (6, 7, 8, 9)  # shirt, sneaker, bag, ankle boot
NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal")
DOCS = Path(__file__).resolve().parents[1] / "docs" / "robustness.md"


def _split(name: str, root: str) -> tuple[torch.Tensor, torch.Tensor]:
    from vcal_cli.data import load_split

    s = load_split("fashion-mnist", name, root=root)
    assert s.images is not None
    return s.images, s.labels


def write_data(work: Path, root: str) -> tuple[Path, Path]:
    """The ID npz (train/val/test of the 6 classes, relabelled 0..5) and the near-OOD npz (held-out test images)."""
    arrays, near = {}, None
    for name in ("train", "val", "test"):
        x, y = _split(name, root)
        keep = torch.isin(y, torch.tensor(ID_CLASSES))
        arrays[f"x_{name}"], arrays[f"y_{name}"] = x[keep].numpy(), y[keep].numpy()
        if name == "test":
            out = torch.isin(y, torch.tensor(HELD_OUT))
            near = {"x": x[out].numpy(), "y": np.zeros(int(out.sum()), dtype=np.int64)}
    id_path, near_path = work / "fmnist6.npz", work / "fmnist_heldout.npz"
    np.savez(id_path, **arrays, classes=np.array(NAMES))
    np.savez(near_path, **near)
    return id_path, near_path


def train_model(path: Path, id_npz: Path, epochs: int, seed: int = 0) -> None:
    d = np.load(id_npz)
    x, y = torch.from_numpy(d["x_train"]), torch.from_numpy(d["y_train"])
    train(x, y, epochs, seed, {epochs: path}, num_classes=len(ID_CLASSES))


def audit(model: Path, id_npz: Path, near_npz: Path, work: Path) -> dict:
    cmd = [sys.executable, "-m", "vcal_cli", "audit", str(model), "--data", f"npz:{id_npz}", "--ood", f"npz:{near_npz}"]
    cmd += ["--ood", "digits", "--ood-detectors", "all", "--json", "--out", str(work / "report")]
    cmd += ["--cache-dir", str(work / "cache")]
    r = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(r.stdout)


def table(report: dict) -> str:
    label = {next(iter(report["ood_summary"])): "near-OOD (4 held-out classes)"}
    label |= {k: "far-OOD (digits)" for k in report["ood_summary"] if k not in label}
    lines = [
        f"Model: timm resnet18 on 6 Fashion-MNIST classes, test accuracy {report['metrics']['accuracy']:.4f} "
        f"({report['data']['n']:,} ID test images); 200 stratified bootstrap resamples.",
        "",
        "| OOD set | detector | AUROC [95%] | AUPR out | FPR@95TPR [95%] | AUROC vs MSP [95% paired] | verdict |",
        "| --- | --- | --- | ---: | --- | --- | --- |",
    ]
    for r in sorted(report["ood"], key=lambda r: (r["dataset"] != next(iter(label)), r["rank"])):
        iv, vs = r["intervals"], r.get("vs_msp", {}).get("auroc")
        d = f"{vs['delta']:+.4f} [{vs['interval'][0]:+.4f}, {vs['interval'][1]:+.4f}]" if vs else "baseline"
        lines.append(
            f"| {label[r['dataset']]} | {r['score']} | {r['auroc']:.4f} [{iv['auroc'][0]:.3f}, {iv['auroc'][1]:.3f}] "
            f"| {r['aupr']:.4f} | {r['fpr95']:.4f} [{iv['fpr95'][0]:.3f}, {iv['fpr95'][1]:.3f}] | {d} "
            f"| {vs['verdict'] if vs else ''} |"
        )
    lines.append("")
    for r in report["ood"]:
        if "vs_runner_up" in r:
            v = r["vs_runner_up"]["auroc"]
            lines.append(
                f"- {label[r['dataset']]}: **{r['score']}** leads {r['vs_runner_up']['runner_up']} by "
                f"{v['delta']:+.4f} AUROC [{v['interval'][0]:+.4f}, {v['interval'][1]:+.4f}]: {v['verdict']}."
            )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--work", type=Path, default=Path("~/.cache/vcal-bench/ood").expanduser())
    ap.add_argument("--root", default=DEFAULT_ROOT)
    ap.add_argument("--write-docs", action="store_true")
    a = ap.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(2)
    id_npz, near_npz = write_data(a.work, a.root)
    model = a.work / f"resnet18_fmnist6_e{a.epochs}.pth.tar"
    if not model.exists():
        train_model(model, id_npz, a.epochs)
    out = table(audit(model, id_npz, near_npz, a.work))
    print(out)
    if a.write_docs:
        write_block(DOCS, "bench_ood", out)


if __name__ == "__main__":
    main()
