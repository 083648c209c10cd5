"""How many CPU threads torch may use: `--threads`, else `VCAL_THREADS`, else the cores no one else is using.

On a shared machine torch's default (one thread per core) is the worst choice: when another process holds a
core, the threads wait on each other at every parallel region (a forward pass over 540 digits went from
8 ms with one thread to 424 ms with two on a 2-core machine with one core busy). vcal's default takes the
cores that are idle when it starts: the core count minus the 1-minute load average, rounded, at least one.
`benchmarks/bench_threads.py` measures the policy on an idle and a busy machine.
"""

from __future__ import annotations

import os
import sys

from vcal_cli.errors import UsageError

ENV = "VCAL_THREADS"


def idle_cores() -> int:
    """Cores minus the rounded 1-minute load average (at least 1); all cores where the load is unknown."""
    cores = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # not on this platform
        return cores
    return max(1, min(cores, cores - round(load)))


def resolve_threads(threads: int | None) -> tuple[int, str]:
    """(threads, where the number came from): the flag, the environment variable, or the idle cores."""
    if threads is not None:
        if threads < 1:
            raise UsageError(f"--threads {threads} must be at least 1")
        return threads, "--threads"
    env = os.environ.get(ENV, "").strip()
    if env:
        if not env.isdigit() or int(env) < 1:
            raise UsageError(f"{ENV}={env!r} must be a whole number of threads >= 1", hint=f"unset {ENV} or fix it")
        return int(env), ENV
    return idle_cores(), "idle cores"


def apply_threads(threads: int | None) -> int:
    """Set torch's intra-op threads (and OpenMP's, for a torch imported later) and return the number."""
    n, _ = resolve_threads(threads)
    os.environ["OMP_NUM_THREADS"] = str(n)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(n)
    return n
