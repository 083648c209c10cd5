"""`vcal frontier`: trace the rate-distortion-classification surface of a variational head and pick a point."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from vcal_cli._io import check_out_dir
from vcal_cli.cli import _options as opt
from vcal_cli.cli._errors import handle_errors
from vcal_cli.cli._output import note, out, progress


@opt.with_options(opt.FRONTIER, opt.EXTRACT)
def frontier_cmd(
    checkpoint: Annotated[Path, typer.Argument(help="The checkpoint whose features to use.", show_default=False)],
    data: opt.DataOpt = None,
    val_from: opt.ValFromOpt = None,
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Report directory.")] = Path("vcal-frontier"),
    as_json: opt.JsonOpt = False,
    debug: opt.DebugOpt = False,
    **options: Any,
) -> None:
    """Fit a variational head per (beta, lambda), draw the rate-classification curves, pick a head on val.

    Example: vcal frontier sample_checkpoints/cnn_digits.safetensors --head vtst --write-best best.safetensors
    """
    with handle_errors(debug):
        check_out_dir("--out", out_dir)
        from vcal_cli.commands.frontier import frontier
        from vcal_cli.reports.frontier import frontier_table, write_frontier_report

        result = frontier(
            checkpoint,
            data=data,
            options=opt.EXTRACT.build(options, val_from=val_from),
            settings=opt.FRONTIER.build(options),
            progress=progress(not as_json),
        )
        write_frontier_report(result, out_dir, inputs=(checkpoint,))
        if as_json:
            import json

            print(json.dumps(result.to_dict(), indent=2))
            return
        out.print(frontier_table(result))
        note(f"selected: {result.reason}")
        if result.written:
            note(f"wrote {result.written}")
        note(f"report written to {out_dir}/ (frontier.csv, frontier.png, frontier.json)")
