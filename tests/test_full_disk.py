"""A full disk, for real: a small tmpfs as --out or as the cache. One line names the path and the space needed,
nothing partial is left (no report file of the run, no cache entry, no temp file), the inputs are untouched, and a
rerun with room finishes. Needs root and mount (CI has both); skipped where tmpfs cannot be mounted."""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from vcal_cli.cli import app

from .conftest import SAMPLES
from .helpers import one_line_error


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "small"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(mnt)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.decode().strip()[:80]})")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _remount(mnt: Path, size: str) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size}", str(mnt)], check=True, capture_output=True)


def _everything(root: Path) -> list[Path]:
    return sorted(root.rglob("*"))


def _hashes(folder: Path) -> dict[str, str]:
    return {p.name: _sha(p) for p in folder.iterdir() if p.is_file()}


def test_report_on_a_full_disk_is_one_line_and_leaves_nothing(runner, tmp_path: Path, small_disk: Path) -> None:
    ckpt = SAMPLES / "cnn_digits.safetensors"
    before = _sha(ckpt)
    out = small_disk / "report"
    args = ["audit", str(ckpt), "--data", "digits", "--bootstrap", "0", "--out", str(out)]
    line = one_line_error(runner.invoke(app, args))
    assert "is full" in line and "MB" in line and str(out) in line
    assert _everything(small_disk) == []  # not a file, not a temp file, not the lock, not the folder: recursive
    assert _sha(ckpt) == before


def test_a_report_that_does_not_fit_keeps_the_one_already_there(runner, tmp_path: Path, small_disk: Path) -> None:
    """--out holds a report; the next run's report does not fit: the old one stays whole, byte for byte."""
    _remount(small_disk, "8m")
    out = small_disk / "report"
    args = ["audit", str(SAMPLES / "cnn_digits.safetensors"), "--data", "digits", "--bootstrap", "0", "--out", str(out)]
    assert runner.invoke(app, args).exit_code == 0
    old = _hashes(out)
    assert "report.json" in old and "report.html" in old
    used = sum(p.stat().st_size for p in out.iterdir())
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * (8 * 1024 * 1024 - used - 200 * 1024))  # leave about 200 kB: less than a report
    line = one_line_error(runner.invoke(app, [*args[:-2], "--bootstrap", "20", "--out", str(out)]))
    assert "is full" in line and "kept as it was" in line, line
    assert _hashes(out) == old  # every file of the old report, unchanged
    assert not [p for p in _everything(small_disk) if p.name.endswith(".tmp")]


def test_cache_on_a_full_disk_is_one_line_then_a_rerun_with_room_works(
    runner, tmp_path: Path, small_disk: Path
) -> None:
    """The same cache, given room (the tmpfs grown in place), resumes from the shards finished before the disk
    filled; afterwards nothing but the entries is left anywhere under it."""
    args = [
        "audit",
        str(SAMPLES / "cnn_digits.safetensors"),
        "--data",
        "digits",
        "--bootstrap",
        "0",
        "--no-suggest",
        "--shard-size",
        "32",
        "--batch-size",
        "16",
        "--cache-dir",
        str(small_disk),
    ]
    line = one_line_error(runner.invoke(app, args))
    assert "is full" in line and "MB" in line and str(small_disk) in line and "--cache-dir" in line
    left = _everything(small_disk)
    assert not [p for p in left if p.suffix == ".safetensors" and p.parent == small_disk]  # no entry
    assert not [p for p in left if p.name.endswith(".tmp")]  # no temp file, at any depth
    done = [p for p in left if p.name.startswith("shard-")]
    assert done, left  # finished shards stay for the rerun
    _remount(small_disk, "16m")
    r = runner.invoke(app, [*args, "--out", str(tmp_path / "o")])
    assert r.exit_code == 0, r.output
    assert f"resuming: {len(done)}/" in r.stderr, r.stderr
    left = _everything(small_disk)
    assert [p.suffix for p in left if not p.name.endswith(".lock")] == [".safetensors"], left  # one entry, no parts
