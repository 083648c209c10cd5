"""`vcal frontier`'s warm-started walk against independent fits of every point, on the shipped sample or any model.

Times the default sweep (6 betas, lambda 0) three ways: independent fits on the full schedule, independent
fits with early stopping (vcal's default before the walk, now `--cold`), and the warm-started walk (each point
from its neighbour, at most a quarter of the schedule at ten times the rate: the default). For every point it prints
the val free energy C + beta R + lambda D of the walk and of the independent fit, and the seed-to-seed spread
of independent fits (the noise the two are compared against).

    python benchmarks/bench_frontier.py [--epochs N] [--warm-epochs N] [--warm-lr LR]
        [--checkpoint F --data NAME --data-root DIR] [--skip-full]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from vcal_cli.commands.settings import DEFAULT_BETAS
from vcal_cli.evaluations.frontier import Settings, Surface, walk, warm_epochs_for
from vcal_cli.heads import FitData
from vcal_cli.heads._train import resolve_epochs
from vcal_cli.session.workbench import ExtractOptions, Workbench

SAMPLE = Path(__file__).resolve().parents[1] / "sample_checkpoints" / "cnn_digits.safetensors"


def splits(
    cache: str, checkpoint: Path = SAMPLE, data: str = "digits", data_root: str = "data"
) -> tuple[FitData, FitData]:
    o = ExtractOptions.of(cache_dir=cache, data_root=data_root)
    bench = Workbench.open(str(checkpoint), data, o)
    tr, va = bench.features("train"), bench.features("val")
    return tuple(FitData(f.features.float().clone(), f.logits, f.labels) for f in (tr, va))  # type: ignore[return-value]


def energies(points, surface: Surface) -> list[float]:
    out = []
    for b, lam, m in points:
        r = surface.measure(m)
        out.append(r["classification"] + b * r["rate"] + lam * r["distortion"])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--warm-epochs", type=int, default=None)
    ap.add_argument("--warm-lr", type=float, default=None)
    ap.add_argument("--cache", default=str(Path("~/.cache/vcal-bench/cache").expanduser()))
    ap.add_argument("--checkpoint", type=Path, default=SAMPLE, help="default: the shipped digits CNN")
    ap.add_argument("--data", default="digits", help="e.g. fashion-mnist with a Fashion-MNIST model")
    ap.add_argument("--data-root", default="data", help="e.g. /usr/share/datasets/fashion-mnist")
    ap.add_argument("--skip-full", action="store_true", help="skip the full-schedule independent fits")
    a = ap.parse_args()
    train, val = splits(a.cache, a.checkpoint, a.data, a.data_root)
    epochs = resolve_epochs(a.epochs, len(train.labels), 256)
    base = dict(
        hidden=128,
        samples=10,
        epochs=epochs,
        warm_epochs=a.warm_epochs or warm_epochs_for(epochs),
        lr=1e-4,
        batch_size=256,
        warm_lr=a.warm_lr,
    )
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])  # torch's first optimizer imports torch._dynamo
    runs = {
        "independent, full schedule": (Settings(**base, seed=0, patience=0), False),
        "independent, early stop": (Settings(**base, seed=0), False),
        "independent, early stop, seed 1": (Settings(**base, seed=1), False),
        "warm-started walk": (Settings(**base, seed=0), True),
    }
    if a.skip_full:
        del runs["independent, full schedule"]
    times, f = {}, {}
    for name, (s, warm) in runs.items():
        t = time.perf_counter()
        surface = Surface.of(train, val, s)
        pts = walk(surface, DEFAULT_BETAS, (0.0,), warm=warm)
        times[name] = time.perf_counter() - t
        f[name] = energies(pts, surface)
        print(f"{name}: {times[name]:.1f} s", flush=True)
    walk_s = times["warm-started walk"]
    ref = "independent, early stop" if a.skip_full else "independent, full schedule"
    full_note = "" if a.skip_full else f"{times[ref] / walk_s:.1f}x against independent full-schedule fits, "
    print(
        f"\nwalk speed-up: {full_note}{times['independent, early stop'] / walk_s:.1f}x against independent "
        "early-stopped fits"
    )
    print("\nbeta      F walk   F indep. (full)   F indep. (early)   seed spread   walk - indep.")
    for i, b in enumerate(sorted(DEFAULT_BETAS)):
        full, w = f[ref][i], f["warm-started walk"][i]
        es, s1 = f["independent, early stop"][i], f["independent, early stop, seed 1"][i]
        shown = "-" if a.skip_full else f"{full:.4f}"
        print(f"{b:<8g} {w:8.4f}   {shown:>15s}   {es:16.4f}   {abs(es - s1):11.4f}   {w - full:+.4f}")


if __name__ == "__main__":
    main()
