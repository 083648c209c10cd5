"""Soak: N concurrent `vcal audit` processes on one checkpoint and one cache, round after round for a set time, the
cache emptied before every other round (so some rounds race to build it, others read it). Counts failures: a
non-zero exit, numbers that differ from the first round's, a cache entry that does not load, a stray shard folder
or temp file. Zero is expected.

    python benchmarks/soak.py [--procs 4] [--minutes 5] [--checkpoint sample_checkpoints/cnn_digits.safetensors]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from vcal_cli.features import FeatureSet


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--procs", type=int, default=4)
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument(
        "--checkpoint", default=str(Path(__file__).parents[1] / "sample_checkpoints/cnn_digits.safetensors")
    )
    ap.add_argument("--data", default="digits")
    a = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="vcal-soak-"))
    cache = root / "cache"
    env = {**os.environ, "VCAL_CACHE": str(cache), "VCAL_THREADS": "1"}
    want, rounds, runs, failures = None, 0, 0, []
    stop = time.monotonic() + 60 * a.minutes
    while time.monotonic() < stop:
        if rounds % 2 == 0:
            shutil.rmtree(cache, ignore_errors=True)
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "vcal_cli",
                    "audit",
                    a.checkpoint,
                    "--data",
                    a.data,
                    "--bootstrap",
                    "0",
                    "--no-suggest",
                    "--shard-size",
                    "128",
                    "--out",
                    str(root / f"o{i}"),
                ],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            for i in range(a.procs)
        ]
        for i, p in enumerate(procs):
            err = p.communicate(timeout=600)[1]
            runs += 1
            if p.returncode != 0:
                failures.append(f"round {rounds} proc {i}: exit {p.returncode}: {err.strip()[-200:]}")
                continue
            got = json.loads((root / f"o{i}" / "report.json").read_text())["metrics"]
            want = want or got
            if got != want:
                failures.append(f"round {rounds} proc {i}: numbers differ ({got} vs {want})")
        for entry in cache.glob("*.safetensors"):
            try:
                FeatureSet.load(entry)
            except Exception as e:  # any failure to load is a corrupt entry
                failures.append(f"round {rounds}: entry {entry.name} does not load ({e})")
        stray = list(cache.glob("*.parts")) + list(cache.glob(".*.tmp"))
        if stray:
            failures.append(f"round {rounds}: stray {[p.name for p in stray]}")
        rounds += 1
        print(f"round {rounds}: {runs} runs, {len(failures)} failures", flush=True)
    shutil.rmtree(root, ignore_errors=True)
    print(f"{a.procs} concurrent audits x {rounds} rounds ({runs} runs) in {a.minutes:g} min: {len(failures)} failures")
    for f in failures[:20]:
        print("  " + f)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
