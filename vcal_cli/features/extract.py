"""The single forward loop: run the model over rows of a split and capture the head's input.

The loop is what a hand-written `torch.inference_mode()` loop would do, plus a forward pre-hook on the
head: images are sliced (in-memory sets) or decoded ahead in threads (`workers`), pinned and copied
asynchronously on CUDA, fed channels-last to convolutional models, and run under autocast when
`precision` asks for it. Captured rows stay on the device until a shard is complete (one copy back
per shard, not per batch).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch import Tensor

from vcal_cli._progress import Track, quiet
from vcal_cli.checkpoints import LoadedModel
from vcal_cli.data import ImageSplit, Preprocessing
from vcal_cli.errors import DataError, UsageError
from vcal_cli.features.settings import ExtractOptions

EXTRACT_PRECISIONS: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(device: str) -> torch.device:
    """`auto` is CUDA when available (under torchrun: this rank's GPU, cuda:LOCAL_RANK), else the CPU."""
    if device == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)) % torch.cuda.device_count())
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise UsageError(f"--device '{device}' is not a device; choose one of: auto, cpu, cuda")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device '{device}' was asked for but CUDA is not available here; use --device cpu")
    return torch.device(device)


def check_precision(precision: str, dev: torch.device) -> torch.dtype | None:
    if precision not in EXTRACT_PRECISIONS:
        raise UsageError(f"--precision '{precision}' is not supported; choose one of: {', '.join(EXTRACT_PRECISIONS)}")
    if precision == "fp16" and dev.type != "cuda":
        raise UsageError("--precision fp16 needs a CUDA device; use bf16 or fp32 on the CPU")
    return EXTRACT_PRECISIONS[precision]


@dataclass(frozen=True, kw_only=True)
class Runtime:
    """How the forward pass runs. `channels_last=None` means on: convolutions run faster on channels-last
    images on CUDA and on the CPU alike (benchmarks/bench_extract.py: resnet18 1.4x on a 2-core CPU)."""

    device: str = "auto"
    batch_size: int = 256
    workers: int = 0
    precision: str = "fp32"
    channels_last: bool | None = None

    @classmethod
    def of(cls, options: ExtractOptions | None, *, workers: int | None = None) -> Runtime:
        """The forward-pass part of the extraction settings (`workers` overrides theirs: the probe runs without)."""
        o = options or ExtractOptions()
        return cls(
            device=o.runtime.device,
            batch_size=o.runtime.batch_size,
            workers=o.runtime.workers if workers is None else workers,
            precision=o.runtime.precision,
            channels_last=o.runtime.channels_last,
        )

    def check(self) -> torch.device:
        if self.batch_size < 1:
            raise UsageError(f"--batch-size {self.batch_size} must be at least 1")
        if self.workers < 0:
            raise UsageError(f"--workers {self.workers} must be 0 or more")
        dev = resolve_device(self.device)
        check_precision(self.precision, dev)
        return dev

    @property
    def use_channels_last(self) -> bool:
        return True if self.channels_last is None else self.channels_last


class Forward:
    """The model on its device, in eval mode, with the head's input captured by a pre-hook."""

    def __init__(self, loaded: LoadedModel, prep: Preprocessing, runtime: Runtime) -> None:
        self.loaded, self.prep, self.runtime = loaded, prep, runtime
        self.dev = runtime.check()
        self.autocast = EXTRACT_PRECISIONS[runtime.precision]
        self.channels_last = runtime.use_channels_last
        self.model = loaded.model.to(self.dev).eval()
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.captured: list[Tensor] = []
        self._hook = loaded.head.register_forward_pre_hook(self._capture)

    def _capture(self, _module: object, inputs: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        """Keep the head's input, and hand the head a contiguous copy: after channels-last layers it may be
        strided, and the head must compute on exactly the layout of the cached features (a retrained head
        applied to the cache then matches the checkpoint run end to end, bit for bit)."""
        x = inputs[0].contiguous()
        self.captured.append(x.flatten(1))
        return (x, *inputs[1:])

    def close(self) -> None:
        self._hook.remove()
        self.loaded.model.to("cpu", memory_format=torch.contiguous_format)

    def __enter__(self) -> Forward:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __call__(self, images: Tensor) -> Tensor:
        """Logits of one batch of raw images; the head's input is appended to `captured`."""
        if self.dev.type == "cuda":
            images = images.pin_memory().to(self.dev, non_blocking=True)
        x = self.prep.to_model_input(images)
        if self.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        ctx = torch.autocast(self.dev.type, dtype=self.autocast) if self.autocast is not None else nullcontext()
        try:
            with ctx:
                return self.model(x)
        except RuntimeError as e:
            if not _shape_error(e):
                raise
            c, h, w = self.prep.input_size
            raise UsageError(
                f"the model does not take inputs of {c}x{h}x{w} ({self.prep.source}): {str(e).splitlines()[0][:120]}",
                hint="give the size it was trained on with --input-size C,H,W (and --mean, --std)",
            ) from None

    @torch.inference_mode()
    def rows(
        self, data: ImageSplit, start: int, stop: int, *, advance: Callable[[], None] = lambda: None
    ) -> tuple[Tensor, Tensor]:
        """(features (n, D), logits (n, K)) float32 on the CPU for rows `start:stop` of `data`."""
        self.captured.clear()
        logits = []
        bs = self.runtime.batch_size
        for images, _ in data.batches(bs, self.prep.input_size[1:], self.runtime.workers, start, stop):
            logits.append(self(images))
            advance()
        feats, out = torch.cat(self.captured).float().cpu(), torch.cat(logits).float().cpu()
        self.captured.clear()
        if len(feats) != stop - start:
            raise DataError(
                f"the head '{self.loaded.head_name}' ran {len(feats)} times for {stop - start} images; "
                "it must run once per batch",
                hint="name the final layer with --head-module",
            )
        bad = (~torch.isfinite(out)).any(1).sum().item()
        if bad:
            raise DataError(
                f"the model produced NaN/inf logits for {bad} of {len(out)} images of '{data.name}'",
                hint="check the checkpoint's weights and the preprocessing (--input-size, --mean, --std)",
            )
        return feats, out


def _shape_error(e: RuntimeError) -> bool:
    """A forward pass refused its input's shape (not an out-of-memory or a device error)."""
    text = str(e)
    return any(
        k in text
        for k in (
            "shapes cannot be multiplied",
            "size mismatch",
            "channels, but got",
            "Expected size",
            "must match the size",
            "Given groups",
            "Calculated padded input size",
        )
    )


def batch_ticks(progress: Track, total: int, description: str) -> tuple[Callable[[], None], Callable[[], None]]:
    """(advance, finish) callables driving `progress` over `total` batches from inside a loop."""
    it: Iterator[object] = iter(progress(range(total), total=total, description=description))

    def advance() -> None:
        next(it, None)

    def finish() -> None:
        for _ in it:
            pass

    return advance, finish


def extract_features(
    loaded: LoadedModel,
    data: ImageSplit,
    prep: Preprocessing,
    options: ExtractOptions | None = None,
    *,
    progress: Track = quiet,
) -> tuple[Tensor, Tensor, Tensor]:
    """Return (features (N, D), logits (N, K), labels (N,)) as float32/int64 CPU tensors, all in memory."""
    rt = Runtime.of(options)
    total = -(-len(data) // rt.batch_size)
    advance, finish = batch_ticks(progress, total, f"features {data.name}:{data.split}")
    with Forward(loaded, prep, rt) as fwd:
        feats, logits = fwd.rows(data, 0, len(data), advance=advance)
    finish()
    return feats, logits, data.labels.clone()
