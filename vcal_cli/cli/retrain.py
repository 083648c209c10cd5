"""`vcal retrain`: fit new heads on cached features, audit them, write checkpoints and a before/after report."""

from __future__ import annotations

import dataclasses
import inspect
import typing
from pathlib import Path
from typing import Annotated

import typer

from vcal_cli._io import check_out_dir
from vcal_cli.cli import _options as opt
from vcal_cli.cli._errors import handle_errors
from vcal_cli.cli._output import note, out, progress, warn
from vcal_cli.heads import HEADS
from vcal_cli.integrations.trackers import check_trackers, log_retrain


def head_fields() -> dict[str, tuple[type, list[str], dict[str, str], str]]:
    """Every head hyperparameter (but the shared seed), from the heads' Params: field name -> (type, 'head
    default' strings, head -> help line, flag). Help and flag come from each field's `param(...)` metadata in
    its head's file, so a new hyperparameter needs no edit here."""
    fields: dict[str, tuple[type, list[str], dict[str, str], str]] = {}
    for n in HEADS.names():
        params = HEADS.get(n).Params
        hints = typing.get_type_hints(params)
        for f in dataclasses.fields(params):
            if f.name == "seed":
                continue
            base = next((t for t in typing.get_args(hints[f.name]) if t is not type(None)), hints[f.name])
            flag = f.metadata.get("flag", "--" + f.name.replace("_", "-"))
            entry = fields.setdefault(f.name, (base, [], {}, flag))
            entry[1].append(f"{n} {'auto' if f.default is None else f.default}")
            if "help" in f.metadata:
                entry[2][n] = f.metadata["help"]
    return fields


def _head_option(name: str, kind: type, defaults: list[str], helps: dict[str, str], flag: str) -> inspect.Parameter:
    by_text: dict[str, list[str]] = {}
    for h, t in helps.items():
        by_text.setdefault(t, []).append(h)
    if len(by_text) <= 1:
        text = next(iter(by_text), f"Head parameter {name}.")
    else:  # one word, several meanings: say which head means what
        text = " ".join(f"{'/'.join(hs)}: {t}" for t, hs in by_text.items())
    help = f"{text} \\[defaults: {', '.join(defaults)}]"
    opt = typer.Option(flag, help=help, show_default=False, rich_help_panel="Head hyperparameters")
    return inspect.Parameter(
        f"head_{name}", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[kind | None, opt]
    )


@opt.with_options(opt.RETRAIN, opt.EXTRACT, opt.ROBUSTNESS, opt.CONFORMAL)
def retrain_cmd(
    checkpoint: Annotated[
        list[Path],
        typer.Argument(
            help="The checkpoint whose head to retrain; several: a deep ensemble (heads fitted and reported).",
            show_default=False,
        ),
    ],
    head: Annotated[
        list[str],
        typer.Option(
            "--head",
            help=f"Head(s) to fit, repeatable; 'auto' (fit the candidates, keep the best on val), 'all', "
            f"{', '.join(HEADS.names())}, or NAME+temperature (see 'vcal heads').",
        ),
    ],
    data: opt.DataOpt = None,
    val_from: opt.ValFromOpt = None,
    log_to: opt.LogToOpt = None,
    as_json: opt.JsonOpt = False,
    debug: opt.DebugOpt = False,
    **head_params: object,
) -> None:
    """Retrain only the head on cached features and compare it with the original.

    Example: vcal retrain sample_checkpoints/cnn_digits.safetensors --data digits --head all
    """
    with handle_errors(debug):
        settings = opt.RETRAIN.build(
            head_params,
            params={k: head_params.get(f"head_{k}") for k in head_fields()},
            robustness=opt.ROBUSTNESS.build(head_params, n_bootstrap=head_params["bootstrap"]),
            conformal=opt.CONFORMAL.build(head_params, n_bootstrap=head_params["bootstrap"], seed=head_params["seed"]),
        )
        out_dir = Path(settings.out_dir)
        check_out_dir("--out", out_dir)
        trackers = check_trackers(log_to)
        from vcal_cli import api
        from vcal_cli.reports.documents import weights_line
        from vcal_cli.reports.retrain import write_retrain_report
        from vcal_cli.reports.sections import guarantee_lines, terminal_view
        from vcal_cli.reports.summary import verdict_line
        from vcal_cli.reports.tables import summary_panel

        report = api.retrain(
            checkpoint[0] if len(checkpoint) == 1 else checkpoint,
            head,
            data=data,
            options=opt.EXTRACT.build(head_params, val_from=val_from),
            settings=settings,
            progress=progress(not as_json),
        )
        write_retrain_report(report, out_dir, inputs=tuple(checkpoint))
        if trackers:
            log_retrain(trackers, report.to_dict(), out_dir)
        if weights := report.original.checkpoint.get("weights"):  # which weights were retrained, in a log too
            note(weights_line(weights))
        for w in report.original.warnings:
            warn(w)
        if as_json:
            print(report.to_json(), end="")
            return
        d = report.to_dict()
        out.print(summary_panel(d["summary"]))
        for table in terminal_view(d):
            out.print(table)
        for line in guarantee_lines(d):
            note(line)
        if auto := report.original.settings["retrain"].get("auto"):
            note(f"--head auto: {auto['reason']}")
        for name, h in report.heads.items():
            if name != "original":
                note(f"{name}: {verdict_line(h.verdicts or {}, name)} (test, 95% paired bootstrap)")
                if h.checkpoint:  # an ensemble's heads are reported, not written
                    note(f"{name}: wrote {h.checkpoint}")
        note(f"report written to {out_dir}/")
        for w in report.original.warnings:  # again under the table, where the eye ends
            warn(w)


def _with_head_flags(fn):
    """Give `fn` one keyword-only option per head hyperparameter, generated from the heads' Params."""
    sig = inspect.signature(fn, eval_str=True)  # the module's annotations are strings (PEP 563)
    plain = [p for p in sig.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    extra = [_head_option(n, *spec) for n, spec in head_fields().items()]
    fn.__signature__ = sig.replace(parameters=[*plain, *extra])
    fn.__annotations__ = {p.name: p.annotation for p in [*plain, *extra]} | {"return": None}
    return fn


retrain_cmd = _with_head_flags(retrain_cmd)
