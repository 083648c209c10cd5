"""Compiled and exported classifiers, written by the real writers (`torch.jit.script`/`trace`, `torch.export`,
`torch.onnx` with both exporters, an ONNX model with external data): vcal's logits equal the program's own forward
pass (1e-5), the features reproduce the logits through the split-off head, `retrain` writes a head file that
re-audits to the same numbers, TorchScript and `.pt2` need --trust-checkpoint (they unpickle), ONNX does not, and a
program whose last linear layer is not its output is refused."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from vcal_cli import ExtractOptions, Workbench
from vcal_cli.cli import app
from vcal_cli.data import load_split
from vcal_cli.errors import CheckpointError

from .helpers import one_line_error

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


class Net(nn.Module):
    def __init__(self, scale: float = 1.0) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten()
        )
        self.fc = nn.Linear(64, 10)
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.body(x)) * self.scale


@pytest.fixture(scope="module")
def net() -> Net:
    """A few hundred steps on digits, so the numbers mean something and temperature has something to fit."""
    torch.manual_seed(0)
    model = Net()
    split = load_split("digits", "train")
    x, y = split.images, split.labels
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(150):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval()


def _write(kind: str, model: nn.Module, path: Path) -> Path:
    x = torch.rand(4, 1, 8, 8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if kind == "script":
            torch.jit.script(model).save(str(path))
        elif kind == "trace":
            torch.jit.trace(model, x).save(str(path))
        elif kind == "export":
            batch = torch.export.Dim("batch", min=1)
            torch.export.save(torch.export.export(model, (x,), dynamic_shapes=({0: batch},)), path)
        elif kind == "export-static":  # exported with a fixed batch of 4: fed 4 at a time, the last batch padded
            torch.export.save(torch.export.export(model, (x,)), path)
        elif kind == "onnx":
            torch.onnx.export(model, (x,), path, dynamo=False, input_names=["x"], dynamic_axes={"x": {0: "b"}})
        elif kind == "onnx-dynamo":  # the new exporter; weights in an external data file beside the graph
            pytest.importorskip("onnxscript")
            torch.onnx.export(model, (x,), path, dynamo=True, dynamic_shapes=({0: torch.export.Dim("b")},))
            if not (path.parent / f"{path.name}.data").exists():
                data = f"{path.name}.data"
                onnx.save_model(
                    onnx.load(str(path)),
                    str(path),
                    save_as_external_data=True,
                    location=data,
                    all_tensors_to_one_file=True,
                    size_threshold=0,
                )
            assert (path.parent / f"{path.name}.data").is_file()
    return path


def _reference(kind: str, path: Path, x: torch.Tensor) -> torch.Tensor:
    """The program's own forward pass, by the library that wrote it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if kind in ("script", "trace"):
            return torch.jit.load(str(path))(x)
        if kind.startswith("export"):
            module = torch.export.load(path).module()
            return (
                torch.cat([module(c) for c in x.split(4)])
                if kind == "export-static" and len(x) % 4 == 0
                else (module(x) if kind == "export" else None)
            )
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return torch.from_numpy(session.run(None, {session.get_inputs()[0].name: x.numpy()})[0])


PLAIN = {"mean": (0.0,), "std": (1.0,), "input_size": (1, 8, 8)}  # how `net` was trained
FLAGS = ["--mean", "0", "--std", "1", "--input-size", "1,8,8"]
SUFFIX = {
    "script": ".pt",
    "trace": ".pt",
    "export": ".pt2",
    "export-static": ".pt2",
    "onnx": ".onnx",
    "onnx-dynamo": ".onnx",
}


@pytest.mark.parametrize("kind", list(SUFFIX))
def test_program_logits_equal_the_writers_forward(tmp_path: Path, net: Net, kind: str) -> None:
    path = _write(kind, net, tmp_path / f"m{SUFFIX[kind]}")
    opts = ExtractOptions.of(cache_dir=str(tmp_path / "c"), trust_checkpoint=True, **PLAIN)
    bench = Workbench.open(path, "digits", opts)
    assert bench.model.program == kind.split("-")[0].replace("script", "torchscript").replace("trace", "torchscript")
    assert bench.model.in_chans == 1 and bench.model.num_classes == 10
    fs = bench.features("test")
    x = bench.preprocessing.to_model_input(load_split("digits", "test").images)
    if kind == "export-static":
        x, fs_logits = x[: len(x) // 4 * 4], fs.logits[: len(x) // 4 * 4]
    else:
        fs_logits = fs.logits
    with torch.no_grad():
        want = _reference(kind, path, x)
        mine = net(x)
    assert torch.allclose(fs_logits, want, atol=1e-5), (fs_logits - want).abs().max()
    assert torch.allclose(fs_logits, mine, atol=1e-4)
    head = bench.model.head  # the split: features through the program's own last layer give its logits
    assert torch.allclose(fs.features.float() @ head.weight.T + head.bias, fs.logits, atol=1e-5)
    assert (fs.logits.argmax(1) == fs.labels).float().mean() > 0.6  # a working classifier, not noise


def test_torchscript_and_export_need_trust_onnx_does_not(runner, tmp_path: Path, net: Net) -> None:
    for kind in ("script", "export"):
        path = _write(kind, net, tmp_path / f"m{SUFFIX[kind]}")
        line = one_line_error(runner.invoke(app, ["audit", str(path), "--data", "digits"]))
        assert "--trust-checkpoint" in line and "run" in line and str(path) in line
    onnx_path = _write("onnx", net, tmp_path / "m.onnx")
    bench = Workbench.open(onnx_path, "digits", ExtractOptions.of(**PLAIN))
    assert bench.model.program == "onnx"


def test_output_not_the_last_linear_is_refused(tmp_path: Path, net: Net) -> None:
    scaled = Net(scale=2.0)
    scaled.load_state_dict(net.state_dict())
    for kind in ("script", "onnx"):
        path = _write(kind, scaled.eval(), tmp_path / f"s{SUFFIX[kind]}")
        bench = Workbench.open(path, "digits", ExtractOptions.of(trust_checkpoint=True, **PLAIN))
        with pytest.raises(CheckpointError, match="not its output layer"):
            bench.features("test")


def test_onnx_without_onnxruntime_names_the_extra(runner, tmp_path: Path, net: Net, monkeypatch) -> None:
    path = _write("onnx", net, tmp_path / "m.onnx")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    line = one_line_error(runner.invoke(app, ["audit", str(path), "--data", "digits"]))
    assert "onnxruntime" in line and "vcal[onnx]" in line


@pytest.mark.parametrize("kind", ["script", "onnx"])
def test_retrain_writes_a_head_file_that_reaudits_the_same(runner, tmp_path: Path, net: Net, kind: str) -> None:
    path = _write(kind, net, tmp_path / f"m{SUFFIX[kind]}")
    common = ["--data", "digits", "--trust-checkpoint", *FLAGS]
    r = runner.invoke(app, ["retrain", str(path), "--head", "temperature", "--out", str(tmp_path / "r"), *common])
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    head_file = tmp_path / "r" / "m.temperature.head.safetensors"
    assert head_file.is_file() and not (tmp_path / "r" / "m.temperature.safetensors").exists()
    after = report["heads"]["temperature"]
    r2 = runner.invoke(app, ["audit", str(path), "--head-file", str(head_file), "--out", str(tmp_path / "a"), *common])
    assert r2.exit_code == 0, r2.output
    audited = json.loads((tmp_path / "a" / "report.json").read_text())["metrics"]
    for metric in ("accuracy", "nll", "ece"):
        assert np.isclose(audited[metric], after["metrics"][metric], atol=1e-6), metric


@pytest.mark.parametrize(
    ("kind", "fmt", "head"),
    [
        ("script", "torchscript", "temperature"),
        ("trace", "torchscript", "vector"),
        ("onnx", "onnx", "matrix"),
        ("onnx-dynamo", "onnx", "temperature"),
    ],
)
def test_export_folds_the_head_into_the_model_and_reaudits_the_same(
    runner, tmp_path: Path, net: Net, kind: str, fmt: str, head: str
) -> None:
    """`--export FORMAT`: the file the model came in, its last linear layer replaced by the head folded into it; the
    exported file audits (with the flags the original needed) to the numbers the retrain report gives the head."""
    path = _write(kind, net, tmp_path / f"m{SUFFIX[kind]}")
    common = ["--data", "digits", "--trust-checkpoint", *FLAGS]
    args = ["retrain", str(path), "--head", head, "--export", fmt, "--bootstrap", "0", "--out", str(tmp_path / "r")]
    r = runner.invoke(app, [*args, *common])
    assert r.exit_code == 0, r.output
    after = json.loads((tmp_path / "r" / "report.json").read_text())["heads"][head]
    exported = tmp_path / "r" / f"m.{head}{'.onnx' if fmt == 'onnx' else '.pt'}"
    assert after["checkpoint"] == str(exported) and exported.is_file()
    r2 = runner.invoke(app, ["audit", str(exported), "--bootstrap", "0", "--json", "-o", str(tmp_path / "a"), *common])
    assert r2.exit_code == 0, r2.output
    audited = json.loads(r2.stdout)["metrics"]
    for metric in ("accuracy", "nll", "ece", "brier"):
        assert audited[metric] == pytest.approx(after["metrics"][metric], abs=2e-5), metric
    assert path.stat().st_size > 0  # the input is untouched (a new file beside it)


@pytest.mark.parametrize(("kind", "head"), [("onnx", "vtst"), ("onnx", "dirichlet"), ("onnx-dynamo", "ce")])
def test_onnx_export_composes_a_head_that_is_not_linear(runner, tmp_path: Path, net: Net, kind: str, head: str) -> None:
    """A head that is not one linear layer goes to ONNX composed after the graph's features (then an identity linear
    layer, so the program still ends in one): the exported file audits to the head's numbers."""
    path = _write(kind, net, tmp_path / f"m{SUFFIX[kind]}")
    common = ["--data", "digits", *FLAGS]
    args = ["retrain", str(path), "--head", head, "--export", "onnx", "--bootstrap", "0", "--out", str(tmp_path / "r")]
    r = runner.invoke(app, [*args, "--epochs", "3", *common] if head in ("vtst", "ce") else [*args, *common])
    assert r.exit_code == 0, r.output
    after = json.loads((tmp_path / "r" / "report.json").read_text())["heads"][head]
    exported = tmp_path / "r" / f"m.{head}.onnx"
    r2 = runner.invoke(app, ["audit", str(exported), "--bootstrap", "0", "--json", "-o", str(tmp_path / "a"), *common])
    assert r2.exit_code == 0, r2.output
    audited = json.loads(r2.stdout)["metrics"]
    for metric in ("accuracy", "nll", "ece", "brier"):
        assert audited[metric] == pytest.approx(after["metrics"][metric], abs=2e-5), metric


def test_export_of_a_head_that_is_not_linear_or_in_another_format_is_one_line(runner, tmp_path: Path, net: Net) -> None:
    path = _write("script", net, tmp_path / "m.pt")
    base = ["retrain", str(path), "--data", "digits", "--trust-checkpoint", *FLAGS, "--out", str(tmp_path / "r")]
    line = one_line_error(runner.invoke(app, [*base, "--head", "isotonic", "--export", "torchscript"]))
    assert "head 'isotonic' is not one linear layer" in line and "--export onnx" in line
    line = one_line_error(runner.invoke(app, [*base, "--head", "temperature", "--export", "onnx"]))
    assert "--export onnx" in line and "is a torchscript model" in line
    assert not (tmp_path / "r").exists()
