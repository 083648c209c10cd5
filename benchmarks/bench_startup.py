"""Start-up time of the commands that need no model: `vcal --help`, `vcal heads`, `vcal cache list`.

Each is timed as a whole process (best of --repeat runs) against `python -c pass` in the same run, so
the figure is vcal's own import cost. `vcal --help` loads neither torch nor the heads; `vcal heads` must
import the heads (their parameters live in torch modules) and `vcal cache list` the cache reader.

    python benchmarks/bench_startup.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time


def best(cmd: list[str], repeat: int, env: dict[str, str] | None = None) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, env=env)
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=5)
    a = p.parse_args()
    import os

    env = {**os.environ, "VCAL_CACHE": tempfile.mkdtemp()}
    base = best([sys.executable, "-c", "pass"], a.repeat)
    print(f"python -c pass: {base:.3f} s (the interpreter alone)")
    for args in (["--help"], ["heads"], ["cache", "list"]):
        t = best([sys.executable, "-m", "vcal_cli", *args], a.repeat, env)
        print(f"vcal {' '.join(args):<12} {t:.3f} s  ({t - base:.3f} s over the interpreter, {t / base:.1f}x)")


if __name__ == "__main__":
    main()
