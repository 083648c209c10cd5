"""Every loading, preprocessing and extraction flag with its default: the one home the commands, the CLI and
the Python API take them from. Torch-free, so `vcal COMMAND --help` can show the defaults without loading torch.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_SHARD_SIZE = 8192  # rows per shard: 32 MB of 2048-wide float16 features; the unit of resuming


@dataclass(frozen=True)
class ExtractOptions:
    """How to load a checkpoint and run it over data; `None` means the checkpoint's or vcal's default."""

    arch: str | None = None
    trust_checkpoint: bool = False
    head_module: str | None = None
    weight_set: str = "auto"  # a file with raw and EMA weights: auto (the EMA), ema or raw
    head_file: str | None = None  # a head written by `vcal retrain --head-only`, applied to the checkpoint
    data_root: str | None = None
    input_size: tuple[int, int, int] | None = None
    resize: int | None = None  # the eval transform's shorter side before the centre crop to input_size
    weights: str | None = None  # a torchvision weights name: its eval transforms and category names
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    cache_dir: str | None = None
    use_cache: bool = True
    device: str = "auto"
    batch_size: int = 256
    workers: int = 0
    precision: str = "fp32"  # fp32, or bf16 / fp16 autocast
    channels_last: bool | None = None  # None: on (faster convolutions on CPU and CUDA)
    cache_dtype: str = "float32"  # how features are stored: float32, float16 or bfloat16
    shard_size: int = DEFAULT_SHARD_SIZE  # rows per cache shard (the unit of resuming and of spreading over ranks)
    val_from: str = "train"  # where `val` comes from: 10% of the official train part, or half of its test part
    image_column: str | None = None  # a Hugging Face dataset's image and label columns (None: from its features)
    label_column: str | None = None
