"""How many CPU threads torch may use: `--threads`, else `VCAL_THREADS`, else the cores no one else is using.

On a shared machine torch's default (one thread per core) is the worst choice: when another process holds a
core, the threads wait on each other at every parallel region (a forward pass over 540 digits went from
8 ms with one thread to 424 ms with two on a 2-core machine with one core busy). vcal's default takes the
cores that are idle when it starts, at least one. Where the 1-minute load average says every core is free that
is all of them at no cost; otherwise, on Linux, the busy cores are measured over 50 ms of /proc/stat, because
the load average lags by about a minute: a `vcal` started right after another job finished saw its load and
took one core of two (2x slower on matrix products). Elsewhere the load average decides.
`benchmarks/bench_threads.py` measures the policy on an idle and a busy machine and right after another job.
"""

from __future__ import annotations

import os
import sys
import time

from vcal_cli.errors import UsageError

ENV = "VCAL_THREADS"


STAT = "/proc/stat"
WINDOW_S = 0.05  # how long the busy cores are measured when the load average says some are busy


def _cpu_times() -> tuple[int, int] | None:
    """(all, idle) jiffies of every CPU together since boot, from /proc/stat; None where there is none."""
    try:
        with open(STAT) as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu" or len(fields) < 5:
        return None
    ticks = [int(v) for v in fields[1:9]]  # user nice system idle iowait irq softirq steal
    return sum(ticks), ticks[3] + ticks[4]


def busy_cores(window: float = WINDOW_S) -> float | None:
    """Cores busy (0..cores) over the next `window` seconds, from /proc/stat; None where it cannot be read."""
    first = _cpu_times()
    if first is None:
        return None
    time.sleep(window)
    second = _cpu_times()
    if second is None or second[0] <= first[0]:
        return None
    total, idle = second[0] - first[0], second[1] - first[1]
    return (os.cpu_count() or 1) * (total - idle) / total


def idle_cores() -> int:
    """The cores no one else is using, at least 1: all of them where the rounded 1-minute load average is 0 (or
    unknown); else the cores not busy over the next 50 ms (Linux), else the cores minus the load average."""
    cores = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # not on this platform
        return cores
    if round(load) <= 0:
        return cores
    busy = busy_cores()
    return max(1, min(cores, cores - round(load if busy is None else busy)))


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
