"""Every loading, data, cache and runtime setting with its default, by concern: the one home the commands, the CLI and
the Python API take them from, each validated once, in its constructor. Torch-free, so `vcal COMMAND --help` can show
the defaults without loading torch.

`ExtractOptions` holds the four: `load` (how the checkpoint is opened), `data` (where the data is and how it is
preprocessed), `cache` (where features are kept and how) and `runtime` (how the forward pass runs).
`ExtractOptions.of(cache_dir=..., batch_size=...)` takes any of their fields by name.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from vcal_cli.errors import UsageError

DEFAULT_SHARD_SIZE = 8192  # rows per shard: 32 MB of 2048-wide float16 features; the unit of resuming
WEIGHT_SETS = ("auto", "ema", "raw")
VAL_FROM = ("train", "test")
CACHE_DTYPES = ("float32", "float16", "bfloat16")
PRECISIONS = ("fp32", "bf16", "fp16")


def _one_of(flag: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise UsageError(f"{flag} '{value}' is not supported; choose one of: {', '.join(choices)}")


@dataclass(frozen=True, kw_only=True)
class LoadOptions:
    """How the checkpoint is opened; `None` means the checkpoint's or vcal's default."""

    arch: str | None = None
    trust_checkpoint: bool = False
    head_module: str | None = None
    weight_set: str = "auto"  # a file with raw and EMA weights: auto (the EMA), ema or raw
    head_file: str | None = None  # a head written by `vcal retrain --head-only`, applied to the checkpoint

    def __post_init__(self) -> None:
        _one_of("--weight-set", self.weight_set, WEIGHT_SETS)


@dataclass(frozen=True, kw_only=True)
class DataOptions:
    """Where the data is and how its images are preprocessed; `None` means the checkpoint's or the data's own."""

    data_root: str | None = None
    val_from: str = "train"  # where `val` comes from: 10% of the official train part, or half of its test part
    image_column: str | None = None  # a Hugging Face dataset's image and label columns (None: from its features)
    label_column: str | None = None
    input_size: tuple[int, int, int] | None = None
    resize: int | None = None  # the eval transform's shorter side before the centre crop to input_size
    weights: str | None = None  # a torchvision weights name: its eval transforms and category names
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        _one_of("--val-from", self.val_from, VAL_FROM)


@dataclass(frozen=True, kw_only=True)
class CacheOptions:
    """Where the features are kept, and how."""

    cache_dir: str | None = None
    use_cache: bool = True
    cache_dtype: str = "float32"  # how features are stored: float32, float16 or bfloat16
    shard_size: int = DEFAULT_SHARD_SIZE  # rows per cache shard (the unit of resuming and of spreading over ranks)

    def __post_init__(self) -> None:
        _one_of("--cache-dtype", self.cache_dtype, CACHE_DTYPES)
        if self.shard_size < 1:
            raise UsageError(f"--shard-size {self.shard_size} must be at least 1")


@dataclass(frozen=True, kw_only=True)
class RuntimeOptions:
    """How the forward pass runs."""

    device: str = "auto"
    batch_size: int = 256
    workers: int = 0
    precision: str = "fp32"  # fp32, or bf16 / fp16 autocast
    channels_last: bool | None = None  # None: on (faster convolutions on CPU and CUDA)

    def __post_init__(self) -> None:
        _one_of("--precision", self.precision, PRECISIONS)
        if self.batch_size < 1:
            raise UsageError(f"--batch-size {self.batch_size} must be at least 1")
        if self.workers < 0:
            raise UsageError(f"--workers {self.workers} must be 0 or more")


CONCERNS: dict[str, type] = {"load": LoadOptions, "data": DataOptions, "cache": CacheOptions, "runtime": RuntimeOptions}
FIELD_CONCERN = {f.name: concern for concern, cls in CONCERNS.items() for f in fields(cls)}


@dataclass(frozen=True, kw_only=True)
class ExtractOptions:
    """How to load a checkpoint and run it over data, by concern (see the module)."""

    load: LoadOptions = field(default_factory=LoadOptions)
    data: DataOptions = field(default_factory=DataOptions)
    cache: CacheOptions = field(default_factory=CacheOptions)
    runtime: RuntimeOptions = field(default_factory=RuntimeOptions)

    @classmethod
    def of(cls, **settings: Any) -> ExtractOptions:
        """From any of the concerns' fields by name: `ExtractOptions.of(cache_dir="c", batch_size=64)`."""
        return cls().with_(**settings)

    def with_(self, **settings: Any) -> ExtractOptions:
        """A copy with the named fields (of any concern) changed."""
        unknown = sorted(set(settings) - set(FIELD_CONCERN))
        if unknown:
            raise TypeError(f"ExtractOptions has no setting '{unknown[0]}'")
        parts: dict[str, dict[str, Any]] = {}
        for k, v in settings.items():
            parts.setdefault(FIELD_CONCERN[k], {})[k] = v
        return replace(self, **{c: replace(getattr(self, c), **kw) for c, kw in parts.items()})

    def flat(self) -> dict[str, Any]:
        """Every setting by name (report.json's `settings.options`)."""
        return {k: v for c in CONCERNS for k, v in asdict(getattr(self, c)).items()}
