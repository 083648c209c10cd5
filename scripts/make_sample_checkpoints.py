"""Train the shipped sample checkpoints on the digits train split, deterministically.

    python scripts/make_sample_checkpoints.py            # writes sample_checkpoints/*.safetensors

Both nets are trained far past the point of fitting the 1,077 training images, with no weight decay
and no label smoothing, so they end up overconfident the way over-parameterised nets do.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F

from vcal_cli import LoadedModel, load_split, save_checkpoint
from vcal_cli.checkpoints import build_arch, find_head
from vcal_cli.data import Preprocessing

SPECS = {
    # name: (arch, arch kwargs, preprocessing, epochs, lr)
    "mlp_digits": (
        "vcal:mlp",
        {"in_features": 64, "hidden": [1024, 1024]},
        Preprocessing(input_size=(1, 8, 8), mean=(0.5,), std=(0.5,)),
        300,
        1e-3,
    ),
    "cnn_digits": ("test_resnet", {}, Preprocessing(input_size=(1, 8, 8), mean=(0.5,), std=(0.5,)), 100, 5e-3),
}


def train(name: str, out_dir: Path, seed: int = 0, epochs: int | None = None) -> Path:
    """Train one sample net and save it; `epochs` overrides the recipe (tests use 1)."""
    arch, kwargs, prep, recipe_epochs, lr = SPECS[name]
    epochs = epochs or recipe_epochs
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    train_split = load_split("digits", "train")
    x = prep.to_model_input(train_split.images)
    y = train_split.labels
    model = build_arch(arch, 10, in_chans=prep.input_size[0], kwargs=kwargs)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for epoch in range(epochs):
        perm = torch.randperm(len(y), generator=gen)
        for i in range(0, len(y), 64):
            idx = perm[i : i + 64]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        if epoch % max(1, epochs // 5) == 0 or epoch == epochs - 1:
            print(f"{name} epoch {epoch + 1}/{epochs} loss {loss.item():.4f}")
    model.eval()
    loaded = LoadedModel(
        model=model,
        head_name=find_head(model, 10),
        arch=arch,
        num_classes=10,
        sha256="",
        class_names=train_split.classes,
        preprocessing=prep,
        arch_kwargs=kwargs,
    )
    return save_checkpoint(
        loaded,
        out_dir / f"{name}.safetensors",
        extra_metadata={
            "trained_on": "digits:train",
            "seed": str(seed),
            "recipe": f"Adam lr={lr}, batch 64, {epochs} epochs, no regularisation",
        },
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "sample_checkpoints")
    ap.add_argument("--only", choices=sorted(SPECS))
    args = ap.parse_args()
    for name in [args.only] if args.only else SPECS:
        print("wrote", train(name, args.out))


if __name__ == "__main__":
    main()
