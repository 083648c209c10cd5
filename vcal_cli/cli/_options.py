"""Shared option aliases, so every command spells and documents a flag the same way."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from vcal_cli._defaults import (
    CONFORMAL_SCORES,
    DEFAULT_ADV_LIMIT,
    DEFAULT_AUGMENT,
    DEFAULT_AUTO_BUDGET,
    DEFAULT_N_BINS,
    DEFAULT_N_BOOTSTRAP,
    DEFAULT_RISK_DELTA,
    DEFAULT_SEVERITIES,
    DEFAULT_TRAIN_VIEWS,
    MAX_BINS,
    MAX_BOOTSTRAP,
    MAX_SEED,
)
from vcal_cli.commands.settings import AuditSettings, FrontierSettings, RetrainSettings, Statistics, parse_grid
from vcal_cli.features.settings import FIELD_CONCERN, ExtractOptions  # torch-free: the defaults the help shows

DEFAULTS = ExtractOptions().flat()


def _d(name: str) -> str:
    """' [default: X]' for an ExtractOptions field (the one home of the defaults)."""
    return f" \\[default: {DEFAULTS[name]}]"


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


SETTING: Any = type("FromSettings", (), {"__repr__": lambda self: "SETTING"})()  # a Flag default: the field's own


@dataclass(frozen=True, kw_only=True)
class Flag:
    """One command-line option, declared once: the parameter typer passes (`name`), its flags, type, command-line
    default (`SETTING`: the settings field's own default, read from the class), help, the `--help` panel it is
    listed in, typer's other keywords (bounds, envvar), and where its value goes: the settings field `to` (None:
    another flag's `parse` reads it), through `parse` (value, then the values of `uses`) when given."""

    name: str
    opts: tuple[str, ...]
    type: Any
    help: str
    default: Any = None
    to: str | None = ""  # "" means the field named like the parameter
    parse: Callable[..., Any] | None = None
    uses: tuple[str, ...] = ()
    panel: str | None = None  # None: the command's own options
    option: Mapping[str, Any] = field(default_factory=dict)

    @property
    def target(self) -> str | None:
        """The settings field this option sets (None: none directly)."""
        return None if self.to is None else self.to or self.name

    @property
    def annotation(self) -> Any:
        opt = typer.Option(*self.opts, help=self.help, rich_help_panel=self.panel, **self.option)
        return Annotated[self.type, opt]

    def parameter(self) -> inspect.Parameter:
        kind = inspect.Parameter.KEYWORD_ONLY
        return inspect.Parameter(self.name, kind, annotation=self.annotation, default=self.default)


def flag(name: str, opts: tuple[str, ...], type: Any, help: str, **kw: Any) -> Flag:
    """A `Flag` from its four essentials, the rest by keyword."""
    return Flag(name=name, opts=opts, type=type, help=help, **kw)


@dataclass(frozen=True, kw_only=True)
class Group:
    """The options of one settings object. `settings` returns its class, imported when a command runs (torch may
    come with it; a torch-free class may be given as `defaults` too, whose field defaults then fill every `SETTING`
    flag default); `build` makes it from the parsed values, with `given` for what the command passes itself.
    `panel` lists the flags without one of their own under that `--help` heading."""

    settings: Callable[[], Callable[..., Any]]
    flags: tuple[Flag, ...]
    panel: str | None = None
    defaults: type | None = None

    def __post_init__(self) -> None:
        own = {f.name: _field_default(f) for f in dataclasses.fields(self.defaults)} if self.defaults else {}
        resolved = []
        for f in self.flags:
            if f.default is SETTING:
                if f.target not in own:
                    raise TypeError(f"{f.name}: SETTING default needs `defaults` with a field '{f.target}'")
                f = dataclasses.replace(f, default=own[f.target])
            resolved.append(dataclasses.replace(f, panel=f.panel or self.panel))
        object.__setattr__(self, "flags", tuple(resolved))

    def parameters(self) -> tuple[inspect.Parameter, ...]:
        return tuple(f.parameter() for f in self.flags)

    def value(self, values: Mapping[str, Any], name: str) -> Any:
        """One option's value as the settings would hold it (a command that also uses it itself: `--out`)."""
        f = next(f for f in self.flags if f.name == name)
        v = values[f.name]
        return f.parse(v, *(values[u] for u in f.uses)) if f.parse is not None else v

    def annotation(self, name: str) -> Any:
        """One option's annotation, for a command that takes it alone (`vcal cache --cache-dir`)."""
        return next(f.annotation for f in self.flags if f.name == name)

    def build(self, values: Mapping[str, Any], **given: Any) -> Any:
        kwargs = {}
        for f in self.flags:
            if f.target is None:
                continue
            v = self.value(values, f.name)
            if v is not None:  # left out: the settings' own default
                kwargs[f.target] = v
        return self.settings()(**kwargs, **{k: v for k, v in given.items() if v is not None})


def _field_default(f: dataclasses.Field) -> Any:
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


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
    settings=_extract_options,
    flags=(
        flag(
            "arch",
            ("--arch",),
            str | None,
            "Architecture of a bare state dict: a timm name (resnet18) or torchvision:NAME.",
        ),
        flag(
            "trust_checkpoint",
            ("--trust-checkpoint",),
            bool,
            "Allow unpickling a full nn.Module (runs code from the file: only for files you trust).",
            default=False,
        ),
        flag(
            "head_module",
            ("--head-module",),
            str | None,
            "Dotted name of the final nn.Linear, if vcal does not find it.",
        ),
        flag(
            "weight_set",
            ("--weight-set",),
            str | None,
            "A file with raw and EMA weights (timm --model-ema, torchvision's model_ema): audit auto (the EMA), ema "
            "or raw" + _d("weight_set") + ".",
            option={"show_default": False},
        ),
        flag(
            "data_root",
            ("--data-root",),
            str | None,
            "Folder holding torchvision data sets \\[default: $VCAL_DATA or ./data].",
        ),
        flag(
            "image_column",
            ("--image-column",),
            str | None,
            "A Hugging Face dataset's image column \\[default: its Image feature].",
        ),
        flag(
            "label_column",
            ("--label-column",),
            str | None,
            "A Hugging Face dataset's label column \\[default: its ClassLabel feature].",
        ),
        flag(
            "input_size",
            ("--input-size",),
            str | None,
            "Model input C,H,W (overrides the checkpoint's), e.g. 3,224,224.",
            parse=_input_size,
        ),
        flag(
            "resize",
            ("--resize",),
            int | None,
            "Eval transform: resize the shorter side to this, then centre-crop to --input-size (torchvision's "
            "weights: --resize 232 --input-size 3,224,224).",
        ),
        flag(
            "mean",
            ("--mean",),
            str | None,
            "Normalisation mean per channel, e.g. 0.485,0.456,0.406.",
            parse=_floats("--mean"),
        ),
        flag("std", ("--std",), str | None, "Normalisation std per channel.", parse=_floats("--std")),
        flag(
            "weights",
            ("--weights",),
            str | None,
            "A torchvision weights name (e.g. ResNet50_Weights.IMAGENET1K_V2): its eval transforms (resize, crop, "
            "mean, std, interpolation) and category names, read from torchvision's metadata (nothing is downloaded).",
        ),
        flag(
            "cache_dir",
            ("--cache-dir",),
            Path | None,
            "Feature cache folder \\[default: ~/.cache/vcal].",
            parse=lambda p: str(p) if p else None,
            option={"envvar": "VCAL_CACHE"},
        ),
        flag(
            "no_cache",
            ("--no-cache",),
            bool,
            "Neither read nor write the feature cache.",
            default=False,
            to="use_cache",
            parse=lambda off: not off,
        ),
        flag("device", ("--device",), str | None, "auto, cpu or cuda." + _d("device"), option={"show_default": False}),
        flag(
            "batch_size",
            ("--batch-size",),
            int | None,
            "Images per forward pass." + _d("batch_size"),
            option={"min": 1, "show_default": False},
        ),
        flag(
            "workers",
            ("--workers",),
            int | None,
            "Threads decoding image files ahead." + _d("workers"),
            option={"min": 0, "show_default": False},
        ),
        flag(
            "precision",
            ("--precision",),
            str | None,
            "fp32, or autocast to bf16 / fp16 (fp16 on CUDA only) for the forward pass." + _d("precision"),
            option={"show_default": False},
        ),
        flag(
            "channels_last",
            ("--channels-last/--no-channels-last",),
            bool | None,
            "Run the model on channels-last images \\[default: on].",
        ),
        flag(
            "cache_dtype",
            ("--cache-dtype",),
            str | None,
            "Store cached features as float32, float16 or bfloat16 (logits: float32)." + _d("cache_dtype"),
            option={"show_default": False},
        ),
        flag(
            "shard_size",
            ("--shard-size",),
            int | None,
            "Rows per cache shard: the unit of resuming and of torchrun ranks." + _d("shard_size"),
            option={"min": 1, "show_default": False},
        ),
    ),
)


PANELS = {"load": "Loading the model", "data": "Data and preprocessing", "cache": "Feature cache", "runtime": "Runtime"}
EXTRACT = dataclasses.replace(  # each option listed under its concern's heading in --help
    EXTRACT, flags=tuple(dataclasses.replace(f, panel=PANELS[FIELD_CONCERN[f.target]]) for f in EXTRACT.flags)
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
    settings=_robustness_options,
    panel="Robustness: shift, OOD, adversarial",
    flags=(
        flag(
            "ood",
            ("--ood",),
            list[str] | None,
            "Out-of-distribution data set (any --data form, repeatable): AUROC, AUPR (out and in) and FPR@95TPR of "
            "every --ood-detectors detector and the heads' own uncertainty scores, with bootstrap intervals and "
            "paired verdicts against MSP.",
            parse=lambda sets: tuple(sets or ()),
        ),
        flag(
            "adversarial",
            ("--adversarial",),
            bool,
            "FGSM and PGD (L-inf, 10 steps, random start) in pixel space on the test split.",
            default=False,
            parse=_eps,
            uses=("eps",),
        ),
        flag("eps", ("--eps",), str, "Attack budgets in pixel units.", default="1/255,2/255,4/255,8/255", to=None),
        flag("adv_limit", ("--adv-limit",), int, "Attack the first N test images.", default=DEFAULT_ADV_LIMIT),
        flag(
            "shift",
            ("--shift",),
            bool,
            "Evaluate on corrupted test images (CIFAR-10-C / ImageNet-C corruptions).",
            default=False,
            parse=_corruptions,
            uses=("corruptions",),
        ),
        flag(
            "corruptions",
            ("--corruptions",),
            str | None,
            "Comma-separated corruptions \\[default: all available].",
            to=None,
        ),
        flag(
            "severities",
            ("--severities",),
            str,
            "Comma-separated severities 1..5.",
            default=",".join(map(str, DEFAULT_SEVERITIES)),
            parse=_severities,
        ),
        flag(
            "strengths",
            ("--strengths",),
            str,
            "Corruption strengths: cifar (CIFAR-10-C), imagenet (ImageNet-C), or auto by image size.",
            default="auto",
            parse=lambda s: None if s == "auto" else s,
        ),
        flag(
            "protocol",
            ("--protocol",),
            str | None,
            "Add a table in a paper's conventions: 'vtst' (10-bin ECE x100, Brier/K, shift pooled over the paper's "
            "corruptions x 5 severities, MSP OOD with in-distribution positive, --ood sets pooled). Implies --shift.",
        ),
        flag(
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
        flag(
            "knn_k",
            ("--knn-k",),
            int | None,
            "KNN detector's k \\[default: 50 on every train row; 10 on a 1% sample, the paper's].",
            option={"min": 1},
        ),
        flag(
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
    settings=_conformal_options,
    panel="Conformal prediction and risk control",
    flags=(
        flag(
            "conformal",
            ("--conformal",),
            str | None,
            "Prediction sets with a coverage guarantee at these miscoverage levels (comma-separated, e.g. 0.1,0.05): "
            "split conformal, calibrated on val, scored on test.",
            to="alphas",
            parse=_alphas,
        ),
        flag(
            "conformal_scores",
            ("--conformal-scores",),
            str | None,
            f"Scores, comma-separated: {', '.join(CONFORMAL_SCORES)} \\[default: every one the val split supports].",
            to="scores",
            parse=lambda text: None if text is None else tuple(s.strip() for s in text.split(",")),
        ),
        flag(
            "raps_k_reg",
            ("--raps-k-reg",),
            int | None,
            "RAPS's k_reg \\[default: chosen on 30% of val, as its authors do].",
            to="k_reg",
        ),
        flag(
            "raps_lambda",
            ("--raps-lambda",),
            float | None,
            "RAPS's lambda \\[default: chosen on 30% of val].",
            to="lam",
        ),
        flag(
            "target_risk",
            ("--target-risk",),
            float | None,
            "Abstain below the confidence whose error among accepted images is at most this, with probability "
            "1 - delta (SGR, calibrated on val).",
        ),
        flag("delta", ("--delta",), float, "--target-risk's failure probability.", default=DEFAULT_RISK_DELTA),
    ),
)


# --- the commands' own settings (torch-free classes: their field defaults are the flags' defaults) -------------


def _bins() -> Flag:
    return flag(
        "bins",
        ("--bins",),
        int | None,
        f"Bins for ECE, MCE, classwise ECE, diagrams \\[default: {DEFAULT_N_BINS}].",
        to="n_bins",
        option={"min": 1, "max": MAX_BINS, "show_default": False},
    )


def _bootstrap() -> Flag:
    return flag(
        "bootstrap",
        ("--bootstrap",),
        int | None,
        f"Bootstrap resamples for the 95% intervals and verdicts \\[default: {DEFAULT_N_BOOTSTRAP}].",
        to="n_bootstrap",
        option={"min": 0, "max": MAX_BOOTSTRAP, "show_default": False},
    )


def _seed(help: str) -> Flag:
    return flag("seed", ("--seed",), int, help, default=SETTING, option={"min": 0, "max": MAX_SEED})


def _hierarchy(help: str) -> Flag:
    return flag("hierarchy", ("--hierarchy",), str | None, help)


AUDIT = Group(
    settings=lambda: AuditSettings,
    defaults=AuditSettings,
    flags=(
        _bins(),
        _bootstrap(),
        _seed("Seed of the bootstrap."),
        _hierarchy(
            "Class hierarchy for mistake-severity metrics: a .csv or .json file, or 'cifar100' \\[default: the data "
            "set's built-in one]."
        ),
        flag(
            "suggest",
            ("--suggest/--no-suggest",),
            bool,
            "Also load the val split and score temperature scaling fitted on it (the suggested fix).",
            default=SETTING,
        ),
    ),
)

RETRAIN = Group(
    settings=lambda: RetrainSettings,
    defaults=RetrainSettings,
    flags=(
        flag(
            "out_dir",
            ("--out", "-o"),
            Path,
            "Report directory; checkpoints go here too unless --checkpoint-out.",
            default=SETTING,
        ),
        flag(
            "out_file",
            ("--checkpoint-out",),
            Path | None,
            "Checkpoint file to write (one head only).",
            to="out",
        ),
        flag(
            "head_only",
            ("--head-only",),
            bool,
            "Write only the head's weights (apply with 'vcal audit BASE --head-file').",
            default=SETTING,
        ),
        flag(
            "export",
            ("--export",),
            str | None,
            "Write the model with the new head folded into its last layer, in the format it came in: onnx, "
            "torchscript or transformers (temperature, vector and matrix scaling).",
        ),
        _seed("Seeds every head and the bootstrap."),
        flag(
            "auto_select",
            ("--auto-select",),
            str,
            "With --head auto: pick the lowest val nll, ece or brier.",
            default=SETTING,
        ),
        flag(
            "auto_budget",
            ("--auto-budget",),
            float,
            "With --head auto: seconds for the whole selection; trained candidates stop at their share and keep "
            "their best epoch so far, a val-fitted one whose cross-fit would overrun is skipped, each said in a "
            f"warning \\[default: {DEFAULT_AUTO_BUDGET:g}].",
            default=SETTING,
            option={"show_default": False},
        ),
        flag(
            "train_views",
            ("--train-views",),
            int | None,
            "Fit the heads that learn on train on K augmented views of it (extracted once each, cached) instead of "
            "the clean train features a backbone trained past fitting has memorised; 0: clean "
            f"\\[default: {DEFAULT_TRAIN_VIEWS}].",
            option={"min": 0, "show_default": False},
        ),
        flag(
            "train_fraction",
            ("--train-fraction",),
            float,
            "Fit the heads that learn on train on a seeded, class-stratified share of its rows (0 < F <= 1): the "
            "low-data regime of the variational-classification paper.",
            default=SETTING,
        ),
        flag(
            "augment",
            ("--augment",),
            str | None,
            "The views' augmentation: 'crop' (shift by up to 1/8 of the side) or 'crop+flip' (also mirror half; not "
            f"for digits or text) \\[default: {DEFAULT_AUGMENT}].",
            option={"show_default": False},
        ),
        _hierarchy(
            "Class hierarchy for haframe and the mistake-severity metrics: a .csv (class,parent or "
            "class,level1,...) or .json file, or 'cifar100' \\[default: the data set's built-in one]."
        ),
        _bins(),
        _bootstrap(),
    ),
)


def _grid(flag: str) -> Callable[[str | None], tuple[float, ...] | None]:
    return lambda text: None if text is None else parse_grid(text, flag)


FRONTIER = Group(
    settings=lambda: FrontierSettings,
    defaults=FrontierSettings,
    flags=(
        flag("head", ("--head",), str, "Variational head to sweep: vtst.", default=SETTING),
        flag(
            "betas",
            ("--betas",),
            str | None,
            "Weights of the rate R \\[default: 1e-4,1e-3,1e-2,0.1,1,10].",
            parse=_grid("--betas"),
        ),
        flag(
            "lambdas",
            ("--lambdas",),
            str | None,
            "Weights of the distortion D \\[default: 0].",
            parse=_grid("--lambdas"),
        ),
        flag(
            "tolerance",
            ("--tolerance",),
            float,
            "How far below the best val accuracy a point may be, a fraction (0.005: half a point).",
            default=SETTING,
        ),
        flag("select", ("--select",), str, "Pick the lowest val: ece, rate or nll.", default=SETTING),
        flag("write_best", ("--write-best",), Path | None, "Write the selected head's checkpoint here."),
        flag(
            "hidden",
            ("--hidden",),
            int | None,
            "Latent size Z \\[default: 128 for <= 10 classes, else 512].",
        ),
        flag("epochs", ("--epochs",), int | None, "Epochs per point \\[default: ~6,000 Adam steps]."),
        flag(
            "warm_epochs",
            ("--warm-epochs",),
            int | None,
            "Epochs of each warm-started point \\[default: a quarter of --epochs].",
        ),
        flag(
            "warm_lr",
            ("--warm-lr",),
            float | None,
            "Learning rate of each warm-started point \\[default: 10x --lr].",
        ),
        flag(
            "warm",
            ("--warm/--cold",),
            bool,
            "Walk the surface, each point from its neighbour's fit (3-4x faster), or fit each from scratch.",
            default=SETTING,
        ),
        flag(
            "iso_c",
            ("--iso-c",),
            float | None,
            "Iso-classification: per beta, the lambda whose val C is this many nats.",
        ),
        flag("lr", ("--lr",), float, "Adam learning rate.", default=SETTING),
        flag(
            "train_device",
            ("--train-device",),
            str,
            "Where the fits run: auto (CUDA when torch sees a GPU), cpu, cuda.",
            default=SETTING,
        ),
        _seed("Seeds every fit (same initial weights at every point)."),
    ),
)

GATE = Group(
    settings=lambda: Statistics,
    defaults=Statistics,
    flags=(_bootstrap(), _seed("Bootstrap seed.")),
)


F = TypeVar("F", bound=Callable[..., Any])
LAST = ("log_to", "as_json", "debug")  # a command's output options stay last in its --help


def with_options(*groups: Group) -> Callable[[F], F]:
    """Give a command the options of `groups` after its own (before its output options, `LAST`): typer reads the
    signature set here and passes them into the command's `**options`, so each flag is declared once (here)."""

    def wrap(fn: F) -> F:
        sig = inspect.signature(fn, eval_str=True)  # the module's annotations are strings (PEP 563)
        own = [p for p in sig.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
        tail = next((i for i, p in enumerate(own) if p.name in LAST), len(own))
        last = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own[tail:]]
        params = [*own[:tail], *(p for g in groups for p in g.parameters()), *last]
        fn.__signature__ = sig.replace(parameters=params)
        fn.__annotations__ = {p.name: p.annotation for p in params} | {"return": None}
        return fn

    return wrap
