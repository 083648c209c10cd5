"""Regenerate the README's figures on the shipped samples, so they never drift from the code.

Prints the sample audit, the head table of "Retraining the head" (every head but haframe, which needs a
hierarchy digits lacks; defaults, seed 0) and the frontier's figures, as markdown to paste. The numbers
are byte-for-byte reproducible with the same seed, the same torch build and the same number of threads
(`torch.get_num_threads()` is printed); another thread count can change the last digits of sums.

    python scripts/readme_figures.py [--out DIR] [--frontier]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from vcal_cli import audit
from vcal_cli.api import ExtractOptions, RetrainSettings, retrain
from vcal_cli.commands.frontier import frontier
from vcal_cli.heads import get_head, list_heads

SAMPLE = Path(__file__).resolve().parents[1] / "sample_checkpoints" / "cnn_digits.safetensors"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path(tempfile.mkdtemp(prefix="vcal-readme-")))
    p.add_argument("--frontier", action="store_true", help="also the frontier's figures (minutes: 6 full fits)")
    a = p.parse_args()
    o = ExtractOptions.of(cache_dir=str(a.out / "cache"))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    base = audit(SAMPLE, data="digits", options=o)
    m = base.metrics
    print(f"sample audit: test ECE {m['ece']:.4f}, accuracy {m['accuracy']:.4f}\n")
    heads = [h for h in list_heads() if not get_head(h).needs_hierarchy]
    rep = retrain(SAMPLE, heads, data="digits", options=o, settings=RetrainSettings(out_dir=a.out / "retrain"))
    print("| head | test accuracy | test ECE-15 | test NLL | fitted |")
    print("| --- | --- | --- | --- | --- |")
    for name, h in rep.heads.items():
        mm = h.result.metrics
        fitted = h.head.extra_report() if h.head else {}
        shown = ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in fitted.items())
        print(f"| {name} | {mm.accuracy:.4f} | {mm.ece:.4f} | {mm.nll:.4f} | {shown} |")
    if not a.frontier:
        return
    fr = frontier(SAMPLE, data="digits", options=o)
    pts = fr.points
    print(
        f"\nfrontier: {fr.settings['epochs']} epochs per point; R {pts[0].rate:.3g} nats at beta {pts[0].beta:g} "
        f"to {pts[-1].rate:.2g} at beta {pts[-1].beta:g}; C {pts[0].classification:.2g} to "
        f"{pts[-1].classification:.2g}"
    )


if __name__ == "__main__":
    main()
