"""Every checkpoint form vcal reads, the head finder, and the refusals."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from vcal_cli import load_checkpoint, save_checkpoint
from vcal_cli.checkpoints import build_arch, find_head
from vcal_cli.errors import CheckpointError

from .helpers import tiny_mlp


def _logits_and_features(loaded, x):
    feats = []
    h = loaded.head.register_forward_pre_hook(lambda _m, inp: feats.append(inp[0].flatten(1)))
    with torch.no_grad():
        out = loaded.model(x)
    h.remove()
    return out, feats[0]


def test_vcal_format_round_trip(tmp_path: Path) -> None:
    src = tiny_mlp()
    path = save_checkpoint(src, tmp_path / "m.safetensors")
    got = load_checkpoint(path)
    assert (got.arch, got.num_classes, got.head_name) == ("vcal:mlp", 10, "fc")
    assert got.class_names == [str(i) for i in range(10)]
    assert got.preprocessing == src.preprocessing
    x = torch.randn(4, 1, 8, 8)
    assert torch.equal(got.model(x), src.model(x))


def test_save_refuses_to_overwrite_its_input(mlp_ckpt: Path) -> None:
    loaded = load_checkpoint(mlp_ckpt)
    with pytest.raises(CheckpointError, match="over an input"):
        save_checkpoint(loaded, mlp_ckpt)


WRAPPERS = {
    "plain": lambda sd: sd,
    "state_dict": lambda sd: {"state_dict": sd, "epoch": 3},
    "model": lambda sd: {"model": sd, "optimizer": {"lr": 0.1}},
    "model_state_dict": lambda sd: {"model_state_dict": sd},
    "module_prefix": lambda sd: {f"module.{k}": v for k, v in sd.items()},
    "model_prefix_nested": lambda sd: {"state_dict": {f"model.{k}": v for k, v in sd.items()}},
}


# safetensors holds a flat tensor dict only, so it gets the flat forms
FORMS = [(s, w) for s in (".pt", ".pth", ".bin") for w in WRAPPERS] + [
    (".safetensors", "plain"),
    (".safetensors", "module_prefix"),
]


@pytest.mark.parametrize("suffix,wrapper", FORMS)
def test_state_dict_forms_with_timm_arch(tmp_path: Path, suffix: str, wrapper: str) -> None:
    torch.manual_seed(0)
    model = build_arch("test_resnet", 7, in_chans=1).eval()
    obj = WRAPPERS[wrapper](model.state_dict())
    path = tmp_path / f"w{suffix}"
    if suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in obj.items()}, str(path))
    else:
        torch.save(obj, path)
    got = load_checkpoint(path, arch="test_resnet")
    assert got.num_classes == 7 and got.in_chans == 1  # both read off the weights
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        assert torch.allclose(got.model(x), model(x), atol=1e-6)


@pytest.mark.parametrize(
    "arch,head",
    [
        ("torchvision:resnet18", "fc"),
        ("torchvision:mobilenet_v3_small", "classifier.3"),
        ("torchvision:vit_b_16", "heads.head"),
        ("test_efficientnet", "classifier"),
    ],
)
def test_head_finder_and_features_reproduce_logits(arch: str, head: str) -> None:
    torch.manual_seed(0)
    kwargs = {"image_size": 32} if "vit" in arch else {}
    model = build_arch(arch, 5, kwargs=kwargs).eval()
    name = find_head(model, 5)
    assert name == head
    from vcal_cli import LoadedModel

    loaded = LoadedModel(model=model, head_name=name, arch=arch, num_classes=5, sha256="")
    logits, feats = _logits_and_features(loaded, torch.randn(3, 3, 32, 32))
    w, b = loaded.head.weight, loaded.head.bias
    assert torch.allclose(feats @ w.T + b, logits, atol=1e-5)


def test_head_finder_falls_back_to_last_linear_with_class_count_and_override() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 4), nn.Softmax(1))
    assert find_head(model, 4) == "3"
    assert find_head(model, 6) == "1"
    assert find_head(model, 4, override="1") == "1"
    with pytest.raises(CheckpointError, match="not a module"):
        find_head(model, 4, override="nope")
    with pytest.raises(CheckpointError, match="not an nn.Linear"):
        find_head(model, 4, override="2")
    with pytest.raises(CheckpointError, match="--head-module"):
        find_head(model, 9)


def test_key_mismatch_names_counts_and_examples(tmp_path: Path) -> None:
    sd = build_arch("test_resnet", 10).state_dict()
    sd.pop("conv1.weight", None)
    sd = {k: v for i, (k, v) in enumerate(sd.items()) if i % 7}  # drop some keys
    sd["extra.weight"] = torch.zeros(1)
    torch.save(sd, tmp_path / "w.pt")
    with pytest.raises(CheckpointError, match=r"does not fit --arch 'test_resnet': .*\d+ keys missing .*1 unexpected"):
        load_checkpoint(tmp_path / "w.pt", arch="test_resnet")


def test_arch_that_does_not_fit(tmp_path: Path) -> None:
    torch.save(build_arch("test_resnet", 10).state_dict(), tmp_path / "w.pt")
    with pytest.raises(CheckpointError, match="does not fit --arch 'torchvision:resnet18'"):
        load_checkpoint(tmp_path / "w.pt", arch="torchvision:resnet18")


def test_unknown_arch_suggests(tmp_path: Path) -> None:
    torch.save(build_arch("test_resnet", 10).state_dict(), tmp_path / "w.pt")
    with pytest.raises(CheckpointError, match="did you mean .*test_resnet"):
        load_checkpoint(tmp_path / "w.pt", arch="test_resnt")


def test_state_dict_without_arch_asks_for_it(tmp_path: Path) -> None:
    torch.save(build_arch("test_resnet", 10).state_dict(), tmp_path / "w.pt")
    with pytest.raises(CheckpointError, match="--arch"):
        load_checkpoint(tmp_path / "w.pt")


class _Evil:
    """Unpickling this creates a marker file: the proof that code ran."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_is_refused_and_nothing_executes(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "payload": _Evil(str(marker))}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="runs that code.*--trust-checkpoint"):
        load_checkpoint(tmp_path / "evil.pt", arch="test_resnet")
    assert not marker.exists()


def test_pickled_module_needs_trust(tmp_path: Path) -> None:
    model = tiny_mlp().model
    torch.save(model, tmp_path / "full.pt")
    with pytest.raises(CheckpointError, match="pickle"):
        load_checkpoint(tmp_path / "full.pt")
    got = load_checkpoint(tmp_path / "full.pt", trust=True)
    assert got.head_name == "fc" and got.num_classes == 10
    x = torch.randn(2, 1, 8, 8)
    assert torch.equal(got.model(x), model(x))


@pytest.mark.parametrize(
    "kind",
    [
        "missing",
        "directory",
        "garbage.pt",
        "garbage.safetensors",
        "truncated.pt",
        "truncated.safetensors",
        "no_tensors.pt",
    ],
)
def test_bad_files(tmp_path: Path, mlp_ckpt: Path, kind: str) -> None:
    path = tmp_path / kind
    if kind == "directory":
        path.mkdir()
    elif kind.startswith("garbage"):
        path.write_bytes(b"this is not a checkpoint at all" * 10)
    elif kind == "truncated.pt":
        torch.save(build_arch("test_resnet", 10).state_dict(), tmp_path / "full.pt")
        path.write_bytes((tmp_path / "full.pt").read_bytes()[:5000])
    elif kind == "truncated.safetensors":
        path.write_bytes(mlp_ckpt.read_bytes()[:3000])
    elif kind == "no_tensors.pt":
        torch.save({"epoch": 3, "lr": 0.1}, path)
    with pytest.raises(CheckpointError):
        load_checkpoint(path, arch="test_resnet")


def _ema_files(tmp_path: Path) -> tuple[nn.Module, nn.Module, Path, Path]:
    """A timm train.py --model-ema checkpoint (written as its CheckpointSaver does: `state_dict` and `state_dict_ema`,
    from timm's own ModelEmaV3) and a torchvision reference-script one (`model` and `model_ema`, an AveragedModel
    state with `module.` keys and `n_averaged`); the EMA is decayed towards other weights so the two sets differ."""
    import argparse

    from timm.utils import ModelEmaV3
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    torch.manual_seed(0)
    raw = build_arch("test_resnet", 10, in_chans=1).eval()
    ema = ModelEmaV3(raw, decay=0.5)
    with torch.no_grad():
        for p in raw.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    ema.update(raw)  # the EMA now sits halfway between the initial and the moved weights
    args = argparse.Namespace(
        model="test_resnet", num_classes=10, in_chans=1, input_size=[1, 8, 8], mean=[0.5], std=[0.5], model_ema=True
    )
    timm_file = tmp_path / "model_best.pth.tar"
    torch.save(
        {
            "epoch": 3,
            "arch": "test_resnet",
            "state_dict": raw.state_dict(),
            "state_dict_ema": ema.module.state_dict(),
            "args": args,
        },
        timm_file,
    )
    averaged = AveragedModel(raw, multi_avg_fn=get_ema_multi_avg_fn(0.9))
    tv_file = tmp_path / "tv.pth"
    torch.save({"model": raw.state_dict(), "model_ema": averaged.state_dict(), "epoch": 3}, tv_file)
    return raw, ema.module.eval(), timm_file, tv_file


def test_ema_weights_are_audited_and_said(tmp_path: Path) -> None:
    raw, ema, timm_file, tv_file = _ema_files(tmp_path)
    x = torch.randn(4, 1, 8, 8)
    with torch.no_grad():
        want_ema, want_raw = ema(x), raw(x)
    assert not torch.allclose(want_ema, want_raw, atol=1e-3)
    got = load_checkpoint(timm_file)
    assert got.weight_set == {"set": "ema", "key": "state_dict_ema", "other": "raw", "other_key": "state_dict"}
    assert got.describe()["weights"]["set"] == "ema"
    with torch.no_grad():
        assert torch.allclose(got.model(x), want_ema, atol=1e-5)
        assert torch.allclose(load_checkpoint(timm_file, weight_set="raw").model(x), want_raw, atol=1e-5)
    tv = load_checkpoint(tv_file, arch="test_resnet")  # AveragedModel keys: module.*, n_averaged
    assert tv.weight_set is not None and tv.weight_set["key"] == "model_ema"
    with pytest.raises(CheckpointError, match="holds only raw weights"):
        torch.save({"state_dict": raw.state_dict()}, tmp_path / "one.pth")
        load_checkpoint(tmp_path / "one.pth", arch="test_resnet", weight_set="ema")


def test_ema_cli_says_which_set_and_caches_them_apart(runner, tmp_path: Path) -> None:
    import json

    from vcal_cli.cli import app

    _, _, timm_file, _ = _ema_files(tmp_path)
    r = runner.invoke(app, ["audit", str(timm_file), "--data", "digits", "--bootstrap", "0", "--json", "--no-suggest"])
    assert r.exit_code == 0, r.output
    assert "weights: EMA ('state_dict_ema'); the file also holds raw weights" in r.stderr
    ema_rep = json.loads(r.stdout)
    assert ema_rep["checkpoint"]["weights"]["set"] == "ema"
    r = runner.invoke(
        app,
        [
            "audit",
            str(timm_file),
            "--data",
            "digits",
            "--bootstrap",
            "0",
            "--json",
            "--no-suggest",
            "--weight-set",
            "raw",
        ],
    )
    assert r.exit_code == 0, r.output
    raw_rep = json.loads(r.stdout)
    assert raw_rep["checkpoint"]["weights"]["set"] == "raw"
    assert raw_rep["metrics"]["nll"] != ema_rep["metrics"]["nll"]  # not the EMA's cached features


def test_a_timm_run_folder_finds_model_best(tmp_path: Path) -> None:
    _, ema, timm_file, _ = _ema_files(tmp_path)
    run = tmp_path / "output" / "train" / "exp"
    run.mkdir(parents=True)
    for name in ("checkpoint-1.pth.tar", "checkpoint-2.pth.tar", "last.pth.tar", "model_best.pth.tar"):
        (run / name).write_bytes(timm_file.read_bytes())
    got = load_checkpoint(run)
    assert got.path == run / "model_best.pth.tar"
    (run / "model_best.pth.tar").unlink()
    assert load_checkpoint(run).path == run / "last.pth.tar"


def test_torchvision_arch_reads_input_channels_off_the_weights(tmp_path: Path) -> None:
    """A torchvision resnet18 whose stem was replaced for grey images (what users do) loads with --arch alone, and
    computes what the model computed."""
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10)
    model.conv1 = nn.Conv2d(1, 64, 7, 2, 3, bias=False)
    model.eval()
    torch.save(model.state_dict(), tmp_path / "tv.pth")
    got = load_checkpoint(tmp_path / "tv.pth", arch="torchvision:resnet18")
    assert got.in_chans == 1 and got.num_classes == 10 and got.arch == "torchvision:resnet18"
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        assert torch.allclose(got.model(x), model(x), atol=1e-5)


@pytest.mark.parametrize("kind", ["torchscript", "export", "onnx", "zip"])
def test_files_of_another_kind_are_named_for_what_they_are(tmp_path: Path, kind: str) -> None:
    """Written by the real tools: each gets one line saying what the file is (not 'truncated', not 'a pickle'):
    programs that unpickle without --trust-checkpoint, an ONNX file onnxruntime cannot read, a foreign zip."""
    import warnings
    import zipfile

    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).eval()
    x = torch.randn(2, 1, 8, 8)
    path = tmp_path / {"torchscript": "m.pt", "export": "m.pt2", "onnx": "m.onnx", "zip": "m.pth"}[kind]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if kind == "torchscript":
            torch.jit.save(torch.jit.script(model), path)
        elif kind == "export":
            torch.export.save(torch.export.export(model, (x,)), path)
        elif kind == "onnx":
            path.write_bytes(b"\x08\x07\x12\x07pytorch" + b"\x00" * 64)  # an ONNX header, then damage
        else:
            with zipfile.ZipFile(path, "w") as z:
                z.writestr("readme.txt", "not a checkpoint")
    words = {
        "torchscript": "a TorchScript program",
        "export": "a torch.export program",
        "onnx": "not a readable ONNX model",
        "zip": "a zip archive that torch.save did not write",
    }[kind]
    with pytest.raises(CheckpointError, match=words):
        load_checkpoint(path, arch="vcal:mlp")


def test_torchvision_weights_name_sets_transforms_and_categories(tmp_path: Path) -> None:
    """`--weights ResNet50_Weights.IMAGENET1K_V2`: resize 232, crop 224, ImageNet mean/std and the 1,000 category
    names, all from torchvision's own metadata (no download: the weights are never fetched)."""
    import torchvision

    from vcal_cli.data.preprocessing import torchvision_weights
    from vcal_cli.errors import UsageError

    prep, names = torchvision_weights("ResNet50_Weights.IMAGENET1K_V2")
    want = torchvision.models.ResNet50_Weights.IMAGENET1K_V2.transforms()
    assert prep.input_size == (3, 224, 224) and prep.crop_pct == pytest.approx(224 / 232)
    assert prep.mean == tuple(want.mean) and prep.std == tuple(want.std) and prep.interpolation == "bilinear"
    assert len(names) == 1000 and names[0] == "tench" and "ResNet50_Weights" in prep.source
    # the pixels equal torchvision's own transform on the same image
    from PIL import Image

    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 255, (300, 260, 3), dtype=np.uint8))
    mine = prep.to_model_input(torch.from_numpy(np.asarray(img)).permute(2, 0, 1)[None].contiguous())
    assert torch.allclose(mine, want(img)[None], atol=2e-2)
    grey, _ = torchvision_weights("resnet18.IMAGENET1K_V1", in_chans=1)
    assert grey.input_size == (1, 224, 224) and len(grey.mean) == 1
    with pytest.raises(UsageError, match="not a torchvision weights name"):
        torchvision_weights("ResNet50_Weights.NOPE")
