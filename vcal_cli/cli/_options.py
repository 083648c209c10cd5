"""Shared option aliases, so every command spells and documents a flag the same way."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from vcal_cli._defaults import (
    CONFORMAL_SCORES,
    DEFAULT_ADV_LIMIT,
    DEFAULT_N_BINS,
    DEFAULT_N_BOOTSTRAP,
    DEFAULT_RISK_DELTA,
    DEFAULT_SEVERITIES,
    MAX_BINS,
    MAX_BOOTSTRAP,
)
from vcal_cli.features.settings import ExtractOptions  # torch-free: the defaults the help shows

DEFAULTS = ExtractOptions().flat()


def _d(name: str) -> str:
    """' [default: X]' for an ExtractOptions field (the one home of the defaults)."""
    return f" \\[default: {DEFAULTS[name]}]"


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
        help="Data set: digits, svhn, cifar10, cifar100, mnist, fashion-mnist, imagefolder:PATH, npz:PATH or hf:PATH "
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
LogToOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--log-to",
        help="Log the result to an experiment tracker, repeatable: mlflow (the active run or MLFLOW_TRACKING_URI) "
        "or wandb (WANDB_MODE=offline works).",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print report.json to stdout instead of the table.")]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show the full traceback on errors.")]


# --- option groups: each option declared once, appended to every command that takes them ---------------------


@dataclass(frozen=True)
class Flag:
    """One command-line option, declared once: the parameter typer passes (`name`), its flags, type, command-line
    default, help and typer's other keywords (bounds, envvar), and where its value goes: the settings field `to`
    (None: another flag's `parse` reads it), through `parse` (value, then the values of `uses`) when given."""

    name: str
    opts: tuple[str, ...]
    type: Any
    help: str
    default: Any = None
    to: str | None = ""  # "" means the field named like the parameter
    parse: Callable[..., Any] | None = None
    uses: tuple[str, ...] = ()
    option: Mapping[str, Any] = field(default_factory=dict)

    @property
    def annotation(self) -> Any:
        return Annotated[self.type, typer.Option(*self.opts, help=self.help, **self.option)]

    def parameter(self) -> inspect.Parameter:
        kind = inspect.Parameter.KEYWORD_ONLY
        return inspect.Parameter(self.name, kind, annotation=self.annotation, default=self.default)


@dataclass(frozen=True)
class Group:
    """The options of one settings object. `settings` returns its class, imported when a command runs (torch may
    come with it); `build` makes it from the parsed values, with `given` for what the command passes itself."""

    settings: Callable[[], Callable[..., Any]]
    flags: tuple[Flag, ...]

    def parameters(self) -> tuple[inspect.Parameter, ...]:
        return tuple(f.parameter() for f in self.flags)

    def annotation(self, name: str) -> Any:
        """One option's annotation, for a command that takes it alone (`vcal cache --cache-dir`)."""
        return next(f.annotation for f in self.flags if f.name == name)

    def build(self, values: Mapping[str, Any], **given: Any) -> Any:
        kwargs = {}
        for f in self.flags:
            if f.to is None:
                continue
            v = values[f.name]
            if f.parse is not None:
                v = f.parse(v, *(values[u] for u in f.uses))
            if v is not None:  # left out: the settings' own default
                kwargs[f.to or f.name] = v
        return self.settings()(**kwargs, **{k: v for k, v in given.items() if v is not None})


def _input_size(text: str | None) -> Any:
    from vcal_cli.data.preprocessing import parse_input_size

    return parse_input_size(text) if text else None


def _floats(flag: str) -> Callable[[str | None], Any]:
    def parse(text: str | None) -> Any:
        from vcal_cli.data.preprocessing import parse_floats

        return parse_floats(text, flag) if text else None

    return parse


def _extract_options() -> Callable[..., ExtractOptions]:
    return ExtractOptions.of


EXTRACT = Group(  # loading the checkpoint and extracting features (ExtractOptions: the one home of the defaults)
    _extract_options,
    (
        Flag(
            "arch",
            ("--arch",),
            str | None,
            "Architecture of a bare state dict: a timm name (resnet18) or torchvision:NAME.",
        ),
        Flag(
            "trust_checkpoint",
            ("--trust-checkpoint",),
            bool,
            "Allow unpickling a full nn.Module (runs code from the file: only for files you trust).",
            default=False,
        ),
        Flag(
            "head_module",
            ("--head-module",),
            str | None,
            "Dotted name of the final nn.Linear, if vcal does not find it.",
        ),
        Flag(
            "weight_set",
            ("--weight-set",),
            str | None,
            "A file with raw and EMA weights (timm --model-ema, torchvision's model_ema): audit auto (the EMA), ema "
            "or raw" + _d("weight_set") + ".",
            option={"show_default": False},
        ),
        Flag(
            "data_root",
            ("--data-root",),
            str | None,
            "Folder holding torchvision data sets \\[default: $VCAL_DATA or ./data].",
        ),
        Flag(
            "image_column",
            ("--image-column",),
            str | None,
            "A Hugging Face dataset's image column \\[default: its Image feature].",
        ),
        Flag(
            "label_column",
            ("--label-column",),
            str | None,
            "A Hugging Face dataset's label column \\[default: its ClassLabel feature].",
        ),
        Flag(
            "input_size",
            ("--input-size",),
            str | None,
            "Model input C,H,W (overrides the checkpoint's), e.g. 3,224,224.",
            parse=_input_size,
        ),
        Flag(
            "resize",
            ("--resize",),
            int | None,
            "Eval transform: resize the shorter side to this, then centre-crop to --input-size (torchvision's "
            "weights: --resize 232 --input-size 3,224,224).",
        ),
        Flag(
            "mean",
            ("--mean",),
            str | None,
            "Normalisation mean per channel, e.g. 0.485,0.456,0.406.",
            parse=_floats("--mean"),
        ),
        Flag("std", ("--std",), str | None, "Normalisation std per channel.", parse=_floats("--std")),
        Flag(
            "weights",
            ("--weights",),
            str | None,
            "A torchvision weights name (e.g. ResNet50_Weights.IMAGENET1K_V2): its eval transforms (resize, crop, "
            "mean, std, interpolation) and category names, read from torchvision's metadata (nothing is downloaded).",
        ),
        Flag(
            "cache_dir",
            ("--cache-dir",),
            Path | None,
            "Feature cache folder \\[default: ~/.cache/vcal].",
            parse=lambda p: str(p) if p else None,
            option={"envvar": "VCAL_CACHE"},
        ),
        Flag(
            "no_cache",
            ("--no-cache",),
            bool,
            "Neither read nor write the feature cache.",
            default=False,
            to="use_cache",
            parse=lambda off: not off,
        ),
        Flag("device", ("--device",), str | None, "auto, cpu or cuda." + _d("device"), option={"show_default": False}),
        Flag(
            "batch_size",
            ("--batch-size",),
            int | None,
            "Images per forward pass." + _d("batch_size"),
            option={"min": 1, "show_default": False},
        ),
        Flag(
            "workers",
            ("--workers",),
            int | None,
            "Threads decoding image files ahead." + _d("workers"),
            option={"min": 0, "show_default": False},
        ),
        Flag(
            "precision",
            ("--precision",),
            str | None,
            "fp32, or autocast to bf16 / fp16 (fp16 on CUDA only) for the forward pass." + _d("precision"),
            option={"show_default": False},
        ),
        Flag(
            "channels_last",
            ("--channels-last/--no-channels-last",),
            bool | None,
            "Run the model on channels-last images \\[default: on].",
        ),
        Flag(
            "cache_dtype",
            ("--cache-dtype",),
            str | None,
            "Store cached features as float32, float16 or bfloat16 (logits: float32)." + _d("cache_dtype"),
            option={"show_default": False},
        ),
        Flag(
            "shard_size",
            ("--shard-size",),
            int | None,
            "Rows per cache shard: the unit of resuming and of torchrun ranks." + _d("shard_size"),
            option={"min": 1, "show_default": False},
        ),
    ),
)


CacheDirOpt = EXTRACT.annotation("cache_dir")


def _robustness_options() -> type:
    from vcal_cli.evaluations.robustness import RobustnessOptions

    return RobustnessOptions


def _eps(adversarial: bool, eps: str) -> tuple[float, ...]:
    from vcal_cli.evaluations.adversarial import parse_eps

    return tuple(parse_eps(eps)) if adversarial else ()


def _corruptions(shift: bool, corruptions: str | None) -> tuple[str, ...]:
    from vcal_cli.evaluations.shift import CORRUPTIONS

    if not (shift or corruptions):
        return ()
    names = [c.strip() for c in corruptions.split(",") if c.strip()] if corruptions else CORRUPTIONS.names()
    for c in names:
        CORRUPTIONS.get(c)
    return tuple(names)


def _severities(text: str) -> tuple[int, ...]:
    from vcal_cli.errors import UsageError

    try:
        vals = tuple(int(v) for v in text.split(","))
    except ValueError:
        vals = ()
    if not vals or any(v not in range(1, 6) for v in vals):
        raise UsageError(f"--severities '{text}' must be comma-separated integers in 1..5")
    return vals


def _detectors(text: str) -> tuple[str, ...]:
    from vcal_cli.detectors import parse_detectors

    return parse_detectors(text)


ROBUSTNESS = Group(  # the robustness evaluations (RobustnessOptions)
    _robustness_options,
    (
        Flag(
            "ood",
            ("--ood",),
            list[str] | None,
            "Out-of-distribution data set (any --data form, repeatable): AUROC, AUPR (out and in) and FPR@95TPR of "
            "every --ood-detectors detector and the heads' own uncertainty scores, with bootstrap intervals and "
            "paired verdicts against MSP.",
            parse=lambda sets: tuple(sets or ()),
        ),
        Flag(
            "adversarial",
            ("--adversarial",),
            bool,
            "FGSM and PGD (L-inf, 10 steps, random start) in pixel space on the test split.",
            default=False,
            parse=_eps,
            uses=("eps",),
        ),
        Flag("eps", ("--eps",), str, "Attack budgets in pixel units.", default="1/255,2/255,4/255,8/255", to=None),
        Flag("adv_limit", ("--adv-limit",), int, "Attack the first N test images.", default=DEFAULT_ADV_LIMIT),
        Flag(
            "shift",
            ("--shift",),
            bool,
            "Evaluate on corrupted test images (CIFAR-10-C / ImageNet-C corruptions).",
            default=False,
            parse=_corruptions,
            uses=("corruptions",),
        ),
        Flag(
            "corruptions",
            ("--corruptions",),
            str | None,
            "Comma-separated corruptions \\[default: all available].",
            to=None,
        ),
        Flag(
            "severities",
            ("--severities",),
            str,
            "Comma-separated severities 1..5.",
            default=",".join(map(str, DEFAULT_SEVERITIES)),
            parse=_severities,
        ),
        Flag(
            "strengths",
            ("--strengths",),
            str,
            "Corruption strengths: cifar (CIFAR-10-C), imagenet (ImageNet-C), or auto by image size.",
            default="auto",
            parse=lambda s: None if s == "auto" else s,
        ),
        Flag(
            "protocol",
            ("--protocol",),
            str | None,
            "Add a table in a paper's conventions: 'vtst' (10-bin ECE x100, Brier/K, shift pooled over the paper's "
            "corruptions x 5 severities, MSP OOD with in-distribution positive, --ood sets pooled). Implies --shift.",
        ),
        Flag(
            "ood_detectors",
            ("--ood-detectors",),
            str,
            "OOD detectors: 'all' or names from msp, entropy, max_logit, energy, gen, mahalanobis, "
            "relative_mahalanobis, knn, vim, react, and for an ensemble mutual_info, disagreement (MSP, the "
            "baseline of the paired verdicts, is always scored).",
            default="all",
            to="detectors",
            parse=_detectors,
        ),
        Flag(
            "knn_k",
            ("--knn-k",),
            int | None,
            "KNN detector's k \\[default: 50 on every train row; 10 on a 1% sample, the paper's].",
            option={"min": 1},
        ),
        Flag(
            "knn_share",
            ("--knn-share",),
            float | None,
            "Share of train rows KNN searches \\[default: all up to 100,000 rows, else 1%].",
        ),
    ),
)


def _conformal_options() -> type:
    from vcal_cli.metrics.conformal import ConformalOptions

    return ConformalOptions


def _alphas(text: str | None) -> tuple[float, ...]:
    from vcal_cli.metrics.conformal import parse_alphas

    return parse_alphas(text)


CONFORMAL = Group(  # prediction sets and risk-controlled abstention (ConformalOptions)
    _conformal_options,
    (
        Flag(
            "conformal",
            ("--conformal",),
            str | None,
            "Prediction sets with a coverage guarantee at these miscoverage levels (comma-separated, e.g. 0.1,0.05): "
            "split conformal, calibrated on val, scored on test.",
            to="alphas",
            parse=_alphas,
        ),
        Flag(
            "conformal_scores",
            ("--conformal-scores",),
            str | None,
            f"Scores, comma-separated: {', '.join(CONFORMAL_SCORES)} \\[default: every one the val split supports].",
            to="scores",
            parse=lambda text: None if text is None else tuple(s.strip() for s in text.split(",")),
        ),
        Flag(
            "raps_k_reg",
            ("--raps-k-reg",),
            int | None,
            "RAPS's k_reg \\[default: chosen on 30% of val, as its authors do].",
            to="k_reg",
        ),
        Flag(
            "raps_lambda",
            ("--raps-lambda",),
            float | None,
            "RAPS's lambda \\[default: chosen on 30% of val].",
            to="lam",
        ),
        Flag(
            "target_risk",
            ("--target-risk",),
            float | None,
            "Abstain below the confidence whose error among accepted images is at most this, with probability "
            "1 - delta (SGR, calibrated on val).",
        ),
        Flag("delta", ("--delta",), float, "--target-risk's failure probability.", default=DEFAULT_RISK_DELTA),
    ),
)


F = TypeVar("F", bound=Callable[..., Any])


def with_options(*groups: Group) -> Callable[[F], F]:
    """Give a command the options of `groups` after its own: typer reads the signature set here and passes them
    into the command's `**options`, so a shared flag is declared once (here), not in every command."""

    def wrap(fn: F) -> F:
        sig = inspect.signature(fn, eval_str=True)  # the module's annotations are strings (PEP 563)
        own = [p for p in sig.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
        params = [*own, *(p for g in groups for p in g.parameters())]
        fn.__signature__ = sig.replace(parameters=params)
        fn.__annotations__ = {p.name: p.annotation for p in params} | {"return": None}
        return fn

    return wrap
