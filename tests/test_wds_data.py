"""`--data wds:PATTERN`: WebDataset tar shards written by the `webdataset` library itself, read streamed; the same
model on the same pixels audits to the same numbers as from an `.npz`; bad shard sets are one line."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from vcal_cli import load_split
from vcal_cli.cli import app

from .conftest import SAMPLES
from .helpers import one_line_error

wds = pytest.importorskip("webdataset")
MLP = str(SAMPLES / "mlp_digits.safetensors")


def _pixels(split: str) -> tuple[np.ndarray, np.ndarray]:
    s = load_split("digits", split)
    return (s.images[:, 0].numpy() * 255).round().astype(np.uint8), s.labels.numpy()


def _write(folder: Path, prefix: str, x: np.ndarray, y: np.ndarray, per: int = 200, label: str = "cls") -> None:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for k in range(0, len(y), per):
        with wds.TarWriter(str(folder / f"{prefix}-{k // per:06d}.tar")) as w:
            for i in range(k, min(len(y), k + per)):
                buf = io.BytesIO()
                Image.fromarray(x[i]).save(buf, "PNG")
                tag = {"cls": str(int(y[i]))} if label == "cls" else {"json": json.dumps({"label": int(y[i])})}
                w.write({"__key__": f"{prefix}{i:06d}", "png": buf.getvalue(), **tag})


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("wds")
    for split in ("train", "test"):
        _write(folder, split, *_pixels(split))
    return folder


def _audit(runner, data: str) -> dict:
    r = runner.invoke(app, ["audit", MLP, "--data", data, "--bootstrap", "0", "--no-suggest", "--json"])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def test_shards_audit_like_the_same_pixels_in_an_npz(runner, shards: Path, tmp_path: Path) -> None:
    (xt, yt), (xs, ys) = _pixels("train"), _pixels("test")
    np.savez(tmp_path / "same.npz", x_train=xt, y_train=yt, x_test=xs, y_test=ys)
    ref = _audit(runner, f"npz:{tmp_path / 'same.npz'}")
    # a folder of split-prefixed shards, and a pattern (test has shards 0-2; train's first three are enough here)
    for spec in (f"wds:{shards}", f"wds:{shards}/{{split}}-{{000000..000002}}.tar"):
        got = _audit(runner, spec)
        assert got["data"]["n"] == 540
        assert got["metrics"] == ref["metrics"]


def test_rows_come_back_in_any_order_and_val_is_held_out_of_train(shards: Path) -> None:
    split = load_split(f"wds:{shards}", "test")
    x, _ = _pixels("test")
    rows = torch.tensor([450, 3, 201, 202, 0])  # across shards, backwards and forwards
    got = split.load(rows, (8, 8))[:, 0].numpy()
    np.testing.assert_array_equal(got, x[rows.numpy()])
    assert len(load_split(f"wds:{shards}", "val")) == 108 and len(load_split(f"wds:{shards}", "train")) == 969


def test_a_pool_pattern_and_json_labels(tmp_path: Path) -> None:
    x, y = _pixels("test")
    _write(tmp_path / "pool", "all", x, y, label="json")
    spec = f"wds:{tmp_path / 'pool'}/all-{{000000..000002}}.tar"
    test = load_split(spec, "test")
    assert len(test) == 162  # 30% of 540, the pool rule
    assert test.identity["shards"][0][0].endswith("all-000000.tar")


def test_bad_shard_sets_are_one_line(runner, tmp_path: Path) -> None:
    from PIL import Image

    (tmp_path / "nolabel").mkdir()
    buf = io.BytesIO()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(buf, "PNG")
    with wds.TarWriter(str(tmp_path / "nolabel" / "test-000000.tar")) as w:
        w.write({"__key__": "a", "png": buf.getvalue()})
    cases = {
        f"wds:{tmp_path / 'nolabel'}": "has no label",
        f"wds:{tmp_path}/train-{{000..003}}.tar": "4 of 4 shards do not exist",
        f"wds:{tmp_path}/{{split}}-{{000..003}}.tar": "matches no shard for train, val or test",
        f"wds:{tmp_path}": "no train-*.tar, val-*.tar or test-*.tar shards",
    }
    for spec, says in cases.items():
        line = one_line_error(runner.invoke(app, ["audit", MLP, "--data", spec, "-o", str(tmp_path / "rep")]))
        assert says in line, line
    assert not (tmp_path / "rep").exists()


def test_without_webdataset_the_extra_is_named(runner, monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real = builtins.__import__

    def missing(name, *a, **k):  # noqa: ANN001, ANN002, ANN003, ANN202
        if name in ("webdataset", "braceexpand"):
            raise ImportError(name)
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", missing)
    line = one_line_error(runner.invoke(app, ["audit", MLP, "--data", "wds:shards/{split}-{0..3}.tar"]))
    assert "needs the webdataset library" in line and "vcal[webdataset]" in line


def test_torchrun_ranks_split_the_shards_and_write_what_one_process_writes(shards: Path, tmp_path: Path) -> None:
    """`torchrun --nproc-per-node 2 -m vcal_cli features --data wds:...`: each rank streams from the shard that holds
    its rows; the features file equals one process's, byte for byte."""
    import subprocess
    import sys

    from .test_scale import _env

    args = [MLP, "--data", f"wds:{shards}", "--split", "train", "--device", "cpu", "--batch-size", "32"]
    args += ["--shard-size", "200"]
    runs = {}
    for name, launcher in (
        ("one", []),
        ("two", ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]),
    ):
        out = tmp_path / f"{name}.safetensors"
        cmd = [sys.executable, *launcher, "-m", "vcal_cli", "features", *args, "--features-out", str(out)]
        cmd += ["--cache-dir", str(tmp_path / f"c-{name}")]
        r = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
        runs[name] = out.read_bytes()
    assert runs["one"] == runs["two"]
