"""vcal's thread policy on an idle and on a busy machine: `vcal retrain` on the shipped sample with
--threads 1, with every core (torch's own default) and with vcal's default (the cores idle at start): on an idle
machine, right after another job ended (its load still in the 1-minute load average), and while another process
spins on one core (a CI runner shared with another job).

    python benchmarks/bench_threads.py [--head ce] [--epochs 300]

Prints wall-clock seconds per setting and the ratio of each to the best in its row.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_checkpoints" / "cnn_digits.safetensors"


def _spin(stop: mp.Event) -> None:  # type: ignore[valid-type]
    x = 0
    while not stop.is_set():  # type: ignore[attr-defined]
        for _ in range(100_000):
            x += 1


def _retrain(threads: str | None, head: str, epochs: int, cache: str) -> float:
    env = {k: v for k, v in os.environ.items() if k not in ("VCAL_THREADS", "OMP_NUM_THREADS")}
    cmd = [
        sys.executable,
        "-m",
        "vcal_cli",
        *(["--threads", threads] if threads else []),
        "retrain",
        str(SAMPLE),
        "--data",
        "digits",
        "--head",
        head,
        "--epochs",
        str(epochs),
        "--patience",
        "0",
        "--cache-dir",
        cache,
        "--bootstrap",
        "0",
        "-o",
        str(Path(cache) / "out"),
    ]
    t = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--head", default="ce")
    ap.add_argument("--epochs", type=int, default=300)
    a = ap.parse_args()
    cores = str(os.cpu_count() or 1)
    settings = {"--threads 1": "1", f"--threads {cores} (torch's default)": cores, "vcal default": None}
    with tempfile.TemporaryDirectory() as cache:
        _retrain("1", a.head, 1, cache)  # fill the feature cache
        for machine in ("idle", "right after another job (load average still ~1)", "busy (one core spinning)"):
            if machine == "idle":
                while os.getloadavg()[0] > 0.3:  # wait for the load average to say so
                    time.sleep(5)
            stop = mp.Event()
            spinner = mp.Process(target=_spin, args=(stop,)) if machine != "idle" else None
            if spinner:
                spinner.start()
                time.sleep(65)  # let the 1-minute load average see it, as it would on a busy runner
            if spinner and machine.startswith("right after"):
                stop.set()  # the job ends; its load lingers in the average for about a minute
                spinner.join()
                spinner = None
            times = {name: _retrain(t, a.head, a.epochs, cache) for name, t in settings.items()}
            if spinner:
                stop.set()
                spinner.join()
            best = min(times.values())
            print(f"{machine}: " + ", ".join(f"{n} {t:.1f} s ({t / best:.1f}x)" for n, t in times.items()), flush=True)


if __name__ == "__main__":
    main()
