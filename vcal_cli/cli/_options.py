"""Shared option aliases, so every command spells and documents a flag the same way."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from vcal_cli._defaults import CONFORMAL_SCORES, DEFAULT_N_BINS, DEFAULT_N_BOOTSTRAP, MAX_BINS, MAX_BOOTSTRAP
from vcal_cli.features.settings import ExtractOptions  # torch-free: the defaults the help shows

if TYPE_CHECKING:  # the CLI imports torch only when a command runs
    from vcal_cli.evaluations.robustness import RobustnessOptions

DEFAULTS = ExtractOptions()


def _d(name: str) -> str:
    """' [default: X]' for an ExtractOptions field (the one home of the defaults)."""
    return f" \\[default: {getattr(DEFAULTS, name)}]"


BinsOpt = Annotated[
    int | None,
    typer.Option(
        "--bins",
        min=1,
        max=MAX_BINS,
        help=f"Bins for ECE, MCE, classwise ECE, diagrams \\[default: {DEFAULT_N_BINS}].",
        show_default=False,
    ),
]
BootstrapOpt = Annotated[
    int | None,
    typer.Option(
        "--bootstrap",
        min=0,
        max=MAX_BOOTSTRAP,
        help=f"Bootstrap resamples for the 95% intervals and verdicts \\[default: {DEFAULT_N_BOOTSTRAP}].",
        show_default=False,
    ),
]
DataOpt = Annotated[
    str | None,
    typer.Option(
        "--data",
        "-d",
        help="Data set: digits, svhn, cifar10, cifar100, mnist, fashion-mnist, imagefolder:PATH or npz:PATH "
        "\\[default: the one a vcal checkpoint was trained on; required otherwise].",
        show_default=False,
    ),
]
ValFromOpt = Annotated[
    str | None,
    typer.Option(
        "--val-from",
        help="Where the calibration split val comes from: train (10% held out of the official train part) or "
        "test (one fixed half of the test part, for models trained on the whole train part)." + _d("val_from"),
        show_default=False,
    ),
]
SplitOpt = Annotated[str, typer.Option("--split", help="train, val (10% held out of train, seed 0) or test.")]
ArchOpt = Annotated[
    str | None,
    typer.Option("--arch", help="Architecture of a bare state dict: a timm name (resnet18) or torchvision:NAME."),
]
TrustOpt = Annotated[
    bool,
    typer.Option(
        "--trust-checkpoint",
        help="Allow unpickling a full nn.Module (runs code from the file: only for files you trust).",
    ),
]
WeightSetOpt = Annotated[
    str | None,
    typer.Option(
        "--weight-set",
        help="A file with raw and EMA weights (timm --model-ema, torchvision's model_ema): audit auto (the EMA), ema "
        "or raw" + _d("weight_set") + ".",
        show_default=False,
    ),
]
HeadModuleOpt = Annotated[
    str | None, typer.Option("--head-module", help="Dotted name of the final nn.Linear, if vcal does not find it.")
]
DataRootOpt = Annotated[
    str | None,
    typer.Option("--data-root", help="Folder holding torchvision data sets \\[default: $VCAL_DATA or ./data]."),
]
InputSizeOpt = Annotated[
    str | None, typer.Option("--input-size", help="Model input C,H,W (overrides the checkpoint's), e.g. 3,224,224.")
]
ResizeOpt = Annotated[
    int | None,
    typer.Option(
        "--resize",
        help="Eval transform: resize the shorter side to this, then centre-crop to --input-size (torchvision's "
        "weights: --resize 232 --input-size 3,224,224).",
    ),
]
WeightsOpt = Annotated[
    str | None,
    typer.Option(
        "--weights",
        help="A torchvision weights name (e.g. ResNet50_Weights.IMAGENET1K_V2): its eval transforms (resize, crop, "
        "mean, std, interpolation) and category names, read from torchvision's metadata (nothing is downloaded).",
    ),
]
MeanOpt = Annotated[str | None, typer.Option("--mean", help="Normalisation mean per channel, e.g. 0.485,0.456,0.406.")]
StdOpt = Annotated[str | None, typer.Option("--std", help="Normalisation std per channel.")]
CacheDirOpt = Annotated[
    Path | None,
    typer.Option("--cache-dir", envvar="VCAL_CACHE", help="Feature cache folder \\[default: ~/.cache/vcal]."),
]
NoCacheOpt = Annotated[bool, typer.Option("--no-cache", help="Neither read nor write the feature cache.")]
DeviceOpt = Annotated[
    str | None, typer.Option("--device", help="auto, cpu or cuda." + _d("device"), show_default=False)
]
BatchOpt = Annotated[
    int | None,
    typer.Option("--batch-size", min=1, help="Images per forward pass." + _d("batch_size"), show_default=False),
]
WorkersOpt = Annotated[
    int | None,
    typer.Option("--workers", min=0, help="Threads decoding image files ahead." + _d("workers"), show_default=False),
]
PrecisionOpt = Annotated[
    str | None,
    typer.Option(
        "--precision",
        help="fp32, or autocast to bf16 / fp16 (fp16 on CUDA only) for the forward pass." + _d("precision"),
        show_default=False,
    ),
]
ChannelsLastOpt = Annotated[
    bool | None,
    typer.Option("--channels-last/--no-channels-last", help="Run the model on channels-last images \\[default: on]."),
]
CacheDtypeOpt = Annotated[
    str | None,
    typer.Option(
        "--cache-dtype",
        help="Store cached features as float32, float16 or bfloat16 (logits: float32)." + _d("cache_dtype"),
        show_default=False,
    ),
]
ShardSizeOpt = Annotated[
    int | None,
    typer.Option(
        "--shard-size",
        min=1,
        help="Rows per cache shard: the unit of resuming and of torchrun ranks." + _d("shard_size"),
        show_default=False,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print report.json to stdout instead of the table.")]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show the full traceback on errors.")]


def extract_options(flags: dict[str, Any]) -> ExtractOptions:
    """ExtractOptions from a command's parameters (pass `locals()`): a flag left out (None) takes the
    dataclass's default, so every default lives in `ExtractOptions` alone."""
    from vcal_cli.data.preprocessing import parse_floats, parse_input_size

    f = flags.get
    given = {
        "arch": f("arch"),
        "trust_checkpoint": bool(f("trust_checkpoint")),
        "head_module": f("head_module"),
        "weight_set": f("weight_set"),
        "data_root": f("data_root"),
        "head_file": str(f("head_file")) if f("head_file") else None,
        "input_size": parse_input_size(f("input_size")) if f("input_size") else None,
        "resize": f("resize"),
        "weights": f("weights"),
        "mean": parse_floats(f("mean"), "--mean") if f("mean") else None,
        "std": parse_floats(f("std"), "--std") if f("std") else None,
        "cache_dir": str(f("cache_dir")) if f("cache_dir") else None,
        "use_cache": not f("no_cache"),
        "device": f("device"),
        "batch_size": f("batch_size"),
        "workers": f("workers"),
        "precision": f("precision"),
        "channels_last": f("channels_last"),
        "cache_dtype": f("cache_dtype"),
        "shard_size": f("shard_size"),
        "val_from": f("val_from"),
    }
    return ExtractOptions(**{k: v for k, v in given.items() if v is not None})


# robustness evaluations (audit and retrain)
OodOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--ood",
        help="Out-of-distribution data set (any --data form, repeatable): AUROC, AUPR (out and in) and FPR@95TPR of "
        "every --ood-detectors detector and the heads' own uncertainty scores, with bootstrap intervals and paired "
        "verdicts against MSP.",
    ),
]
OodDetectorsOpt = Annotated[
    str,
    typer.Option(
        "--ood-detectors",
        help="OOD detectors: 'all' or names from msp, entropy, max_logit, energy, gen, mahalanobis, "
        "relative_mahalanobis, knn, vim, react (MSP, the baseline of the paired verdicts, is always scored).",
    ),
]
KnnKOpt = Annotated[
    int | None,
    typer.Option(
        "--knn-k", min=1, help="KNN detector's k \\[default: 50 on every train row; 10 on a 1% sample, the paper's]."
    ),
]
KnnShareOpt = Annotated[
    float | None,
    typer.Option(
        "--knn-share",
        help="Share of train rows KNN searches \\[default: all up to 100,000 rows, else 1%].",
    ),
]
AdversarialOpt = Annotated[
    bool,
    typer.Option(
        "--adversarial", help="FGSM and PGD (L-inf, 10 steps, random start) in pixel space on the test split."
    ),
]
EpsOpt = Annotated[str, typer.Option("--eps", help="Attack budgets in pixel units.")]
AdvLimitOpt = Annotated[int, typer.Option("--adv-limit", help="Attack the first N test images.")]
ShiftOpt = Annotated[
    bool, typer.Option("--shift", help="Evaluate on corrupted test images (CIFAR-10-C / ImageNet-C corruptions).")
]
CorruptionsOpt = Annotated[
    str | None, typer.Option("--corruptions", help="Comma-separated corruptions \\[default: all available].")
]
SeveritiesOpt = Annotated[str, typer.Option("--severities", help="Comma-separated severities 1..5.")]
ProtocolOpt = Annotated[
    str | None,
    typer.Option(
        "--protocol",
        help="Add a table in a paper's conventions: 'vtst' (10-bin ECE x100, Brier/K, shift pooled over the paper's "
        "corruptions x 5 severities, MSP OOD with in-distribution positive, --ood sets pooled). Implies --shift.",
    ),
]
StrengthsOpt = Annotated[
    str,
    typer.Option(
        "--strengths", help="Corruption strengths: cifar (CIFAR-10-C), imagenet (ImageNet-C), or auto by image size."
    ),
]


def robustness_options(flags: dict[str, Any]) -> RobustnessOptions:
    """RobustnessOptions from a command's parameters (pass `locals()`)."""
    from vcal_cli.detectors import parse_detectors
    from vcal_cli.evaluations.adversarial import parse_eps
    from vcal_cli.evaluations.robustness import RobustnessOptions

    f = flags.get
    shift = f("shift") or f("corruptions")
    return RobustnessOptions(
        ood=tuple(f("ood") or ()),
        adversarial=tuple(parse_eps(f("eps"))) if f("adversarial") else (),
        adv_limit=f("adv_limit"),
        shift=tuple(_corruption_list(f("corruptions"))) if shift else (),
        severities=_severities(f("severities")),
        strengths=None if f("strengths") == "auto" else f("strengths"),
        protocol=f("protocol"),
        detectors=parse_detectors(f("ood_detectors")),
        knn_k=f("knn_k"),
        knn_share=f("knn_share"),
        n_bootstrap=DEFAULT_N_BOOTSTRAP if f("bootstrap") is None else f("bootstrap"),
    )


def _corruption_list(text: str | None) -> list[str]:
    from vcal_cli.evaluations.shift import CORRUPTIONS

    names = [c.strip() for c in text.split(",") if c.strip()] if text else CORRUPTIONS.names()
    for c in names:
        CORRUPTIONS.get(c)
    return names


def _severities(text: str) -> tuple[int, ...]:
    from vcal_cli.errors import UsageError

    try:
        vals = tuple(int(v) for v in text.split(","))
    except ValueError:
        vals = ()
    if not vals or any(v not in range(1, 6) for v in vals):
        raise UsageError(f"--severities '{text}' must be comma-separated integers in 1..5")
    return vals


# prediction sets and abstention (audit and retrain)
ConformalOpt = Annotated[
    str | None,
    typer.Option(
        "--conformal",
        help="Prediction sets with a coverage guarantee at these miscoverage levels (comma-separated, e.g. 0.1,0.05): "
        "split conformal, calibrated on val, scored on test.",
    ),
]
ConformalScoresOpt = Annotated[
    str | None,
    typer.Option(
        "--conformal-scores",
        help=f"Scores, comma-separated: {', '.join(CONFORMAL_SCORES)} \\[default: every one the val split supports].",
    ),
]
RapsKRegOpt = Annotated[
    int | None, typer.Option("--raps-k-reg", help="RAPS's k_reg \\[default: chosen on 30% of val, as its authors do].")
]
RapsLambdaOpt = Annotated[
    float | None, typer.Option("--raps-lambda", help="RAPS's lambda \\[default: chosen on 30% of val].")
]
TargetRiskOpt = Annotated[
    float | None,
    typer.Option(
        "--target-risk",
        help="Abstain below the confidence whose error among accepted images is at most this, with probability "
        "1 - delta (SGR, calibrated on val).",
    ),
]
DeltaOpt = Annotated[float, typer.Option("--delta", help="--target-risk's failure probability.")]


def conformal_options(flags: dict[str, Any]) -> Any:
    """ConformalOptions from a command's parameters (pass `locals()`)."""
    from vcal_cli._defaults import DEFAULT_N_BOOTSTRAP
    from vcal_cli.metrics.conformal import ConformalOptions, parse_alphas

    f = flags.get
    return ConformalOptions(
        alphas=parse_alphas(f("conformal")),
        scores=None if f("conformal_scores") is None else tuple(s.strip() for s in f("conformal_scores").split(",")),
        k_reg=f("raps_k_reg"),
        lam=f("raps_lambda"),
        target_risk=f("target_risk"),
        delta=f("delta"),
        n_bootstrap=DEFAULT_N_BOOTSTRAP if f("bootstrap") is None else f("bootstrap"),
        seed=f("seed") or 0,
    )


# --- option groups: one declaration, appended to every command that takes them -------------------------------


def _kw(name: str, annotation: Any, default: Any = None) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=default)


EXTRACT = (  # loading the checkpoint and extracting features (ExtractOptions)
    _kw("arch", ArchOpt),
    _kw("trust_checkpoint", TrustOpt, False),
    _kw("head_module", HeadModuleOpt),
    _kw("weight_set", WeightSetOpt),
    _kw("data_root", DataRootOpt),
    _kw("input_size", InputSizeOpt),
    _kw("resize", ResizeOpt),
    _kw("mean", MeanOpt),
    _kw("std", StdOpt),
    _kw("weights", WeightsOpt),
    _kw("cache_dir", CacheDirOpt),
    _kw("no_cache", NoCacheOpt, False),
    _kw("device", DeviceOpt),
    _kw("batch_size", BatchOpt),
    _kw("workers", WorkersOpt),
    _kw("precision", PrecisionOpt),
    _kw("channels_last", ChannelsLastOpt),
    _kw("cache_dtype", CacheDtypeOpt),
    _kw("shard_size", ShardSizeOpt),
)
ROBUSTNESS = (  # the robustness evaluations (RobustnessOptions)
    _kw("ood", OodOpt),
    _kw("adversarial", AdversarialOpt, False),
    _kw("eps", EpsOpt, "1/255,2/255,4/255,8/255"),
    _kw("adv_limit", AdvLimitOpt, 1000),
    _kw("shift", ShiftOpt, False),
    _kw("corruptions", CorruptionsOpt),
    _kw("severities", SeveritiesOpt, "1,2,3,4,5"),
    _kw("strengths", StrengthsOpt, "auto"),
    _kw("protocol", ProtocolOpt),
    _kw("ood_detectors", OodDetectorsOpt, "all"),
    _kw("knn_k", KnnKOpt),
    _kw("knn_share", KnnShareOpt),
)

CONFORMAL = (  # prediction sets and risk-controlled abstention (ConformalOptions)
    _kw("conformal", ConformalOpt),
    _kw("conformal_scores", ConformalScoresOpt),
    _kw("raps_k_reg", RapsKRegOpt),
    _kw("raps_lambda", RapsLambdaOpt),
    _kw("target_risk", TargetRiskOpt),
    _kw("delta", DeltaOpt, 0.05),
)

F = TypeVar("F", bound=Callable[..., Any])


def with_options(*groups: tuple[inspect.Parameter, ...]) -> Callable[[F], F]:
    """Give a command the options of `groups` after its own: typer reads the signature set here and passes them
    into the command's `**options`, so a shared flag is declared once (here), not in every command."""

    def wrap(fn: F) -> F:
        sig = inspect.signature(fn, eval_str=True)  # the module's annotations are strings (PEP 563)
        own = [p for p in sig.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
        params = [*own, *(p for g in groups for p in g)]
        fn.__signature__ = sig.replace(parameters=params)
        fn.__annotations__ = {p.name: p.annotation for p in params} | {"return": None}
        return fn

    return wrap
