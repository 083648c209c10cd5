"""Caches larger than memory: shards, memory-mapped reads, resume after a kill, torchrun ranks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.helpers import one_line_error, tiny_mlp
from vcal_cli.data import load_split
from vcal_cli.errors import VcalWarning
from vcal_cli.features import ExtractOptions, FeatureSet, extract_features, get_features
from vcal_cli.features.distributed import World
from vcal_cli.features.store import MappedFile, Parts, ShardPlan, write_entry

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_checkpoints" / "cnn_digits.safetensors"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    path = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return {**env, "PYTHONPATH": path, "VCAL_THREADS": "1", **extra}  # two ranks on two cores: one thread each


def _entries(cache: Path) -> list[Path]:
    return sorted(cache.glob("*.safetensors"))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_entry_round_trip_mapped_and_readable_by_safetensors(tmp_path: Path, dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(0)
    t = {
        "features": torch.randn(37, 5, generator=g).to(dtype),
        "logits": torch.randn(37, 3, generator=g),
        "labels": torch.randint(0, 3, (37,), generator=g),
    }
    path = write_entry(tmp_path / "e.safetensors", t, {"vcal_cache": "{}"})
    m = MappedFile(path)
    other = load_file(str(path))  # any safetensors reader opens vcal's layout
    for k, v in t.items():
        assert m.tensors[k].dtype == v.dtype and torch.equal(m.tensors[k], v)
        assert torch.equal(other[k], v)
    m.tensors["features"][0, 0] = 7  # copy-on-write: memory only, never the file
    m.release()
    assert torch.equal(MappedFile(path).tensors["features"], t["features"])


def test_shard_plan_cuts_whole_batches() -> None:
    p = ShardPlan.make(1000, 100, 32)
    assert p.rows == 128 and len(p) == 8 and p.bounds(7) == (896, 1000)
    assert ShardPlan.make(10, 1, 32).rows == 32


def test_parts_merge_streams_shards_and_a_changed_plan_starts_over(tmp_path: Path) -> None:
    entry = tmp_path / "k.safetensors"
    plan = ShardPlan.make(10, 4, 2)
    parts = Parts(entry, plan, {"entry": "k"})
    assert parts.prepare() == 0
    full = {"features": torch.arange(40.0).view(10, 4), "logits": torch.ones(10, 2), "labels": torch.arange(10)}
    for i in range(len(plan)):
        s, e = plan.bounds(i)
        parts.write(i, {k: v[s:e].contiguous() for k, v in full.items()})
    assert Parts(entry, plan, {"entry": "k"}).prepare() == 3  # same plan: finished shards are kept
    parts.merge({"vcal_cache": "{}"})
    assert not parts.dir.exists()
    m = MappedFile(entry).tensors
    assert all(torch.equal(m[k], v) for k, v in full.items())
    Parts(entry, plan, {"entry": "k"}).write(0, {k: v[:4].contiguous() for k, v in full.items()})
    assert Parts(entry, ShardPlan.make(10, 6, 2), {"entry": "k"}).prepare() == 0  # other plan: shards dropped


def test_distributed_sampler_splits_shards_without_repeats() -> None:
    got = [World(r, 3).shards(7) for r in range(3)]
    assert got == [[0, 3, 6], [1, 4], [2, 5]]
    assert [World(r, 4).shards(2) for r in range(4)] == [[0], [1], [], []]


@pytest.mark.parametrize("cache_dtype", ["float32", "float16"])
def test_sharded_cache_equals_one_forward_pass(tmp_path: Path, cache_dtype: str) -> None:
    model, data = tiny_mlp(), load_split("digits", "train")
    prep = model.preprocessing
    ref_f, ref_l, ref_y = extract_features(model, data, prep, ExtractOptions.of(device="cpu", batch_size=32))
    o = ExtractOptions.of(device="cpu", batch_size=32, cache_dir=str(tmp_path), cache_dtype=cache_dtype, shard_size=100)
    fs = get_features(model, data, prep, o)
    assert fs.mapped is not None and fs.features.dtype == getattr(torch, cache_dtype)
    assert torch.equal(fs.features, ref_f.to(fs.features.dtype))
    assert torch.equal(fs.logits, ref_l) and torch.equal(fs.labels, ref_y)
    assert not list(tmp_path.glob("*.parts"))
    again = get_features(model, data, prep, o)
    assert again.from_cache and torch.equal(again.features, fs.features)


def test_a_broken_entry_is_rebuilt(tmp_path: Path) -> None:
    model, data = tiny_mlp(), load_split("digits", "test")
    o = ExtractOptions.of(device="cpu", cache_dir=str(tmp_path))
    fs = get_features(model, data, model.preprocessing, o)
    fs.path.write_bytes(b"garbage")
    with pytest.warns(VcalWarning, match="is damaged"):  # the library says so; the CLI shows it as one line
        again = get_features(model, data, model.preprocessing, o)
    assert not again.from_cache and torch.equal(again.logits, FeatureSet.load(again.path).logits)


def test_torchrun_two_ranks_write_the_same_cache_bit_for_bit(tmp_path: Path) -> None:
    """`torchrun --nproc-per-node 2 -m vcal_cli features` on gloo equals one process, byte for byte."""
    args = [str(SAMPLE), "--split", "train", "--device", "cpu", "--batch-size", "32", "--shard-size", "96"]
    one, two = tmp_path / "one", tmp_path / "two"
    r1 = subprocess.run(
        [
            sys.executable,
            "-m",
            "vcal_cli",
            "features",
            *args,
            "--features-out",
            str(tmp_path / "a.safetensors"),
            "--cache-dir",
            str(one),
        ],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r1.returncode == 0, r1.stderr
    r2 = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            "2",
            "-m",
            "vcal_cli",
            "features",
            *args,
            "--features-out",
            str(tmp_path / "b.safetensors"),
            "--cache-dir",
            str(two),
        ],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r2.returncode == 0, r2.stderr
    (a,), (b,) = _entries(one), _entries(two)
    assert a.name == b.name and a.read_bytes() == b.read_bytes()
    assert (tmp_path / "a.safetensors").read_bytes() == (tmp_path / "b.safetensors").read_bytes()
    assert r2.stdout.count("wrote") <= 1  # only rank 0 reports


def test_audit_under_torchrun_reports_once_and_matches_one_process(tmp_path: Path) -> None:
    """`vcal audit` under torchrun: the ranks share the extraction, rank 0 alone writes the same report."""
    import json

    args = [
        "audit",
        str(SAMPLE),
        "--device",
        "cpu",
        "--batch-size",
        "32",
        "--shard-size",
        "64",
        "--bootstrap",
        "20",
        "--no-suggest",
    ]
    one = subprocess.run(
        [sys.executable, "-m", "vcal_cli", *args, "--out", str(tmp_path / "one"), "--cache-dir", str(tmp_path / "c1")],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert one.returncode == 0, one.stderr
    two = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            "2",
            "-m",
            "vcal_cli",
            *args,
            "--out",
            str(tmp_path / "two"),
            "--cache-dir",
            str(tmp_path / "c2"),
        ],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert two.returncode == 0, two.stderr
    assert two.stdout.count("ece") == one.stdout.count("ece")  # one table, from rank 0 only
    r1, r2 = (json.loads((tmp_path / d / "report.json").read_text()) for d in ("one", "two"))
    assert r1["metrics"] == r2["metrics"] and r1["intervals"] == r2["intervals"]
    (a,), (b,) = _entries(tmp_path / "c1"), _entries(tmp_path / "c2")
    assert a.read_bytes() == b.read_bytes()


def test_retrain_under_torchrun_writes_the_same_head_as_one_process(tmp_path: Path) -> None:
    """`vcal retrain` under torchrun: train, val and test extracted across ranks, one fit on rank 0."""
    import json

    args = [
        "retrain",
        str(SAMPLE),
        "--head",
        "temperature",
        "--device",
        "cpu",
        "--shard-size",
        "128",
        "--bootstrap",
        "0",
    ]
    runs = {}
    for name, launcher in (
        ("one", [sys.executable, "-m", "vcal_cli"]),
        (
            "two",
            [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "vcal_cli"],
        ),
    ):
        r = subprocess.run(
            [*launcher, *args, "--out", str(tmp_path / name), "--cache-dir", str(tmp_path / f"c-{name}")],
            env=_env(),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert r.returncode == 0, r.stderr
        runs[name] = json.loads((tmp_path / name / "report.json").read_text())
    # the head's weights are equal bit for bit (below); metrics summed over classes may differ in the last bits,
    # since torchrun runs each rank with OMP_NUM_THREADS=1 and one process uses every core (another sum order)
    one_m, two_m = runs["one"]["heads"]["temperature"]["metrics"], runs["two"]["heads"]["temperature"]["metrics"]
    assert one_m == pytest.approx(two_m, rel=1e-12, abs=1e-15)
    assert len(_entries(tmp_path / "c-two")) == 3  # train, val and test, each merged once
    one, two = (tmp_path / d / "cnn_digits.temperature.safetensors" for d in ("one", "two"))
    assert load_file(str(one)).keys() == load_file(str(two)).keys()
    assert all(torch.equal(v, load_file(str(two))[k]) for k, v in load_file(str(one)).items())


SLOW_MODULE = """
import time
import torch
from torch import nn


class SlowNet(nn.Module):
    '''An MLP on 8x8 digits that sleeps in every forward, so a test can kill it mid-extraction.'''

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU())
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        time.sleep(0.04)
        return self.fc(self.body(x))
"""


def test_a_killed_extraction_resumes_from_its_finished_shards(tmp_path: Path) -> None:
    (tmp_path / "slowmod.py").write_text(textwrap.dedent(SLOW_MODULE))
    sys.path.insert(0, str(tmp_path))
    try:
        import slowmod

        torch.manual_seed(0)
        torch.save(slowmod.SlowNet().eval(), tmp_path / "slow.pt")
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("slowmod", None)
    env = _env(PYTHONPATH=os.pathsep.join([str(ROOT), str(tmp_path)]))
    cmd = [
        sys.executable,
        "-m",
        "vcal_cli",
        "features",
        str(tmp_path / "slow.pt"),
        "--trust-checkpoint",
        "--data",
        "digits",
        "--split",
        "train",
        "--device",
        "cpu",
        "--batch-size",
        "16",
        "--shard-size",
        "64",
    ]
    x_out = ["--features-out", str(tmp_path / "x.safetensors")]
    y_out = ["--features-out", str(tmp_path / "y.safetensors")]
    cache = tmp_path / "cache"
    proc = subprocess.Popen(
        [*cmd, "--cache-dir", str(cache), *x_out], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 120
    while len(list(cache.glob("*.parts/shard-*.safetensors"))) < 3:
        assert proc.poll() is None, proc.communicate()[1].decode()
        assert time.monotonic() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not _entries(cache) and not (tmp_path / "x.safetensors").exists()
    finished = len(list(cache.glob("*.parts/shard-*.safetensors")))
    assert 3 <= finished < 17  # 1,077 rows in shards of 64: 17 shards; it died part-way
    resumed = subprocess.run(
        [*cmd, "--cache-dir", str(cache), *x_out], env=env, capture_output=True, text=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"{finished} finished shards reused" in resumed.stderr
    straight = subprocess.run(
        [*cmd, "--cache-dir", str(tmp_path / "ref"), *y_out], env=env, capture_output=True, text=True, timeout=300
    )
    assert straight.returncode == 0, straight.stderr
    (a,), (b,) = _entries(cache), _entries(tmp_path / "ref")
    assert a.read_bytes() == b.read_bytes()
    assert not list(cache.glob("*.parts"))


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["--cache-dtype", "float64"], "--cache-dtype 'float64'"),
        (["--precision", "fp16", "--device", "cpu"], "--precision fp16 needs a CUDA device"),
        (["--precision", "int8"], "--precision 'int8'"),
    ],
)
def test_bad_scale_flags_are_one_line_errors(runner, flags: list[str], words: str) -> None:
    from vcal_cli.cli import app

    result = runner.invoke(app, ["audit", str(SAMPLE), *flags])
    assert words in one_line_error(result)


def test_cache_list_shows_the_storage_dtype(runner, tmp_path: Path) -> None:
    from vcal_cli.cli import app

    cache = str(tmp_path / "c")
    flags = ["--cache-dir", cache, "--cache-dtype", "float16", "--no-suggest"]
    assert runner.invoke(app, ["audit", str(SAMPLE), *flags]).exit_code == 0
    listed = runner.invoke(app, ["cache", "list", "--cache-dir", cache, "--json"])
    (entry,) = __import__("json").loads(listed.stdout)
    assert entry["cache_dtype"] == "float16" and entry["n"] == 540 and "created" in entry


def test_gate_on_two_checkpoints_under_torchrun(tmp_path: Path) -> None:
    """Regression: ranks above 0 died with UnboundLocalError after the shared extraction."""
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            "2",
            "-m",
            "vcal_cli",
            "gate",
            str(SAMPLE),
            "--baseline",
            str(SAMPLE),
            "--device",
            "cpu",
            "--bootstrap",
            "20",
            "--cache-dir",
            str(tmp_path / "c"),
        ],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    assert "UnboundLocalError" not in r.stderr and "gate passed" in r.stderr
