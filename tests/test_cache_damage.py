"""A cache that checks itself: real entries and shards damaged in every way a disk, a copy or a hand can damage them
(rows overwritten by other plausible rows, truncated by half or by its last byte, garbled labels, emptied, a shard
truncated or garbled), then the next run: one warning line naming the file, the file rebuilt, never used, never a
hard stop, and the numbers of an undamaged run. Leftovers of killed runs (a shard folder beside a complete entry,
a temp file of a merge) are removed by the next run that touches the entry, listed by `vcal cache list` and removed
by `vcal cache clear`."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from vcal_cli._io import read_header
from vcal_cli.cli import app
from vcal_cli.features.checksum import verify

from .conftest import SAMPLES
from .test_kills import _kill_at  # SIGKILL at a named pause point

ARGS = [
    "audit",
    str(SAMPLES / "cnn_digits.safetensors"),
    "--data",
    "digits",
    "--bootstrap",
    "0",
    "--no-suggest",
    "--json",
]


def _audit(runner, out: str = "o") -> tuple[dict, str]:
    r = runner.invoke(app, [*ARGS, "--out", out])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)["metrics"], r.stderr


def _entry(cache: Path) -> Path:
    (entry,) = cache.glob("*.safetensors")
    return entry


def _section(path: Path, name: str) -> tuple[int, int, int]:
    """(file offset, byte length, bytes per row) of a tensor's data."""
    header, start = read_header(path)
    lo, hi = header[name]["data_offsets"]
    return start + lo, hi - lo, (hi - lo) // header[name]["shape"][0]


def _copy_rows(path: Path) -> None:
    """Rows 0..99 of the logits overwritten by rows 100..199: finite, plausible, wrong."""
    at, _, row = _section(path, "logits")
    with open(path, "r+b") as f:
        f.seek(at + 100 * row)
        block = f.read(100 * row)
        f.seek(at)
        f.write(block)


def _truncate_half(path: Path) -> None:
    os.truncate(path, path.stat().st_size // 2)


def _truncate_last_byte(path: Path) -> None:
    os.truncate(path, path.stat().st_size - 1)


def _garble_labels(path: Path) -> None:
    at, size, _ = _section(path, "labels")
    with open(path, "r+b") as f:
        f.seek(at + size // 2)
        f.write(b"\x03")  # one label byte changed: another class, still in range


def _empty(path: Path) -> None:
    path.write_bytes(b"")


DAMAGE: dict[str, Callable[[Path], None]] = {
    "rows overwritten by other rows": _copy_rows,
    "truncated by half": _truncate_half,
    "truncated by its last byte": _truncate_last_byte,
    "one label garbled": _garble_labels,
    "emptied": _empty,
}


@pytest.mark.parametrize("how", list(DAMAGE))
def test_a_damaged_entry_is_rebuilt_with_a_warning_never_used(runner, tmp_path: Path, how: str) -> None:
    reference, _ = _audit(runner)
    entry = _entry(tmp_path / "cache")
    assert verify(entry) is None
    DAMAGE[how](entry)
    again, err = _audit(runner, "o2")
    warnings = [x for x in err.splitlines() if x.startswith("warning:")]
    assert len(warnings) == 1 and entry.name in warnings[0] and "damaged" in warnings[0], err
    assert again == reference  # the numbers of an undamaged run: the damaged file was never read
    assert verify(_entry(tmp_path / "cache")) is None
    third, err = _audit(runner, "o3")  # and the rebuilt entry is a clean hit
    assert third == reference and "warning:" not in err


SHARDED = [*ARGS, "--shard-size", "64", "--batch-size", "16"]
PLAIN = [a for a in SHARDED if a != "--json"]  # progress lines (the resume line) show without --json


@pytest.mark.parametrize("how", ["truncated by half", "one byte garbled", "emptied"])
def test_a_damaged_shard_is_extracted_again(runner, tmp_path: Path, how: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # one thread, as the killed child has: vcal's default (the cores idle at that moment) would make the shards
    # of this process and the child's differ in their last bits on a busy machine
    monkeypatch.setenv("VCAL_THREADS", "1")
    r = runner.invoke(app, [*SHARDED, "--out", "ref", "--cache-dir", str(tmp_path / "refcache")])
    reference = json.loads(r.stdout)["metrics"]
    _kill_at([*SHARDED, "--out", "o"], tmp_path, tmp_path / "cache", "before-rename:shard-000003.safetensors")
    (parts,) = (tmp_path / "cache").glob("*.parts")
    shard = parts / "shard-000001.safetensors"
    if how == "truncated by half":
        _truncate_half(shard)
    elif how == "emptied":
        _empty(shard)
    else:
        at, size, _ = _section(shard, "features")
        with open(shard, "r+b") as f:
            f.seek(at + size // 3)
            f.write(b"\x7f")
    r = runner.invoke(app, [*PLAIN, "--out", "o"])
    assert r.exit_code == 0, r.output
    warnings = [x for x in r.stderr.splitlines() if x.startswith("warning:")]
    assert len(warnings) == 1 and "shard-000001" in warnings[0] and "damaged" in warnings[0], r.stderr
    assert "resuming: 2/" in r.stderr, r.stderr  # shards 0 and 2 reused, 1 extracted again
    assert json.loads((tmp_path / "o" / "report.json").read_text())["metrics"] == reference
    assert not list((tmp_path / "cache").glob("*.parts"))


def test_leftovers_of_killed_runs_are_listed_and_removed(runner, tmp_path: Path) -> None:
    _audit(runner)
    cache = tmp_path / "cache"
    entry = _entry(cache)
    parts = cache / (entry.stem + ".parts")  # as a run killed after its merge, before removing its shards, leaves
    parts.mkdir()
    (parts / "shard-000000.safetensors").write_bytes(b"x" * 5000)
    tmp = cache / f".{entry.name}.1234abcd.tmp"  # as a run killed during a merge leaves
    tmp.write_bytes(b"y" * 3000)
    listed = runner.invoke(app, ["cache", "list", "--json"])
    rows = json.loads(listed.stdout)
    orphans = {Path(r["path"]).name: r for r in rows if r.get("orphan")}
    assert orphans[parts.name]["orphan"] == "shards of a finished entry" and orphans[parts.name]["bytes"] == 5000
    assert orphans[tmp.name]["bytes"] == 3000
    assert "left by interrupted runs" in runner.invoke(app, ["cache", "list"]).stdout
    _audit(runner, "o2")  # a cache hit on the entry removes what is left beside it
    assert not parts.exists() and not tmp.exists()
    parts.mkdir()
    (parts / "plan.json").write_text("{}")
    r = runner.invoke(app, ["cache", "clear"])
    assert r.exit_code == 0, r.output
    assert list(cache.iterdir()) == []
