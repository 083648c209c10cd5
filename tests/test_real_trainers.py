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

from vcal_cli import audit

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
    rep = audit(ckpt, data=_npz(tmp_path / "d.npz", x, y), n_bootstrap=0)
    p = rep.settings["preprocessing"]
    assert p["input_size"] == [1, 28, 28] and "crop_pct" not in p, p
    assert 0.3 < res["val_acc"] < 1.0  # the model learned something and is not perfect: the comparison can fail
    assert rep.metrics["accuracy"] == pytest.approx(res["val_acc"], abs=1e-6)
