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


def test_report_on_a_full_disk_is_one_line_and_leaves_nothing(runner, tmp_path: Path, small_disk: Path) -> None:
    ckpt = SAMPLES / "cnn_digits.safetensors"
    before = _sha(ckpt)
    out = small_disk / "report"
    line = one_line_error(runner.invoke(app, ["audit", str(ckpt), "--data", "digits", "--bootstrap", "0",
                                              "--out", str(out)]))  # fmt: skip
    assert "is full" in line and "MB" in line and str(out) in line
    assert not [p for p in out.iterdir() if not p.name.startswith(".vcal-report.lock")], list(out.iterdir())
    assert _sha(ckpt) == before


def test_cache_on_a_full_disk_is_one_line_then_a_rerun_with_room_works(
    runner, tmp_path: Path, small_disk: Path
) -> None:
    args = ["audit", str(SAMPLES / "cnn_digits.safetensors"), "--data", "digits", "--bootstrap", "0"]
    line = one_line_error(runner.invoke(app, [*args, "--cache-dir", str(small_disk)]))
    assert "is full" in line and "MB" in line and str(small_disk) in line and "--cache-dir" in line
    assert not list(small_disk.glob("*.safetensors")) and not list(small_disk.glob(".*.tmp"))
    r = runner.invoke(app, [*args, "--cache-dir", str(tmp_path / "roomy"), "--out", "o"])
    assert r.exit_code == 0, r.output
