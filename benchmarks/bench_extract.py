"""Feature extraction against the plain loop: vcal's overhead (hooks, shards, cache writes) in one run.

    python benchmarks/bench_extract.py [--arch resnet18] [--n 1024] [--size 96] [--batch-size 64]

The images are already decoded (uint8 in memory). The baseline is the loop a user would write:
`torch.no_grad()`, normalise each slice, call the model, keep the logits. vcal's run is
`get_features` with a fresh cache folder each time, so every run really extracts: forward pass,
pre-hook capture of the penultimate features, float16/float32 shards written as they fill, and the
streamed merge into one cache entry. Also measured, each against its own plain loop: inference mode
instead of no_grad, channels-last, bf16 autocast (CPU), and on CUDA (when present) pinned memory and
fp16/bf16 autocast (`--precision`). Last, n/2 JPEG files in an image folder: the plain loop decodes each
batch with PIL before running it; vcal with `--workers 0, 1, 2` decodes ahead in threads.
Wall-clock seconds, best of 5 (plain and vcal runs interleaved for the decoded images).
"""

from __future__ import annotations

import argparse
import tempfile
from contextlib import nullcontext

import torch
from _timing import best_of


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="resnet18")
    ap.add_argument("--n", type=int, default=1024)
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    import timm

    from vcal_cli.checkpoints import LoadedModel, find_head
    from vcal_cli.data import ImageSplit, Preprocessing
    from vcal_cli.features import ExtractOptions, get_features

    torch.manual_seed(0)
    model = timm.create_model(a.arch, pretrained=False, num_classes=10).eval()
    loaded = LoadedModel(model=model, head_name=find_head(model, 10), arch=a.arch, num_classes=10, sha256="bench")
    images = torch.randint(0, 256, (a.n, 3, a.size, a.size), dtype=torch.uint8)
    labels = torch.randint(0, 10, (a.n,))
    data = ImageSplit(
        name="bench",
        split="test",
        labels=labels,
        classes=[str(i) for i in range(10)],
        native_size=(3, a.size, a.size),
        identity={"n": a.n},
        images=images,
    )
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    prep = Preprocessing(input_size=(3, a.size, a.size), mean=mean, std=std)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])

    def plain(device: str, mode: str = "no_grad", channels_last: bool = False, autocast: torch.dtype | None = None):
        m = model.to(device, memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        mu = torch.tensor(mean, device=device).view(1, 3, 1, 1)
        sd = torch.tensor(std, device=device).view(1, 3, 1, 1)

        def run() -> torch.Tensor:
            out = []
            ctx = torch.no_grad() if mode == "no_grad" else torch.inference_mode()
            amp = torch.autocast(device, dtype=autocast) if autocast else nullcontext()
            with ctx, amp:
                for i in range(0, a.n, a.batch_size):
                    x = images[i : i + a.batch_size]
                    x = x.pin_memory().to(device, non_blocking=True) if device == "cuda" else x
                    x = (x.float() / 255 - mu) / sd
                    if channels_last:
                        x = x.contiguous(memory_format=torch.channels_last)
                    out.append(m(x).float().cpu())
            return torch.cat(out)

        return run

    def vcal(device: str, **kw):
        def run():
            with tempfile.TemporaryDirectory() as d:
                o = ExtractOptions.of(cache_dir=d, device=device, batch_size=a.batch_size, **kw)
                return get_features(loaded, data, prep, o)

        return run

    threads = torch.get_num_threads()
    print(f"{a.arch}, {a.n} decoded images of {a.size}x{a.size}, batch {a.batch_size}, {threads} threads")
    rows = []
    for dev in devices:
        cases = [
            ("fp32", plain(dev), vcal(dev, channels_last=False)),
            ("fp32, float16 cache", plain(dev), vcal(dev, channels_last=False, cache_dtype="float16")),
            ("fp32, inference_mode", plain(dev, "inference"), vcal(dev, channels_last=False)),
            ("fp32, channels-last", plain(dev, channels_last=True), vcal(dev, channels_last=True)),
            ("bf16 autocast", plain(dev, autocast=torch.bfloat16), vcal(dev, precision="bf16", channels_last=False)),
        ]
        if dev == "cuda":
            cases.append(("fp16 autocast", plain(dev, autocast=torch.float16), vcal(dev, precision="fp16")))
        for name, base_fn, vcal_fn in cases:
            base_fn(), vcal_fn()  # warm up (allocator, oneDNN / cuDNN kernel choice)
            t_base = t_vcal = float("inf")
            for _ in range(a.repeats):  # interleaved, so drifts in machine speed hit both alike
                t_base = min(t_base, best_of(base_fn, 1)[0])
                t_vcal = min(t_vcal, best_of(vcal_fn, 1)[0])
            rows.append((dev, name, t_base, t_vcal))
            ratio = t_vcal / t_base
            print(f"{dev:<5} {name:<22} plain {t_base:7.3f} s   vcal {t_vcal:7.3f} s   vcal/plain {ratio:5.3f}")
    rows += folder_cases(a, loaded, prep, model, mean, std)
    ref = {d: t for d, n, t, _ in rows if n == "fp32"}
    print("speed of each plain variant against the plain fp32 no_grad loop on decoded images:")
    for dev, name, t_base, _ in rows:
        if not name.startswith("JPEG"):
            print(f"  {dev:<5} {name:<22} {ref[dev] / t_base:5.2f}x")
    worst = max(t_v / t_b for *_, t_b, t_v in rows)
    print(f"largest vcal overhead: {100 * (worst - 1):+.1f}% ({'within' if worst <= 1.10 else 'OVER'} the 10% budget)")


def folder_cases(a, loaded, prep, model, mean, std) -> list:
    """Image files (JPEG, an image folder): decoding joins the loop; `--workers` decode ahead in threads."""
    import numpy as np
    from PIL import Image

    from vcal_cli.data import load_split
    from vcal_cli.features import ExtractOptions, get_features

    n = a.n // 2
    rows = []
    with tempfile.TemporaryDirectory() as root:
        g = np.random.default_rng(0)
        for i in range(n):
            d = f"{root}/test/c{i % 10}"
            if i < 10:
                import os

                os.makedirs(d)
            arr = g.integers(0, 256, (a.size, a.size, 3), dtype=np.uint8)
            Image.fromarray(arr).save(f"{d}/{i:05d}.jpg", quality=90)
        data = load_split(f"imagefolder:{root}", "test")
        mu = torch.tensor(mean).view(1, 3, 1, 1)
        sd = torch.tensor(std).view(1, 3, 1, 1)
        m = model.to("cpu", memory_format=torch.channels_last)

        def plain():  # the loop a user writes: decode a batch with PIL, then run it
            out = []
            with torch.inference_mode():
                for s in range(0, len(data), a.batch_size):
                    x = data.load(torch.arange(s, min(s + a.batch_size, len(data))), (a.size, a.size))
                    x = ((x.float() / 255 - mu) / sd).contiguous(memory_format=torch.channels_last)
                    out.append(m(x))
            return torch.cat(out)

        def vcal(workers: int):
            def run():
                with tempfile.TemporaryDirectory() as d:
                    o = ExtractOptions.of(cache_dir=d, device="cpu", batch_size=a.batch_size, workers=workers)
                    return get_features(loaded, data, prep, o)

            return run

        plain()
        t_base = min(best_of(plain, 1)[0] for _ in range(a.repeats))
        for workers in (0, 1, 2):
            vcal(workers)()
            t_vcal = min(best_of(vcal(workers), 1)[0] for _ in range(a.repeats))
            name = f"JPEG, --workers {workers}"
            rows.append(("cpu", name, t_base, t_vcal))
            ratio = t_vcal / t_base
            print(f"cpu   {name:<22} plain {t_base:7.3f} s   vcal {t_vcal:7.3f} s   vcal/plain {ratio:5.3f}")
    return rows


if __name__ == "__main__":
    main()
