"""Every model file a user holds, from one real model: a timm resnet18 trained on Fashion-MNIST (saved as timm's
train.py saves) is written by the real writers as TorchScript, a `torch.export` program and ONNX, and vcal audits
each with nothing but `--trust-checkpoint` where the README says so. Prints each file's test accuracy, its distance
to the trainer's own (the eager model on the same test split), and the wall time of the audit.

    python benchmarks/check_formats.py [--model ~/.cache/vcal-bench/models/early.pth.tar]
        [--root /usr/share/datasets/fashion-mnist]

Train the model first with `benchmarks/train_models.py`.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import torch

from vcal_cli import ExtractOptions, Workbench, load_checkpoint
from vcal_cli.data import load_split


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, default=Path("~/.cache/vcal-bench/models/early.pth.tar").expanduser())
    ap.add_argument("--root", default="/usr/share/datasets/fashion-mnist")
    a = ap.parse_args()
    loaded = load_checkpoint(a.model)
    base = Workbench.open(loaded, "fashion-mnist", ExtractOptions.of(data_root=a.root, use_cache=False))
    prep = base.preprocessing
    test = load_split("fashion-mnist", "test", root=a.root)
    model = loaded.model.eval()
    with torch.no_grad():
        logits = torch.cat([model(prep.to_model_input(test.images[i : i + 500])) for i in range(0, len(test), 500)])
    trainer = float((logits.argmax(1) == test.labels).float().mean())
    print(f"{a.model.name}: the eager timm model's test accuracy {trainer:.4f} ({prep.describe()})")
    x = prep.to_model_input(test.images[:4])
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        files = {
            "TorchScript (script)": Path(tmp) / "m.pt",
            "torch.export (.pt2)": Path(tmp) / "m.pt2",
            "ONNX": Path(tmp) / "m.onnx",
        }
        torch.jit.script(model).save(str(files["TorchScript (script)"]))
        batch = torch.export.Dim("batch", min=1)
        torch.export.save(torch.export.export(model, (x,), dynamic_shapes=({0: batch},)), files["torch.export (.pt2)"])
        torch.onnx.export(
            model, (x,), str(files["ONNX"]), dynamo=False, input_names=["x"], dynamic_axes={"x": {0: "b"}}
        )
        print(f"{'file':<24}{'accuracy':>10}{'vs trainer':>12}{'audit':>9}  preprocessing")
        for name, path in files.items():
            t = time.perf_counter()
            bench = Workbench.open(
                path, "fashion-mnist", ExtractOptions.of(data_root=a.root, trust_checkpoint=True, use_cache=False)
            )
            fs = bench.features("test")
            acc = float((fs.logits.argmax(1) == fs.labels).float().mean())
            dt = time.perf_counter() - t
            print(f"{name:<24}{acc:>10.4f}{acc - trainer:>+12.4f}{dt:>8.0f}s  {bench.preprocessing.describe()}")


if __name__ == "__main__":
    main()
