"""`vcal audit`: metrics, reliability diagram and report for a checkpoint or precomputed logits."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vcal_cli import api
from vcal_cli.cli._errors import handle_errors
from vcal_cli.cli._options import (
    ArchOpt,
    BatchOpt,
    CacheDirOpt,
    DataOpt,
    DataRootOpt,
    DebugOpt,
    DeviceOpt,
    HeadModuleOpt,
    InputSizeOpt,
    JsonOpt,
    MeanOpt,
    NoCacheOpt,
    SplitOpt,
    StdOpt,
    TrustOpt,
    WorkersOpt,
    extract_options,
)
from vcal_cli.cli._output import note, out, progress
from vcal_cli.evaluations.adversarial import parse_eps
from vcal_cli.reports import write_report
from vcal_cli.reports.tables import adversarial_table, audit_table, hierarchy_table, ood_table, shift_table


def audit_cmd(
    checkpoint: Annotated[
        Path | None,
        typer.Argument(
            help="Checkpoint: vcal .safetensors, a state dict "
            "(.pt/.pth/.bin/.safetensors) with --arch, or a pickled "
            "module with --trust-checkpoint.",
            show_default=False,
        ),
    ] = None,
    data: DataOpt = "digits",
    split: SplitOpt = "test",
    logits: Annotated[
        Path | None,
        typer.Option(
            "--logits",
            help="Audit precomputed logits or probs with labels (.npz or .safetensors) instead of a checkpoint.",
        ),
    ] = None,
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Report directory.")] = Path("vcal-report"),
    bins: Annotated[int, typer.Option("--bins", min=1, help="Bins for ECE, MCE, classwise ECE, diagrams.")] = 15,
    bootstrap: Annotated[int, typer.Option("--bootstrap", min=0, help="Bootstrap resamples for 95% intervals.")] = 200,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the bootstrap.")] = 0,
    arch: ArchOpt = None,
    trust_checkpoint: TrustOpt = False,
    head_module: HeadModuleOpt = None,
    hierarchy: Annotated[
        str | None,
        typer.Option(
            "--hierarchy",
            help="Class hierarchy for mistake-severity metrics: a .csv or .json file, or "
            "'cifar100' \\[default: the data set's built-in one].",
        ),
    ] = None,
    ood: Annotated[
        list[str] | None,
        typer.Option(
            "--ood",
            help="Out-of-distribution data set (any --data form, repeatable): AUROC, AUPR "
            "and FPR@95TPR of MSP, max logit, energy and Mahalanobis scores.",
        ),
    ] = None,
    adversarial: Annotated[
        bool,
        typer.Option(
            "--adversarial", help="FGSM and PGD (L-inf, 10 steps, random start) in pixel space on the test split."
        ),
    ] = False,
    eps: Annotated[str, typer.Option("--eps", help="Attack budgets in pixel units.")] = "1/255,2/255,4/255,8/255",
    shift: Annotated[
        bool, typer.Option("--shift", help="Evaluate on corrupted test images (CIFAR-10-C / ImageNet-C corruptions).")
    ] = False,
    strengths: Annotated[
        str,
        typer.Option(
            "--strengths",
            help="Corruption strengths: cifar (CIFAR-10-C), imagenet (ImageNet-C), or auto by image size.",
        ),
    ] = "auto",
    corruptions: Annotated[
        str | None, typer.Option("--corruptions", help="Comma-separated corruptions \\[default: all available].")
    ] = None,
    severities: Annotated[str, typer.Option("--severities", help="Comma-separated severities 1..5.")] = "1,2,3,4,5",
    adv_limit: Annotated[int, typer.Option("--adv-limit", help="Attack the first N test images.")] = 1000,
    head_file: Annotated[
        Path | None,
        typer.Option("--head-file", help="Apply a head written by 'vcal retrain --head-only' to CHECKPOINT."),
    ] = None,
    data_root: DataRootOpt = None,
    input_size: InputSizeOpt = None,
    mean: MeanOpt = None,
    std: StdOpt = None,
    cache_dir: CacheDirOpt = None,
    no_cache: NoCacheOpt = False,
    device: DeviceOpt = "auto",
    batch_size: BatchOpt = 256,
    workers: WorkersOpt = 0,
    as_json: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Audit a classifier's calibration and write a report.

    Example: vcal audit sample_checkpoints/mlp_digits.safetensors --data digits
    """
    with handle_errors(debug):
        opts = extract_options(locals())
        report = api.audit(
            checkpoint,
            data=data,
            split=split,
            logits=logits,
            options=opts,
            hierarchy=hierarchy,
            ood=ood,
            adversarial=parse_eps(eps) if adversarial else None,
            adv_limit=adv_limit,
            shift=_corruption_list(corruptions) if shift or corruptions else None,
            severities=_severities(severities),
            strengths=None if strengths == "auto" else strengths,
            n_bins=bins,
            n_bootstrap=bootstrap,
            seed=seed,
            progress=progress(not as_json),
        )
        inputs = tuple(p for p in (checkpoint, logits) if p is not None)
        write_report(report, out_dir, inputs=inputs)
        if as_json:
            print(report.to_json(), end="")
            return
        out.print(audit_table(report.to_dict()))
        if report.hierarchy:
            out.print(hierarchy_table({"value": report.hierarchy}))
        if report.ood:
            out.print(ood_table(report.ood))
        if report.shift:
            out.print(shift_table(report.shift, report.settings["shift"]["strengths"]))
        if report.adversarial:
            out.print(adversarial_table(report.adversarial))
        cache = report.settings.get("cache", {})
        if cache:
            note("features from the cache" if cache.get("hit") else f"features cached in {cache.get('path')}")
        note(f"report written to {out_dir}/ (report.json, report.html, report.md, metrics.csv, reliability.png)")


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
