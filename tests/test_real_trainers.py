"""Checkpoints written by the real trainers audit at the trainer's own accuracy on the same images.

Each test trains a tiny model with the trainer itself for seconds on CPU, lets the trainer evaluate its saved file on
a fixed set of images, and audits the same file on the same images with nothing but the file: vcal's accuracy must
equal the trainer's (exactly: the same images in the same float32 forward, so any difference is a preprocessing
difference, which is what these tests exist to catch).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from vcal_cli import AuditSettings, audit

MEAN, STD = 0.2860, 0.3530


def _images(n: int = 96, size: int = 28, classes: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """Class-dependent blobs a tiny model learns in one epoch (so its accuracy is far from chance and from 1)."""
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, classes, (n,), generator=g)
    x = torch.rand(n, 1, size, size, generator=g) * 0.6
    for c in range(classes):
        x[y == c, :, 4 + 5 * c : 9 + 5 * c, 4:24] += 0.12
    return (x.clamp(0, 1) * 255).round().to(torch.uint8), y


def _npz(path: Path, x: torch.Tensor, y: torch.Tensor) -> str:
    arrays = {f"{k}_{s}": v for s in ("train", "val", "test") for k, v in (("x", x.numpy()), ("y", y.numpy()))}
    np.savez(path, **arrays)
    return f"npz:{path}"


def test_lightning_trainer_checkpoint_audits_at_the_trainers_accuracy(tmp_path: Path) -> None:
    """A LightningModule around a timm architecture, images fed as ToTensor + Normalize at 28x28 (size, mean and
    std saved with save_hyperparameters), trained and checkpointed by `lightning.Trainer`, evaluated by
    `Trainer.validate` on the saved file."""
    lightning = pytest.importorskip("lightning")
    import timm
    from torch.utils.data import DataLoader, TensorDataset

    class Module(lightning.LightningModule):
        def __init__(self, arch: str, num_classes: int, in_chans: int, img_size: int, mean: list, std: list) -> None:
            super().__init__()
            self.save_hyperparameters()
            self.model = timm.create_model(arch, num_classes=num_classes, in_chans=in_chans)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.model((x.float() / 255 - MEAN) / STD)  # ToTensor + Normalize

        def training_step(self, batch, _):  # noqa: ANN001, ANN202
            x, y = batch
            return torch.nn.functional.cross_entropy(self(x), y)

        def validation_step(self, batch, _):  # noqa: ANN001, ANN202
            x, y = batch
            self.log("val_acc", (self(x).argmax(1) == y).float().mean(), reduce_fx="mean", batch_size=len(y))

        def configure_optimizers(self):  # noqa: ANN202
            return torch.optim.Adam(self.parameters(), lr=1e-2)

    x, y = _images()
    torch.manual_seed(0)
    module = Module("test_resnet", 4, 1, 28, [MEAN], [STD])
    loader = DataLoader(TensorDataset(x, y), batch_size=32)
    trainer = lightning.Trainer(
        max_epochs=4,
        limit_val_batches=0,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        deterministic=True,
    )
    trainer.fit(module, loader, loader)
    ckpt = tmp_path / "last.ckpt"
    trainer.save_checkpoint(ckpt)
    evaluated = Module.load_from_checkpoint(ckpt).eval()
    full = DataLoader(TensorDataset(x, y), batch_size=len(y))  # one batch: the logged mean is the accuracy
    (res,) = lightning.Trainer(
        accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False
    ).validate(evaluated, full, verbose=False)
    rep = audit(ckpt, data=_npz(tmp_path / "d.npz", x, y), settings=AuditSettings(n_bootstrap=0))
    p = rep.settings["preprocessing"]
    assert p["input_size"] == [1, 28, 28] and "crop_pct" not in p, p
    assert 0.3 < res["val_acc"] < 1.0  # the model learned something and is not perfect: the comparison can fail
    assert rep.metrics["accuracy"] == pytest.approx(res["val_acc"], abs=1e-6)


def test_transformers_trainer_checkpoint_audits_at_the_trainers_accuracy(tmp_path: Path) -> None:
    """A tiny ViT trained by `transformers.Trainer` (its image processor passed as `processing_class`, so the
    checkpoint folder holds `preprocessor_config.json`), evaluated by `Trainer.predict` on the same images: vcal's
    audit of the `checkpoint-N/` folder gives the same accuracy."""
    transformers = pytest.importorskip("transformers")
    from PIL import Image

    x, y = _images()
    processor = transformers.ViTImageProcessor(size={"height": 28, "width": 28}, image_mean=[MEAN], image_std=[STD])
    pixels = processor(images=[Image.fromarray(i[0].numpy()) for i in x], return_tensors="pt")["pixel_values"]

    class Rows(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return len(y)

        def __getitem__(self, i: int) -> dict:
            return {"pixel_values": pixels[i], "labels": y[i]}

    cfg = transformers.ViTConfig(
        image_size=28,
        patch_size=7,
        num_channels=1,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=4,
        id2label={i: f"c{i}" for i in range(4)},
        label2id={f"c{i}": i for i in range(4)},
    )
    torch.manual_seed(0)
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "run"),
        num_train_epochs=6,
        per_device_train_batch_size=16,
        learning_rate=3e-3,
        save_strategy="epoch",
        save_total_limit=1,
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
        logging_strategy="no",
        seed=0,
    )
    trainer = transformers.Trainer(
        model=transformers.ViTForImageClassification(cfg), args=args, train_dataset=Rows(), processing_class=processor
    )
    trainer.train()
    (ckpt,) = sorted((tmp_path / "run").glob("checkpoint-*"))
    assert (ckpt / "preprocessor_config.json").exists()
    reloaded = transformers.Trainer(model=transformers.ViTForImageClassification.from_pretrained(ckpt), args=args)
    logits = torch.as_tensor(reloaded.predict(Rows()).predictions)
    accuracy = float((logits.argmax(1) == y).double().mean())
    rep = audit(ckpt, data=_npz(tmp_path / "d.npz", x, y), settings=AuditSettings(n_bootstrap=0))
    assert 0.3 < accuracy < 1.0  # the model learned something and is not perfect: the comparison can fail
    assert rep.metrics["accuracy"] == pytest.approx(accuracy, abs=1e-12)


def test_timm_train_py_checkpoint_audits_at_timms_own_eval_transforms(tmp_path: Path) -> None:
    """A checkpoint in timm's train.py format (`args` with the data config: bicubic, crop 0.875, mean, std), evaluated
    as timm's validate.py does (`resolve_data_config` and `create_transform` on PIL images: resize to 32, centre crop
    28): vcal's audit of the file, with nothing but the file, gives the same accuracy."""
    import argparse

    import timm
    from PIL import Image
    from timm.data import create_transform, resolve_data_config

    x, y = _images()
    args = argparse.Namespace(
        model="test_resnet",
        num_classes=4,
        in_chans=1,
        input_size=[1, 28, 28],
        img_size=None,
        mean=[MEAN],
        std=[STD],
        interpolation="bicubic",
        crop_pct=0.875,
        crop_mode="center",
    )
    torch.manual_seed(0)
    model = timm.create_model("test_resnet", num_classes=4, in_chans=1)
    transform = create_transform(**resolve_data_config(vars(args), model=model))
    batch = torch.stack([transform(Image.fromarray(i[0].numpy())) for i in x])  # what timm feeds, train and eval
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(15):  # on half the images (the rest unseen, so the accuracy is not 1), until BatchNorm settles
        for idx in torch.randperm(len(y) // 2).split(16):
            loss = torch.nn.functional.cross_entropy(model(batch[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    path = tmp_path / "model_best.pth.tar"
    torch.save({"epoch": 3, "arch": "test_resnet", "state_dict": model.state_dict(), "args": args, "version": 2}, path)
    with torch.no_grad():
        accuracy = float((model(batch).argmax(1) == y).double().mean())
    rep = audit(path, data=_npz(tmp_path / "d.npz", x, y), settings=AuditSettings(n_bootstrap=0))
    p = rep.settings["preprocessing"]
    assert p["crop_pct"] == 0.875 and p["interpolation"] == "bicubic", p
    assert 0.3 < accuracy < 1.0
    assert rep.metrics["accuracy"] == pytest.approx(accuracy, abs=1e-12)


def test_torchvision_reference_checkpoint_audits_at_its_eval_preset(tmp_path: Path) -> None:
    """A torchvision resnet18 trained with a reference-style loop and saved as `references/classification/train.py`
    saves it (`model`, `optimizer`, `epoch`, `args` with `val_resize_size`, `val_crop_size`, `interpolation`),
    evaluated with the reference eval preset's transforms (resize 36, centre crop 32, ImageNet mean and std) on PIL
    images: vcal's audit of the file, with nothing but the file, gives the same accuracy."""
    import argparse

    import torchvision
    from PIL import Image
    from torchvision import transforms as T

    g = torch.Generator().manual_seed(1)
    y = torch.randint(0, 4, (96,), generator=g)
    x = (torch.rand(96, 3, 40, 40, generator=g) * 150).to(torch.uint8)
    for c in range(4):  # a bright stripe per class, in the centre so the crop keeps it
        x[y == c, c % 3, 8 + 6 * c : 12 + 6 * c, 8:32] = 230
    preset = T.Compose(
        [
            T.Resize(36, interpolation=T.InterpolationMode.BILINEAR),
            T.CenterCrop(32),
            T.PILToTensor(),
            T.ConvertImageDtype(torch.float),
            T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
        ]
    )
    batch = torch.stack([preset(Image.fromarray(i.permute(1, 2, 0).numpy())) for i in x])
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=4)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for _ in range(10):  # on half the images, so the accuracy on all of them is not 1
        for idx in torch.randperm(48).split(16):
            loss = torch.nn.functional.cross_entropy(model(batch[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    args = argparse.Namespace(
        model="resnet18", val_resize_size=36, val_crop_size=32, train_crop_size=32, interpolation="bilinear"
    )
    path = tmp_path / "checkpoint.pth"
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": 9, "args": args}, path)
    with torch.no_grad():
        accuracy = float((model(batch).argmax(1) == y).double().mean())
    rep = audit(path, data=_npz(tmp_path / "d.npz", x, y), settings=AuditSettings(n_bootstrap=0))
    p = rep.settings["preprocessing"]
    assert p["input_size"] == [3, 32, 32] and p["crop_pct"] == pytest.approx(32 / 36), p
    assert 0.3 < accuracy < 1.0
    assert rep.metrics["accuracy"] == pytest.approx(accuracy, abs=1e-12)


@pytest.mark.parametrize(
    ("interpolation", "source", "crop_pct", "size"),
    [("bicubic", 28, 0.875, 28), ("bilinear", 28, 0.875, 28), ("bicubic", 64, 1.0, 28), ("bilinear", 50, 0.9, 32)],
)
def test_resizing_matches_pil_to_one_grey_level(interpolation: str, source: int, crop_pct: float, size: int) -> None:
    """vcal's resize of 8-bit images against torchvision's PIL transforms (what timm's validate.py and torchvision's
    weights evaluate with): Resize(floor(size / crop_pct)) and CenterCrop(size). PIL filters in two passes, each
    rounded half up to 8 bits; vcal does the same. Measured: equal, or one grey level apart (PIL's fixed-point
    weights) on at most 0.09% of the pixels; one float pass was up to 8 levels apart on 14-22% of them."""
    from PIL import Image
    from torchvision import transforms

    from vcal_cli.data.preprocessing import Preprocessing

    g = torch.Generator().manual_seed(1)
    x = (torch.rand(24, 1, source, source, generator=g) * 0.6 * 255).round().to(torch.uint8)
    x[:, :, source // 4 : source // 2, 2:-2] += 60  # a sharp-edged blob, where the filters overshoot
    mode = getattr(transforms.InterpolationMode, interpolation.upper())
    side = int(size / crop_pct + 1e-6)
    pil = transforms.Compose([transforms.Resize(side, mode), transforms.CenterCrop(size), transforms.PILToTensor()])
    want = torch.stack([pil(Image.fromarray(i[0].numpy())) for i in x]).float()
    p = Preprocessing(
        input_size=(1, size, size), mean=(0.0,), std=(1.0,), interpolation=interpolation, crop_pct=crop_pct
    )
    diff = (p.to_pixels(x) * 255 - want).abs()
    assert float(diff.max()) <= 1.0 + 1e-4, float(diff.max())
    assert float((diff > 0.5).float().mean()) <= 0.002, float((diff > 0.5).float().mean())
