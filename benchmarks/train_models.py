"""Train the real Fashion-MNIST models the calibration benchmark audits (once; later runs reuse them).

Each model is timm's `resnet18` (`in_chans=1`, 10 classes) at the native 28x28, trained from scratch with
Adam and a cosine schedule, seeded, and saved the way timm's `train.py` saves: a dict with `epoch`, `arch`,
`state_dict`, `optimizer`, `version` and `args` (an `argparse.Namespace` carrying `model`, `num_classes`,
`in_chans`, `input_size`, `mean`, `std`, `interpolation`, `crop_pct`). vcal must read all of it with
nothing but the file.

- `early.pth.tar`: vcal's `train` split (val and test held out), the snapshot after 2 of 16 epochs;
- `overfit.pth.tar`: the same run after all 16 epochs, far past fitting (train accuracy >= 99.5%; 12 epochs
  reached 99.43%);
- `whole.pth.tar`: the whole official train part (vcal's train + val, what most users do), 5 epochs; audit
  it with `--val-from test`;
- `augmented.pth.tar`: the two-stage papers' regime as far as 2 cores allow: vcal's train split, every batch
  randomly shifted by up to 4 pixels (zero padding, the 28x28 crop: CIFAR's pad-4 crop at this size) and half
  of it mirrored, for 15 epochs (train accuracy on the clean images is printed at the end).

    python benchmarks/train_models.py [--out ~/.cache/vcal-bench/models] [--root /usr/share/datasets/fashion-mnist]

Needs Debian's `dataset-fashion-mnist` (or the four gzipped idx files under --root). About a minute per
epoch on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import timm
import torch
import torch.nn.functional as F

from vcal_cli.data import load_split
from vcal_cli.data.augment import shift_and_flip

MEAN, STD = 0.2860, 0.3530  # Fashion-MNIST's train-part pixel statistics
DEFAULT_OUT = Path("~/.cache/vcal-bench/models").expanduser()
DEFAULT_ROOT = "/usr/share/datasets/fashion-mnist"
AUGMENTED_EPOCHS = 15
SPLIT_EPOCHS = 16  # the overfit run: 12 epochs reached a train accuracy of 0.9943, short of the 0.995 bar


def _args(epochs: int, seed: int, num_classes: int = 10) -> argparse.Namespace:
    """What timm's train.py records in `args` (the fields vcal reads, plus a few others it must ignore)."""
    return argparse.Namespace(
        model="resnet18",
        num_classes=num_classes,
        in_chans=1,
        input_size=[1, 28, 28],
        img_size=None,
        mean=[MEAN],
        std=[STD],
        interpolation="bilinear",
        crop_pct=1.0,
        epochs=epochs,
        lr=1e-3,
        opt="adam",
        sched="cosine",
        seed=seed,
        batch_size=128,
        dataset="fashion-mnist",
        pretrained=False,
    )


def _tensors(split: str, root: str) -> tuple[torch.Tensor, torch.Tensor]:
    s = load_split("fashion-mnist", split, root=root)
    assert s.images is not None
    return s.images, s.labels


def _save(path: Path, model: torch.nn.Module, opt: torch.optim.Optimizer, epoch: int, args: argparse.Namespace) -> None:
    state = {
        "epoch": epoch,
        "arch": args.model,
        "state_dict": model.state_dict(),
        "optimizer": opt.state_dict(),
        "version": 2,
        "args": args,
        "metric": None,
    }
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)
    print(f"wrote {path}", flush=True)


def _accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.inference_mode():
        hits = sum(
            (model((x[i : i + 1000].float() / 255 - MEAN) / STD).argmax(1) == y[i : i + 1000]).sum().item()
            for i in range(0, len(y), 1000)
        )
    return hits / len(y)


def _augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """A random crop of the 4-pixel zero-padded batch and a horizontal flip of half of it."""
    offsets = torch.randint(0, 9, (len(x), 2), generator=g)
    return shift_and_flip(x, offsets, torch.rand(len(x), generator=g) < 0.5, 4)


def train(
    x: torch.Tensor,
    y: torch.Tensor,
    epochs: int,
    seed: int,
    snapshots: dict[int, Path],
    augment: bool = False,
    num_classes: int = 10,
) -> None:
    """Adam with a one-cycle schedule over `epochs`; snapshot at the given epochs."""
    torch.manual_seed(seed)
    model = timm.create_model("resnet18", pretrained=False, num_classes=num_classes, in_chans=1)
    model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    steps = epochs * -(-len(y) // 128)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-3, total_steps=steps, pct_start=0.1)
    g = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        model.train()
        t0, total = time.perf_counter(), 0.0
        for idx in torch.randperm(len(y), generator=g).split(128):
            xb = _augment(x[idx], g) if augment else x[idx]
            xb = ((xb.float() / 255 - MEAN) / STD).contiguous(memory_format=torch.channels_last)
            loss = F.cross_entropy(model(xb), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        print(f"epoch {epoch + 1}/{epochs}: loss {total / len(y):.4f} ({time.perf_counter() - t0:.0f} s)", flush=True)
        if epoch + 1 in snapshots:
            print(f"  train accuracy {_accuracy(model, x, y):.4f}", flush=True)
            _save(snapshots[epoch + 1], model, opt, epoch, _args(epochs, seed, num_classes))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--root", default=DEFAULT_ROOT)
    p.add_argument("--only", choices=["split", "whole", "augmented"], default=None)
    a = p.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(2)
    if a.only in (None, "split") and not (a.out / "overfit.pth.tar").exists():
        x, y = _tensors("train", a.root)
        train(x, y, SPLIT_EPOCHS, 0, {2: a.out / "early.pth.tar", SPLIT_EPOCHS: a.out / "overfit.pth.tar"})
    if a.only in (None, "whole") and not (a.out / "whole.pth.tar").exists():
        (xt, yt), (xv, yv) = _tensors("train", a.root), _tensors("val", a.root)
        train(torch.cat([xt, xv]), torch.cat([yt, yv]), 5, 1, {5: a.out / "whole.pth.tar"})
    if a.only in (None, "augmented") and not (a.out / "augmented.pth.tar").exists():
        x, y = _tensors("train", a.root)
        train(x, y, AUGMENTED_EPOCHS, 2, {AUGMENTED_EPOCHS: a.out / "augmented.pth.tar"}, augment=True)


if __name__ == "__main__":
    main()
