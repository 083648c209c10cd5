"""Real checkpoints as trainers write them: safe loading, preprocessing read (or probed) not guessed,
the sanity guard, the idx files of MNIST / Fashion-MNIST, `--val-from test`, and a CLI that behaves."""

from __future__ import annotations

import argparse
import builtins
import gzip
import json
import os
import pickle
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from vcal_cli import AuditSettings, audit, load_checkpoint
from vcal_cli.checkpoints import CheckpointError
from vcal_cli.cli import app
from vcal_cli.data import load_split
from vcal_cli.errors import DataError
from vcal_cli.metrics.sanity import audit_warnings, val_warning

from .conftest import SAMPLES
from .helpers import one_line_error

CNN = SAMPLES / "cnn_digits.safetensors"  # timm's test_resnet, 1x8x8, mean 0.5, std 0.5, trained on digits
DEBIAN_FMNIST = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(scope="module")
def cnn_weights() -> dict[str, torch.Tensor]:
    return dict(load_checkpoint(CNN).model.state_dict())


@pytest.fixture(scope="module")
def reference() -> dict[str, float]:
    """The vcal checkpoint's own audit: every trainer's file of the same weights must give these numbers."""
    return audit(CNN, data="digits", settings=AuditSettings(n_bootstrap=0)).metrics


def _timm_args(**over: object) -> argparse.Namespace:
    d = dict(
        model="test_resnet",
        num_classes=10,
        in_chans=1,
        input_size=[1, 8, 8],
        img_size=None,
        mean=[0.5],
        std=[0.5],
        interpolation="bilinear",
        crop_pct=1.0,
        epochs=100,
        lr=0.005,
        opt="adam",
        seed=0,
    )
    d.update(over)
    return argparse.Namespace(**d)


def _timm_train_py(path: Path, sd: dict[str, torch.Tensor], **args: object) -> Path:
    """What timm's train.py (CheckpointSaver) writes."""
    torch.save(
        {
            "epoch": 99,
            "arch": "test_resnet",
            "state_dict": sd,
            "state_dict_ema": {k: v.clone() for k, v in sd.items()},
            "optimizer": {"state": {}, "param_groups": [{"lr": 0.005, "params": [0, 1]}]},
            "version": 2,
            "args": _timm_args(**args),
            "metric": 96.5,
        },
        path,
    )
    return path


def test_timm_train_py_checkpoint_audits_with_nothing_but_the_file(tmp_path: Path, cnn_weights, reference) -> None:
    path = _timm_train_py(tmp_path / "model_best.pth.tar", cnn_weights)
    m = load_checkpoint(path)  # no --arch, no --trust-checkpoint
    assert m.arch == "test_resnet" and m.in_chans == 1 and m.hints.sources[0] == "timm train.py args"
    rep = audit(path, data="digits", settings=AuditSettings(n_bootstrap=0))
    prep = rep.settings["preprocessing"]
    assert prep["input_size"] == [1, 8, 8] and prep["mean"] == [0.5] and "timm train.py args" in prep["source"]
    for k, v in reference.items():
        assert rep.metrics[k] == pytest.approx(v, abs=1e-6), k
    assert rep.warnings == []
    # a timm file names no classes: the report takes the data set's (the verdict says "T-shirt/top", not "class 0")
    assert m.class_names is None and rep.class_names == load_split("digits", "test").classes


def test_flags_beat_the_checkpoints_own_args(tmp_path: Path, cnn_weights) -> None:
    from vcal_cli.api import ExtractOptions

    path = _timm_train_py(tmp_path / "m.pth.tar", cnn_weights)
    rep = audit(
        path, data="digits", options=ExtractOptions.of(mean=(0.0,), std=(1.0,)), settings=AuditSettings(n_bootstrap=0)
    )
    p = rep.settings["preprocessing"]
    assert (
        p["mean"] == [0.0]
        and p["std"] == [1.0]
        and p["input_size"] == [1, 8, 8]
        and "mean, std from flags" in p["source"]
    )


def test_lightning_checkpoint(tmp_path: Path, cnn_weights, reference) -> None:
    path = tmp_path / "epoch=3-step=10.ckpt"
    torch.save(
        {
            "epoch": 3,
            "global_step": 10,
            "pytorch-lightning_version": "2.4.0",
            "state_dict": {f"model.{k}": v for k, v in cnn_weights.items()},
            "hyper_parameters": {
                "arch": "test_resnet",
                "num_classes": 10,
                "in_chans": 1,
                "img_size": 8,
                "mean": [0.5],
                "std": [0.5],
                "lr": 1e-3,
                "data_dir": Path("/data"),
            },
            "loops": {},
            "callbacks": {"ModelCheckpoint": {"best_model_score": torch.tensor(0.9)}},
            "optimizer_states": [],
            "lr_schedulers": [],
        },
        path,
    )
    rep = audit(path, data="digits", settings=AuditSettings(n_bootstrap=0))
    assert "Lightning hyper_parameters" in rep.settings["preprocessing"]["source"]
    assert rep.metrics["accuracy"] == pytest.approx(reference["accuracy"], abs=1e-9)
    assert rep.metrics["nll"] == pytest.approx(reference["nll"], abs=1e-6)


def test_lightning_checkpoint_of_a_timm_arch_is_fed_as_its_trainer_fed_it(tmp_path: Path) -> None:
    """A Lightning module around a timm architecture, trained on 28x28 images with ToTensor + Normalize (size, mean
    and std in its hyper-parameters): vcal must feed the images as the trainer did, not resize and crop them by
    timm's eval config for the arch (crop 0.95 at 28 px shifts every image by a pixel: accuracy 0.7581 against the
    trainer's 0.7883 on the issue's Fashion-MNIST model). The reference is the model itself on the normalised
    images, exactly as a Lightning validation step computes it."""
    import timm

    torch.manual_seed(0)
    model = timm.create_model("test_resnet", num_classes=4, in_chans=1).eval()
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (64, 1, 28, 28), generator=g, dtype=torch.uint8)
    y = torch.randint(0, 4, (64,), generator=g)
    data = tmp_path / "d.npz"
    np.savez(
        data, x_train=x.numpy(), y_train=y.numpy(), x_val=x.numpy(), y_val=y.numpy(), x_test=x.numpy(), y_test=y.numpy()
    )
    path = tmp_path / "last.ckpt"
    torch.save(
        {
            "epoch": 1,
            "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
            "hyper_parameters": {
                "arch": "test_resnet",
                "num_classes": 4,
                "in_chans": 1,
                "img_size": 28,
                "mean": [0.2860],
                "std": [0.3530],
            },
        },
        path,
    )
    rep = audit(path, data=f"npz:{data}", settings=AuditSettings(n_bootstrap=0))
    p = rep.settings["preprocessing"]
    assert p["input_size"] == [1, 28, 28] and "crop_pct" not in p and "interpolation" not in p, p
    with torch.no_grad():
        logits = model((x.float() / 255 - 0.2860) / 0.3530).double()
    assert rep.metrics["accuracy"] == pytest.approx(float((logits.argmax(1) == y).double().mean()), abs=1e-12)
    nll = float(torch.nn.functional.cross_entropy(logits, y))
    assert rep.metrics["nll"] == pytest.approx(nll, abs=1e-5)  # float32 forward on both sides


def test_timm_train_py_args_keep_timms_eval_crop(tmp_path: Path, cnn_weights) -> None:
    """timm's own train.py evaluates with the model's default crop when its args do not say one: kept there."""
    from vcal_cli.checkpoints.hints import Hints
    from vcal_cli.data.preprocessing import resolve_preprocessing

    cfg = {
        "architecture": "test_resnet",
        "input_size": (3, 160, 160),
        "mean": (0.5,) * 3,
        "std": (0.5,) * 3,
        "interpolation": "bicubic",
        "crop_pct": 0.95,
    }
    said = dict(input_size=(1, 28, 28), mean=(0.3,), std=(0.4,))
    timm_run = resolve_preprocessing(
        hints=Hints(sources=("timm train.py args",), **said), timm_cfg=cfg, model_in_chans=1, native_size=(1, 28, 28)
    )
    other = resolve_preprocessing(
        hints=Hints(sources=("Lightning hyper_parameters",), **said),
        timm_cfg=cfg,
        model_in_chans=1,
        native_size=(1, 28, 28),
    )
    assert (timm_run.crop_pct, timm_run.interpolation) == (0.95, "bicubic")
    assert (other.crop_pct, other.interpolation) == (1.0, "bilinear")
    assert "timm" not in other.source


def test_lightning_datamodule_hyper_parameters(tmp_path: Path, cnn_weights, reference) -> None:
    """The model names its arch; the datamodule's save_hyperparameters() holds the image size, mean and std (as
    Lightning writes them under `datamodule_hyper_parameters`): read, not probed."""
    path = tmp_path / "last.ckpt"
    torch.save(
        {
            "epoch": 3,
            "state_dict": {f"model.{k}": v for k, v in cnn_weights.items()},
            "hyper_parameters": {"arch": "test_resnet", "num_classes": 10, "in_chans": 1, "lr": 1e-3},
            "datamodule_hyper_parameters": {"img_size": 8, "mean": [0.5], "std": [0.5], "batch_size": 64},
        },
        path,
    )
    rep = audit(path, data="digits", settings=AuditSettings(n_bootstrap=0))
    p = rep.settings["preprocessing"]
    assert "Lightning datamodule_hyper_parameters" in p["source"] and "probe" not in p
    assert p["mean"] == [0.5] and p["input_size"] == [1, 8, 8]
    assert rep.metrics["accuracy"] == pytest.approx(reference["accuracy"], abs=1e-9)


def test_hf_hub_folder_timm_config(tmp_path: Path, cnn_weights, reference) -> None:
    folder = tmp_path / "hub"
    folder.mkdir()
    save_file({k: v.contiguous() for k, v in cnn_weights.items()}, folder / "model.safetensors")
    cfg = {
        "architecture": "test_resnet",
        "num_classes": 10,
        "label_names": [f"digit {i}" for i in range(10)],
        "pretrained_cfg": {"input_size": [1, 8, 8], "mean": [0.5], "std": [0.5], "crop_pct": 1.0},
    }
    (folder / "config.json").write_text(json.dumps(cfg))
    m = load_checkpoint(folder)
    assert m.class_names == [f"digit {i}" for i in range(10)]
    rep = audit(folder, data="digits", settings=AuditSettings(n_bootstrap=0))
    assert rep.settings["preprocessing"]["source"].startswith("size, mean, std, crop from config.json")
    assert rep.metrics["ece"] == pytest.approx(reference["ece"], abs=1e-6)


def test_hf_trainer_folder_transformers_timm_wrapper(tmp_path: Path, cnn_weights, reference) -> None:
    """transformers' TimmWrapperForImageClassification: pytorch_model.bin with `timm_model.` keys, id2label and
    a preprocessor_config.json beside it."""
    folder = tmp_path / "checkpoint-500"
    folder.mkdir()
    torch.save({f"timm_model.{k}": v for k, v in cnn_weights.items()}, folder / "pytorch_model.bin")
    (folder / "config.json").write_text(
        json.dumps(
            {
                "architectures": ["TimmWrapperForImageClassification"],
                "model_type": "timm_wrapper",
                "architecture": "test_resnet",
                "num_labels": 10,
                "id2label": {str(i): str(i) for i in range(10)},
                "num_channels": 1,
            }
        )
    )
    (folder / "preprocessor_config.json").write_text(
        json.dumps({"image_mean": [0.5], "image_std": [0.5], "size": {"height": 8, "width": 8}})
    )
    rep = audit(folder, data="digits", settings=AuditSettings(n_bootstrap=0))
    p = rep.settings["preprocessing"]
    assert p["input_size"] == [1, 8, 8] and p["mean"] == [0.5] and p["std"] == [0.5]
    assert rep.metrics["nll"] == pytest.approx(reference["nll"], abs=1e-6)


def test_torchvision_ddp_module_prefix(tmp_path: Path) -> None:
    import torchvision

    net = torchvision.models.resnet18(num_classes=7)
    path = tmp_path / "ddp.pth"
    torch.save({"model": {f"module.{k}": v for k, v in net.state_dict().items()}, "epoch": 1}, path)
    m = load_checkpoint(path, arch="torchvision:resnet18")
    assert m.num_classes == 7 and m.head_name == "fc"
    assert torch.equal(m.model.state_dict()["conv1.weight"], net.state_dict()["conv1.weight"])


class _Opens:
    def __reduce__(self):
        return (builtins.open, (str(Path(os.environ["VCAL_CACHE"]).parent / "pwned"), "w"))


class _Shell:
    def __reduce__(self):
        return (os.system, ("touch pwned-by-system",))


@pytest.mark.parametrize("payload,called", [(_Opens, "io.open"), (_Shell, "posix.system")])
@pytest.mark.parametrize("fmt", ["zip", "legacy", "plain-pickle"])
def test_malicious_pickle_is_refused_naming_the_callable(runner, tmp_path: Path, payload, called, fmt) -> None:
    path = tmp_path / "evil.pt"
    obj = {"state_dict": {"w": torch.zeros(2)}, "x": payload()}
    if fmt == "plain-pickle":
        path.write_bytes(pickle.dumps(obj))
    else:
        torch.save(obj, path, _use_new_zipfile_serialization=fmt == "zip")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no library warning may escape
        with pytest.raises(CheckpointError, match=f"asks to run {called} .*ran nothing.*--trust-checkpoint"):
            load_checkpoint(path, arch="test_resnet")
    r = runner.invoke(app, ["audit", str(path), "--arch", "test_resnet", "--data", "digits"])
    line = one_line_error(r)
    assert called in line and "Warning" not in r.stderr
    assert not (tmp_path / "pwned").exists() and not Path("pwned-by-system").exists()


def test_junk_file_says_what_it_is_not(tmp_path: Path) -> None:
    path = tmp_path / "junk.pt"
    path.write_bytes(b"e" * 101)
    with pytest.raises(CheckpointError, match=r"not a readable checkpoint \(truncated, or not a file torch.save") as e:
        load_checkpoint(path, arch="test_resnet")
    assert ": 101" not in str(e.value)


def test_whole_pickled_module_audits_with_trust(runner, tmp_path: Path) -> None:
    """The issue's crash: a trusted pickled 1-channel timm model fed 3-channel data must audit or fail in one line."""
    path = tmp_path / "whole.pt"
    torch.save(load_checkpoint(CNN).model, path)
    r = runner.invoke(app, ["audit", str(path), "--data", "digits"])
    assert "asks to run" in one_line_error(r)
    r = runner.invoke(
        app,
        [
            "audit",
            str(path),
            "--trust-checkpoint",
            "--data",
            "digits",
            "--bootstrap",
            "0",
            "--input-size",
            "1,8,8",
            "--mean",
            "0.5",
            "--std",
            "0.5",
        ],
    )
    assert r.exit_code == 0, r.output
    rep = json.loads(Path("vcal-report/report.json").read_text())
    assert rep["metrics"]["accuracy"] > 0.9 and rep["warnings"] == []
    # with nothing but the file: a pickled module says nothing of its preprocessing, so it is probed
    r = runner.invoke(app, ["audit", str(path), "--trust-checkpoint", "--data", "digits", "--bootstrap", "0"])
    assert r.exit_code == 0, r.output
    rep = json.loads(Path("vcal-report/report.json").read_text())
    assert rep["settings"]["preprocessing"]["source"].startswith("probed")
    assert rep["metrics"]["accuracy"] > 0.9 and rep["warnings"] == []


def test_probe_picks_the_preprocessing_a_bare_state_dict_was_trained_with(tmp_path: Path, cnn_weights) -> None:
    path = tmp_path / "bare.pth"
    torch.save(cnn_weights, path)
    rep = audit(path, data="digits", options=_opts(arch="test_resnet"), settings=AuditSettings(n_bootstrap=0))
    p = rep.settings["preprocessing"]
    assert p["source"].startswith("probed, native") and len(p["probe"]) == 3
    accs = {r["candidate"]: r["accuracy"] for r in p["probe"]}
    assert all(0.0 <= a <= 1.0 for a in accs.values())  # every candidate was scored
    assert max(accs.values()) > 0.9  # the probe found the native preprocessing among its candidates
    assert accs["timm's test_resnet config"] < 0.5  # 8x8 digits upsampled to 160 px: the silent failure
    assert p["input_size"] == [1, 8, 8] and rep.metrics["accuracy"] > 0.9 and rep.warnings == []
    again = audit(
        path, data="digits", options=_opts(arch="test_resnet"), settings=AuditSettings(n_bootstrap=0)
    )  # the probe is cached
    assert again.settings["preprocessing"] == p


def _opts(**kw: object):
    from vcal_cli.api import ExtractOptions

    return ExtractOptions.of(**kw)  # type: ignore[arg-type]


def test_chance_accuracy_is_warned_everywhere(runner, tmp_path: Path) -> None:
    r = runner.invoke(app, ["audit", str(CNN), "--data", "digits", "--bootstrap", "0", "--mean", "30", "--std", "0.01"])
    assert r.exit_code == 0
    assert "warning:" in r.stderr and "chance level" in r.stderr and "--input-size" in r.stderr
    rep = json.loads(Path("vcal-report/report.json").read_text())
    assert any("chance level" in w for w in rep["warnings"])
    assert "chance level" in Path("vcal-report/report.md").read_text()
    assert "chance level" in Path("vcal-report/report.html").read_text()
    g = runner.invoke(app, ["gate", "vcal-report/report.json", "--baseline", "vcal-report/report.json"])
    assert "chance level" in g.stderr


def test_sanity_rules_by_hand() -> None:
    y = torch.arange(100) % 10
    good = torch.nn.functional.one_hot(y, 10).float() * 5
    assert audit_warnings(good, y) == []
    collapsed = torch.zeros(100, 10)
    collapsed[:, 3] = 1
    w = audit_warnings(collapsed, y)
    assert any("chance level" in s for s in w) and any("collapse onto class 3" in s for s in w)
    seen = (good * 3, y)  # train and val both near-perfect, test far worse: val looks like training data
    test = (torch.randn(100, 10), y)
    assert "--val-from test" in (val_warning(seen, seen, test) or "")
    assert val_warning(seen, test, test) is None  # a held-out val behaves like test


def _write_idx(path: Path, arr: np.ndarray, gz: bool) -> None:
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    data = header + arr.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if gz else data)


def test_gzipped_idx_files_straight_under_the_root(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    imgs = {"train": rng.integers(0, 256, (40, 28, 28)), "t10k": rng.integers(0, 256, (10, 28, 28))}
    for prefix, n in (("train", 40), ("t10k", 10)):
        _write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", imgs[prefix], gz=True)
        _write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 10, gz=True)
    test = load_split("fashion-mnist", "test", root=tmp_path)
    assert test.classes[0] == "T-shirt/top" and test.images.shape == (10, 1, 28, 28)
    assert torch.equal(test.images[:, 0], torch.from_numpy(imgs["t10k"].astype(np.uint8)))
    assert len(load_split("fashion-mnist", "train", root=tmp_path)) == 36
    # --val-from test: train is the whole train part, val and test the two fixed halves of the test part
    tr, va, te = (load_split("fashion-mnist", s, root=tmp_path, val_from="test") for s in ("train", "val", "test"))
    assert (len(tr), len(va), len(te)) == (40, 5, 5)
    both = torch.cat([va.images, te.images]).flatten(1)
    assert len({tuple(r.tolist()) for r in both}) == 10  # disjoint halves covering the test part
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(b"\x1f\x8b broken")
    with pytest.raises(Exception, match="not a readable idx file"):
        load_split("fashion-mnist", "test", root=tmp_path)


@pytest.mark.skipif(not DEBIAN_FMNIST.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_debian_fashion_mnist_package() -> None:
    test = load_split("fashion-mnist", "test", root=DEBIAN_FMNIST)
    assert len(test) == 10_000 and test.labels[:3].tolist() == [9, 2, 1]  # the official first test labels
    assert len(load_split("fashion-mnist", "train", root=DEBIAN_FMNIST)) == 55_000


@pytest.mark.skipif(not DEBIAN_FMNIST.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_debian_fashion_mnist_needs_no_data_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With no --data-root, no $VCAL_DATA and no ./data, the Debian package's folder is read; a folder the user
    names is never swapped for it."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("VCAL_DATA", raising=False)
    test = load_split("fashion-mnist", "test")
    assert len(test) == 10_000 and test.identity["root"] == str(DEBIAN_FMNIST.resolve())
    with pytest.raises(DataError, match="not found under --data-root"):
        load_split("fashion-mnist", "test", root=tmp_path)
    monkeypatch.setenv("VCAL_DATA", str(tmp_path))
    with pytest.raises(DataError, match="not found under --data-root"):
        load_split("fashion-mnist", "test")


def test_val_from_test_on_a_pool_and_in_the_cache_key(tmp_path: Path) -> None:
    tr, va, te = (load_split("digits", s, val_from="test") for s in ("train", "val", "test"))
    assert (len(tr), len(va), len(te)) == (1077 + 180, 270, 270)
    assert va.identity["val_from"] == "test" and te.identity != load_split("digits", "test").identity
    with pytest.raises(Exception, match="--val-from 'nope'"):
        load_split("digits", "val", val_from="nope")


def test_retrain_warns_when_val_looks_like_training_data(runner) -> None:
    """cnn_digits was trained on digits:train. Handing it train as val (a model trained on everything)
    must be flagged; its honest held-out val must not."""
    import vcal_cli.session.workbench as options

    r = runner.invoke(app, ["retrain", str(CNN), "--data", "digits", "--head", "temperature", "--bootstrap", "0"])
    assert r.exit_code == 0, r.output
    assert "val looks like training data" not in r.stderr
    real = options.load_split

    def val_is_train(data, split="test", *, root=None, val_from="train", columns=(None, None)):
        return real(data, "train" if split == "val" else split, root=root, val_from=val_from, columns=columns)

    mp = pytest.MonkeyPatch()
    mp.setattr(options, "load_split", val_is_train)
    try:
        r = runner.invoke(
            app, ["retrain", str(CNN), "--data", "digits", "--head", "temperature", "--bootstrap", "0", "--out", "seen"]
        )
    finally:
        mp.undo()
    assert r.exit_code == 0, r.output
    assert "val looks like training data" in r.stderr and "--val-from test" in r.stderr
    assert any("val looks like" in w for w in json.loads(Path("seen/report.json").read_text())["warnings"])


def test_data_defaults_to_the_checkpoints_own_else_is_required(runner, tmp_path: Path, cnn_weights) -> None:
    r = runner.invoke(app, ["audit", str(CNN), "--bootstrap", "0"])
    assert r.exit_code == 0 and json.loads(Path("vcal-report/report.json").read_text())["data"]["name"] == "digits"
    path = _timm_train_py(tmp_path / "m.pth.tar", cnn_weights)
    line = one_line_error(runner.invoke(app, ["audit", str(path)]))
    assert "--data" in line and "does not record" in line


def test_gate_compares_like_with_like(runner, tmp_path: Path) -> None:
    a = runner.invoke(app, ["audit", str(CNN), "--data", "digits", "--bootstrap", "0", "--out", "a"])
    b = runner.invoke(app, ["audit", str(CNN), "--data", "digits", "--bootstrap", "0", "--bins", "10", "--out", "b"])
    assert a.exit_code == b.exit_code == 0
    line = one_line_error(runner.invoke(app, ["gate", "a/report.json", "--baseline", "b/report.json"]))
    assert "differ in bins (10 vs 15)" in line
    rep = json.loads(Path("a/report.json").read_text())
    rep["data"]["name"] = "svhn"
    Path("c.json").write_text(json.dumps(rep))
    assert "differ in data set (svhn vs digits)" in one_line_error(
        runner.invoke(app, ["gate", "a/report.json", "--baseline", "c.json"])
    )


def test_gate_takes_every_loading_flag(runner) -> None:
    r = runner.invoke(app, ["gate", "--help"])
    for flag in ("--input-size", "--mean", "--std", "--head-module", "--precision", "--val-from", "--arch"):
        assert flag in r.output, flag


def test_out_is_the_report_directory_everywhere(runner, tmp_path: Path) -> None:
    line = one_line_error(
        runner.invoke(app, ["retrain", str(CNN), "--head", "temperature", "--out", "new.safetensors"])
    )
    assert "--checkpoint-out new.safetensors" in line
    a = runner.invoke(app, ["audit", str(CNN), "--bootstrap", "0", "--out", "a"])
    assert a.exit_code == 0
    c = runner.invoke(app, ["compare", "a/report.json", "a/report.json", "--out", "cmp"])
    assert c.exit_code == 0 and Path("cmp/compare.png").is_file() and not Path("compare.png").exists()


def test_unexpected_error_is_one_line_and_debug_shows_it(runner, monkeypatch: pytest.MonkeyPatch) -> None:
    import vcal_cli.api as api

    def boom(*a, **k):
        raise AttributeError("module 'x' has no attribute 'Abort'")

    monkeypatch.setattr(api, "audit", boom)
    r = runner.invoke(app, ["audit", str(CNN)])
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.exit_code == 1 and lines == [
        "error: internal error: AttributeError: module 'x' has no attribute 'Abort'; rerun with --debug"
    ]
    d = runner.invoke(app, ["audit", str(CNN), "--debug"])
    assert isinstance(d.exception, AttributeError) and "internal error" not in d.stderr


def test_progress_lines_in_a_log(runner) -> None:
    r = runner.invoke(app, ["audit", str(CNN), "--data", "digits", "--bootstrap", "0", "--no-cache"])
    assert r.exit_code == 0
    assert "features digits:test: started" in r.stderr and "features digits:test: done" in r.stderr
    assert "features cached in" not in r.stderr  # --no-cache: nothing was cached


def test_help_imports_no_heavy_library() -> None:
    code = (
        "import sys\nfrom vcal_cli.cli import app\n"
        "try:\n    app(['--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('torch', 'timm', 'matplotlib', 'pandas') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout + out.stderr


@pytest.mark.slow
@pytest.mark.parametrize("version", ["0.29.0", "0.29.2"])
def test_error_paths_on_the_oldest_and_newest_typer(tmp_path: Path, version: str) -> None:
    """The pin allows typer 0.29.x: the CLI's error paths use only its public API, on both ends."""
    target = tmp_path / f"typer-{version}"
    got = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), f"typer=={version}"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if got.returncode != 0:
        pytest.skip(f"typer {version} could not be installed here: {got.stderr.strip()[-200:]}")
    env = {**os.environ, "PYTHONPATH": str(target)}
    cases = [
        (["audit", "--bogus"], 2, "No such option"),
        (["audit", "missing.safetensors", "--data", "digits"], 2, "does not exist"),
        (["retrain", str(CNN)], 2, "Missing option"),
    ]
    for args, code, text in cases:
        p = subprocess.run(
            [sys.executable, "-m", "vcal_cli", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
            cwd=tmp_path,
        )
        lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
        assert p.returncode == code and len(lines) == 1 and text in lines[0], (version, args, p.stderr)
        assert "Traceback" not in p.stderr
    v = subprocess.run(
        [sys.executable, "-c", "import typer; print(typer.__version__)"], capture_output=True, text=True, env=env
    )
    assert v.stdout.strip() == version


def test_tables_stay_readable_at_80_columns() -> None:
    from rich.console import Console

    from vcal_cli.reports.sections.metrics import audit_table

    rep = audit(CNN, data="digits", settings=AuditSettings(n_bootstrap=20)).to_dict()
    rep["checkpoint"]["path"] = "/a/very/long/path/" * 6 + "model.safetensors"
    console = Console(width=80, record=True, file=open(os.devnull, "w"))
    console.print(audit_table(rep))
    text = console.export_text()
    assert "…" not in text and f"{rep['metrics']['ece']:.4f}" in text and "model.safetensors" in text.replace("\n", "")


def test_audit_of_logits_keeps_the_hierarchy(runner, tmp_path: Path) -> None:
    """Regression: `vcal audit --logits FILE --hierarchy H` built the tree and dropped it."""
    from vcal_cli.api import load_features

    _, fs, _ = load_features(str(CNN), "digits", "test")
    np.savez(tmp_path / "l.npz", logits=fs.logits.numpy(), labels=fs.labels.numpy())
    rows = ["class,parent"] + [f"{d},{'round' if d in '0689' else 'straight'}" for d in "0123456789"]
    (tmp_path / "h.csv").write_text("\n".join(rows) + "\n")
    r = runner.invoke(app, ["audit", "--logits", "l.npz", "--hierarchy", "h.csv", "--json", "--bootstrap", "0"])
    assert r.exit_code == 0, r.output
    h = json.loads(r.stdout)["hierarchy"]
    assert h["height"] == 2 and h["metrics"]["mistake_severity"] is not None
