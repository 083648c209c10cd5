"""`vcal features`: export a split's penultimate features, logits and labels."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from vcal_cli import api
from vcal_cli.cli import _options as opt
from vcal_cli.cli._errors import handle_errors
from vcal_cli.cli._output import note, progress


@opt.with_options(opt.EXTRACT)
def features_cmd(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint to run.", show_default=False)],
    out_file: Annotated[
        Path,
        typer.Option("--features-out", help="Output .safetensors with features, logits, labels.", show_default=False),
    ],
    data: opt.DataOpt = None,
    val_from: opt.ValFromOpt = None,
    split: opt.SplitOpt = "test",
    debug: opt.DebugOpt = False,
    **options: Any,
) -> None:
    """Export features, logits and labels of one split (read from the cache when present).

    Example: vcal features sample_checkpoints/mlp_digits.safetensors --split test --features-out test.safetensors
    """
    with handle_errors(debug):
        opts = opt.EXTRACT.build(options, val_from=val_from)
        fs = api.export_features(checkpoint, out_file, data=data, split=split, options=opts, progress=progress())
        if fs.resumed:
            note(f"resumed an interrupted extraction: {fs.resumed} finished shards reused")
        note(f"wrote {out_file} ({len(fs)} rows, features from the cache)" if fs.from_cache else f"wrote {out_file}")
