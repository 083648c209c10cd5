"""`vcal audit`: metrics, reliability diagram and report for a checkpoint or precomputed logits."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from vcal_cli._defaults import DEFAULT_REPORT_DIR
from vcal_cli._io import check_out_dir
from vcal_cli.cli import _options as opt
from vcal_cli.cli._errors import handle_errors
from vcal_cli.cli._output import note, out, progress, warn
from vcal_cli.integrations.trackers import check_trackers, log_audit


@opt.with_options(opt.AUDIT, opt.EXTRACT, opt.ROBUSTNESS, opt.CONFORMAL)
def audit_cmd(
    checkpoint: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Checkpoint: vcal .safetensors, a state dict "
            "(.pt/.pth/.bin/.safetensors) with --arch, or a pickled "
            "module with --trust-checkpoint. Several: a deep ensemble (the mean of their probabilities).",
            show_default=False,
        ),
    ] = None,
    data: opt.DataOpt = None,
    val_from: opt.ValFromOpt = None,
    split: opt.SplitOpt = "test",
    logits: Annotated[
        Path | None,
        typer.Option(
            "--logits",
            help="Audit precomputed logits or probs with labels (.npz or .safetensors) instead of a checkpoint.",
        ),
    ] = None,
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Report directory.")] = Path(DEFAULT_REPORT_DIR),
    head_file: Annotated[
        Path | None,
        typer.Option("--head-file", help="Apply a head written by 'vcal retrain --head-only' to CHECKPOINT."),
    ] = None,
    log_to: opt.LogToOpt = None,
    as_json: opt.JsonOpt = False,
    debug: opt.DebugOpt = False,
    **options: Any,
) -> None:
    """Audit a classifier's calibration and write a report.

    Example: vcal audit sample_checkpoints/mlp_digits.safetensors --data digits
    """
    with handle_errors(debug):
        from vcal_cli import api
        from vcal_cli.reports import write_report
        from vcal_cli.reports.documents import prep_line, weights_line
        from vcal_cli.reports.sections import guarantee_lines, terminal_view
        from vcal_cli.reports.tables import summary_panel

        check_out_dir("--out", out_dir)
        trackers = check_trackers(log_to)  # before any work: a tracker whose library is missing is one line
        opts = opt.EXTRACT.build(options, head_file=str(head_file) if head_file else None, val_from=val_from)
        bootstrap, seed = options["bootstrap"], options["seed"]
        settings = opt.AUDIT.build(
            options,
            robustness=opt.ROBUSTNESS.build(options, n_bootstrap=bootstrap),
            conformal=opt.CONFORMAL.build(options, n_bootstrap=bootstrap, seed=seed),
        )
        report = api.audit(
            (checkpoint[0] if len(checkpoint) == 1 else checkpoint) if checkpoint else None,
            data=data,
            split=split,
            logits=logits,
            options=opts,
            settings=settings,
            progress=progress(not as_json),
        )
        inputs = tuple(p for p in (*(checkpoint or ()), logits, head_file) if p is not None)
        write_report(report, out_dir, inputs=inputs)
        if trackers:
            log_audit(trackers, report.to_dict(), out_dir)
        if weights := report.checkpoint.get("weights"):  # which weights were audited, in a log too
            note(weights_line(weights))
        for w in report.warnings:
            warn(w)
        if as_json:
            print(report.to_json(), end="")
            return
        if prep := report.settings.get("preprocessing"):
            note(f"preprocessing: {prep_line(prep)}")
        d = report.to_dict()
        out.print(summary_panel(d["summary"]))
        for table in terminal_view(d):
            out.print(table)
        for line in guarantee_lines(d):
            note(line)
        cache = report.settings.get("cache", {})
        if cache.get("hit"):
            note("features from the cache")
        elif cache.get("path"):
            note(f"features cached in {cache['path']}")
        note(f"report written to {out_dir}/ (report.json, report.html, report.md, metrics.csv, reliability.png)")
        for w in report.warnings:  # again under the table, where the eye ends
            warn(w)
