"""What `CalibrationMonitor` costs a Lightning training run: one epoch of a Fashion-MNIST resnet18, with and without it.

A `LightningModule` around timm's `resnet18` (`in_chans=1`, 10 classes, 28x28), Adam, batch 128, trained for one epoch
on vcal's Fashion-MNIST train split and validated on its val split (6,000 images), in the same process: once with no
callback, once with `CalibrationMonitor()` (its defaults: 200 bootstrap resamples, the calibration tests), the
module's `validation_step` returning its logits (the documented zero-cost way). Printed: each run's wall time, the
monitor's own time (its epoch-end computation, measured inside the callback), and the ratio.

    python benchmarks/bench_lightning.py [--root /usr/share/datasets/fashion-mnist] [--epochs 1]
"""

from __future__ import annotations

import argparse
import time

import lightning as L
import timm
import torch
from torch.utils.data import DataLoader, TensorDataset
from train_models import DEFAULT_ROOT, MEAN, STD, _tensors

from vcal_cli.integrations.lightning import CalibrationMonitor


class Net(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.model = timm.create_model("resnet18", pretrained=False, num_classes=10, in_chans=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model((x.float() / 255 - MEAN) / STD)

    def training_step(self, batch, _):  # noqa: ANN001, ANN202
        x, y = batch
        return torch.nn.functional.cross_entropy(self(x), y)

    def validation_step(self, batch, _):  # noqa: ANN001, ANN202
        x, y = batch
        return {"logits": self(x), "labels": y}

    def configure_optimizers(self):  # noqa: ANN201
        return torch.optim.Adam(self.parameters(), lr=1e-3)


class Timed(CalibrationMonitor):
    """The monitor, timing its own epoch-end work."""

    spent = 0.0

    def on_validation_epoch_end(self, trainer, pl_module):  # noqa: ANN001, ANN201
        t = time.perf_counter()
        super().on_validation_epoch_end(trainer, pl_module)
        self.spent += time.perf_counter() - t


def run(train: DataLoader, val: DataLoader, epochs: int, callbacks: list) -> float:
    torch.manual_seed(0)
    trainer = L.Trainer(
        max_epochs=epochs,
        callbacks=callbacks,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        accelerator="cpu",
    )
    t = time.perf_counter()
    trainer.fit(Net(), train, val)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default=DEFAULT_ROOT)
    ap.add_argument("--epochs", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(2)
    (x, y), (xv, yv) = _tensors("train", a.root), _tensors("val", a.root)
    train = DataLoader(TensorDataset(x, y), batch_size=128, shuffle=True)
    val = DataLoader(TensorDataset(xv, yv), batch_size=512)
    plain = run(train, val, a.epochs, [])
    monitor = Timed()
    watched = run(train, val, a.epochs, [monitor])
    print(f"{a.epochs} epoch(s) of resnet18 on {len(y):,} Fashion-MNIST images, validated on {len(yv):,}")
    print(f"  without the monitor {plain:.1f} s, with it {watched:.1f} s (ratio {watched / plain:.3f})")
    print(f"  the monitor's own epoch-end work: {monitor.spent:.2f} s ({100 * monitor.spent / plain:.2f}% of the run)")
    print(f"  last verdict: {monitor.history[-1]['verdict']}; ECE {monitor.history[-1]['ece']:.4f}")


if __name__ == "__main__":
    main()
