"""`vcal retrain`: fit new heads on cached features, audit them, write checkpoints and a before/after report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vcal_cli.cli._errors import handle_errors
from vcal_cli.cli._options import (
    AdversarialOpt,
    AdvLimitOpt,
    ArchOpt,
    BatchOpt,
    CacheDirOpt,
    CacheDtypeOpt,
    ChannelsLastOpt,
    CorruptionsOpt,
    DataOpt,
    DataRootOpt,
    DebugOpt,
    DeviceOpt,
    EpsOpt,
    HeadModuleOpt,
    InputSizeOpt,
    JsonOpt,
    MeanOpt,
    NoCacheOpt,
    OodOpt,
    PrecisionOpt,
    SeveritiesOpt,
    ShardSizeOpt,
    ShiftOpt,
    StdOpt,
    StrengthsOpt,
    TrustOpt,
    ValFromOpt,
    WorkersOpt,
    extract_options,
    robustness_options,
)
from vcal_cli.cli._output import note, out, progress, warn
from vcal_cli.heads import HEADS


def _defaults(field: str) -> str:
    """'[defaults: ce 40, vtst 40]' from the registry, so --help shows each head's paper default."""
    import dataclasses

    vals = []
    for n in HEADS.names():
        for f in dataclasses.fields(HEADS.get(n).Params):
            if f.name == field:
                vals.append(f"{n} {'auto' if f.default is None else f.default}")
    return f"\\[defaults: {', '.join(vals)}]"


def _opt(flag: str, field: str, text: str):  # noqa: ANN202 - a typer.Option
    return typer.Option(flag, help=f"{text} {_defaults(field)}", show_default=False)


def retrain_cmd(
    checkpoint: Annotated[Path, typer.Argument(help="The checkpoint whose head to retrain.", show_default=False)],
    head: Annotated[
        list[str],
        typer.Option(
            "--head", help=f"Head(s) to fit, repeatable, or 'all': {', '.join(HEADS.names())} (see 'vcal heads')."
        ),
    ],
    data: DataOpt = None,
    val_from: ValFromOpt = "train",
    out_dir: Annotated[
        Path, typer.Option("--out", "-o", help="Report directory; checkpoints go here too unless --checkpoint-out.")
    ] = Path("vcal-report"),
    out_file: Annotated[
        Path | None, typer.Option("--checkpoint-out", help="Checkpoint file to write (one head only).")
    ] = None,
    head_only: Annotated[
        bool,
        typer.Option("--head-only", help="Write only the head's weights (apply with 'vcal audit BASE --head-file')."),
    ] = False,
    seed: Annotated[int, typer.Option("--seed", help="Seeds every head and the bootstrap.")] = 0,
    epochs: Annotated[
        int | None,
        _opt("--epochs", "epochs", "Training epochs (auto: 40, raised on small splits until ~6,000 Adam steps run)."),
    ] = None,
    lr: Annotated[float | None, _opt("--lr", "lr", "Adam learning rate.")] = None,
    train_batch_size: Annotated[int | None, _opt("--train-batch-size", "batch_size", "Mini-batch size.")] = None,
    hidden: Annotated[
        int | None,
        _opt("--hidden", "hidden", "Latent size Z (auto: 128 for <= 10 classes, else 512; 0 = linear head for ce)."),
    ] = None,
    beta: Annotated[float | None, _opt("--beta", "beta", "KL / prior weight (vtst auto = 1/Z).")] = None,
    samples: Annotated[int | None, _opt("--samples", "samples", "Monte-Carlo samples of the predictive.")] = None,
    prior_precision: Annotated[
        float | None, _opt("--prior-precision", "prior_precision", "Weight prior precision tau.")
    ] = None,
    step: Annotated[float | None, _opt("--step", "step", "Pseudo-target step alpha.")] = None,
    max_iter: Annotated[int | None, _opt("--max-iter", "max_iter", "Solver iterations.")] = None,
    gamma: Annotated[float | None, _opt("--gamma", "gamma", "HAFrame distance-to-cosine decay.")] = None,
    alpha: Annotated[float | None, _opt("--alpha", "alpha", "HAFrame cosine-loss weight.")] = None,
    hierarchy: Annotated[
        str | None,
        typer.Option(
            "--hierarchy",
            help="Class hierarchy for haframe and the mistake-severity metrics: a .csv (class,parent or "
            "class,level1,...) or .json file, or 'cifar100' \\[default: the data set's built-in one].",
        ),
    ] = None,
    ood: OodOpt = None,
    adversarial: AdversarialOpt = False,
    eps: EpsOpt = "1/255,2/255,4/255,8/255",
    adv_limit: AdvLimitOpt = 1000,
    shift: ShiftOpt = False,
    corruptions: CorruptionsOpt = None,
    severities: SeveritiesOpt = "1,2,3,4,5",
    strengths: StrengthsOpt = "auto",
    bins: Annotated[int, typer.Option("--bins", min=1, help="Bins for ECE, MCE, classwise ECE, diagrams.")] = 15,
    bootstrap: Annotated[int, typer.Option("--bootstrap", min=0, help="Bootstrap resamples.")] = 200,
    arch: ArchOpt = None,
    trust_checkpoint: TrustOpt = False,
    head_module: HeadModuleOpt = None,
    data_root: DataRootOpt = None,
    input_size: InputSizeOpt = None,
    mean: MeanOpt = None,
    std: StdOpt = None,
    cache_dir: CacheDirOpt = None,
    no_cache: NoCacheOpt = False,
    device: DeviceOpt = "auto",
    batch_size: BatchOpt = 256,
    workers: WorkersOpt = 0,
    precision: PrecisionOpt = "fp32",
    channels_last: ChannelsLastOpt = None,
    cache_dtype: CacheDtypeOpt = "float32",
    shard_size: ShardSizeOpt = 8192,
    as_json: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Retrain only the head on cached features and compare it with the original.

    Example: vcal retrain sample_checkpoints/cnn_digits.safetensors --data digits --head all
    """
    with handle_errors(debug):
        from vcal_cli import api
        from vcal_cli.reports.retrain import retrain_table, write_retrain_report
        from vcal_cli.reports.tables import hierarchy_table, robustness_rows, robustness_table

        if out_dir.suffix in (".safetensors", ".pt", ".pth"):
            from vcal_cli.errors import UsageError

            raise UsageError(
                f"--out '{out_dir}' names the report directory, not a checkpoint file",
                hint=f"write one head's checkpoint with --checkpoint-out {out_dir}",
            )
        opts = extract_options(locals())
        params = {
            "epochs": epochs,
            "lr": lr,
            "batch_size": train_batch_size,
            "hidden": hidden,
            "beta": beta,
            "samples": samples,
            "prior_precision": prior_precision,
            "step": step,
            "max_iter": max_iter,
            "gamma": gamma,
            "alpha": alpha,
        }
        report = api.retrain(
            checkpoint,
            head,
            data=data,
            options=opts,
            params=params,
            out_dir=out_dir,
            out=out_file,
            head_only=head_only,
            hierarchy=hierarchy,
            robustness=robustness_options(locals()),
            n_bins=bins,
            n_bootstrap=bootstrap,
            seed=seed,
            progress=progress(not as_json),
        )
        write_retrain_report(report, out_dir, inputs=(checkpoint,))
        for w in report.base.warnings:
            warn(w)
        if as_json:
            print(report.to_json(), end="")
            return
        d = report.to_dict()
        out.print(retrain_table(d))
        if any(h.get("hierarchy") for h in d["heads"].values()):
            out.print(hierarchy_table({n: h.get("hierarchy") for n, h in d["heads"].items()}))
        if robustness_rows(d["heads"]):
            out.print(robustness_table(d["heads"]))
        for name, h in report.heads.items():
            if name != "original":
                note(f"{name}: wrote {h.checkpoint}")
        note(f"report written to {out_dir}/")
        for w in report.base.warnings:  # again under the table, where the eye ends
            warn(w)
