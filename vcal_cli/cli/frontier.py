"""`vcal frontier`: trace the rate-distortion-classification surface of a variational head and pick a point."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from vcal_cli._defaults import MAX_SEED
from vcal_cli._io import check_out_dir
from vcal_cli.cli import _options as opt
from vcal_cli.cli._errors import handle_errors
from vcal_cli.cli._output import note, out, progress


@opt.with_options(opt.EXTRACT)
def frontier_cmd(
    checkpoint: Annotated[Path, typer.Argument(help="The checkpoint whose features to use.", show_default=False)],
    data: opt.DataOpt = None,
    val_from: opt.ValFromOpt = None,
    head: Annotated[str, typer.Option("--head", help="Variational head to sweep: vtst.")] = "vtst",
    betas: Annotated[
        str | None, typer.Option("--betas", help="Weights of the rate R \\[default: 1e-4,1e-3,1e-2,0.1,1,10].")
    ] = None,
    lambdas: Annotated[
        str | None, typer.Option("--lambdas", help="Weights of the distortion D \\[default: 0].")
    ] = None,
    tolerance: Annotated[
        float,
        typer.Option(
            "--tolerance", help="How far below the best val accuracy a point may be, a fraction (0.005: half a point)."
        ),
    ] = 0.005,
    select: Annotated[str, typer.Option("--select", help="Pick the lowest val: ece, rate or nll.")] = "ece",
    write_best: Annotated[
        Path | None, typer.Option("--write-best", help="Write the selected head's checkpoint here.")
    ] = None,
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Report directory.")] = Path("vcal-frontier"),
    hidden: Annotated[
        int | None, typer.Option("--hidden", help="Latent size Z \\[default: 128 for <= 10 classes, else 512].")
    ] = None,
    epochs: Annotated[
        int | None, typer.Option("--epochs", help="Epochs per point \\[default: ~6,000 Adam steps].")
    ] = None,
    warm_epochs: Annotated[
        int | None,
        typer.Option("--warm-epochs", help="Epochs of each warm-started point \\[default: a quarter of --epochs]."),
    ] = None,
    warm_lr: Annotated[
        float | None,
        typer.Option("--warm-lr", help="Learning rate of each warm-started point \\[default: 10x --lr]."),
    ] = None,
    warm: Annotated[
        bool,
        typer.Option(
            "--warm/--cold",
            help="Walk the surface, each point from its neighbour's fit (3-4x faster), or fit each from scratch.",
        ),
    ] = True,
    iso_c: Annotated[
        float | None,
        typer.Option("--iso-c", help="Iso-classification: per beta, the lambda whose val C is this many nats."),
    ] = None,
    lr: Annotated[float, typer.Option("--lr", help="Adam learning rate.")] = 1e-4,
    train_device: Annotated[
        str, typer.Option("--train-device", help="Where the fits run: auto (CUDA when torch sees a GPU), cpu, cuda.")
    ] = "auto",
    seed: Annotated[
        int, typer.Option("--seed", min=0, max=MAX_SEED, help="Seeds every fit (same initial weights at every point).")
    ] = 0,
    as_json: opt.JsonOpt = False,
    debug: opt.DebugOpt = False,
    **options: Any,
) -> None:
    """Fit a variational head per (beta, lambda), draw the rate-classification curves, pick a head on val.

    Example: vcal frontier sample_checkpoints/cnn_digits.safetensors --head vtst --write-best best.safetensors
    """
    with handle_errors(debug):
        check_out_dir("--out", out_dir)
        from vcal_cli.commands.frontier import DEFAULT_BETAS, frontier, parse_grid
        from vcal_cli.reports.frontier import frontier_table, write_frontier_report

        opts = opt.EXTRACT.build(options, val_from=val_from)
        result = frontier(
            checkpoint,
            data=data,
            head=head,
            betas=parse_grid(betas, "--betas", DEFAULT_BETAS),
            lambdas=parse_grid(lambdas, "--lambdas", (0.0,)),
            tolerance=tolerance,
            select=select,
            hidden=hidden,
            epochs=epochs,
            warm_epochs=warm_epochs,
            warm=warm,
            warm_lr=warm_lr,
            iso_c=iso_c,
            lr=lr,
            train_device=train_device,
            options=opts,
            seed=seed,
            write_best=write_best,
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
