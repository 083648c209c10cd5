"""vcal's default thread count: the idle cores, measured now rather than by the lagging load average."""

from __future__ import annotations

from pathlib import Path

import pytest

from vcal_cli import _threads


@pytest.fixture
def two_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_threads.os, "cpu_count", lambda: 2)


def test_proc_stat_first_line_is_read_as_all_and_idle_jiffies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stat = tmp_path / "stat"
    stat.write_text("cpu  100 5 50 800 40 3 2 0 0 0\ncpu0 50 2 25 400 20 1 1 0 0 0\n")
    monkeypatch.setattr(_threads, "STAT", str(stat))
    assert _threads._cpu_times() == (1000, 840)  # user+nice+system+idle+iowait+irq+softirq+steal; idle+iowait
    stat.write_text("intr 1 2 3\n")
    assert _threads._cpu_times() is None
    monkeypatch.setattr(_threads, "STAT", str(tmp_path / "missing"))
    assert _threads._cpu_times() is None and _threads.busy_cores(0) is None


def test_busy_cores_is_the_busy_share_of_the_window_times_the_cores(
    two_cores: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    readings = iter([(1000, 600), (1100, 650)])  # 50 of 100 jiffies idle: one core of two busy
    monkeypatch.setattr(_threads, "_cpu_times", lambda: next(readings))
    assert _threads.busy_cores(0) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("load", "busy", "expected"),
    [
        (0.3, AssertionError("not measured"), 2),  # the load average says idle: no 50 ms wait
        (1.1, 0.1, 2),  # right after another job: the load average lags, the cores are free now
        (1.1, 1.0, 1),  # another job is running on one core
        (2.6, 2.0, 1),  # everything busy: still one thread
        (1.1, None, 1),  # no /proc/stat: the load average decides
    ],
)
def test_idle_cores_trusts_the_load_average_only_when_it_says_idle(
    two_cores: None, monkeypatch: pytest.MonkeyPatch, load: float, busy: object, expected: int
) -> None:
    def measured(window: float = _threads.WINDOW_S) -> float | None:
        if isinstance(busy, Exception):
            raise busy
        return busy  # type: ignore[return-value]

    monkeypatch.setattr(_threads.os, "getloadavg", lambda: (load, load, load))
    monkeypatch.setattr(_threads, "busy_cores", measured)
    assert _threads.idle_cores() == expected


def test_busy_cores_reads_this_machine() -> None:
    """On Linux the real /proc/stat gives a share of the cores; elsewhere None."""
    busy = _threads.busy_cores(0.02)
    assert busy is None or 0.0 <= busy <= (_threads.os.cpu_count() or 1) + 1e-9
