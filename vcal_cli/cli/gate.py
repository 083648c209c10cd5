"""`vcal gate` (exit 1 on a calibration regression) and `vcal compare`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from vcal_cli._defaults import DEFAULT_N_BINS
from vcal_cli._io import atomic_write_bytes, atomic_write_text, guard_outputs
from vcal_cli.cli import _options as opt
from vcal_cli.cli._errors import handle_errors
from vcal_cli.cli._output import note, out, progress, warn
from vcal_cli.integrations.trackers import check_trackers, log_gate

RuleOpt = list[str] | None


@opt.with_options(opt.GATE, opt.EXTRACT)
def gate_cmd(
    current: Annotated[str, typer.Argument(help="Current report.json or checkpoint.", show_default=False)],
    baseline: Annotated[
        str, typer.Option("--baseline", "-b", help="Baseline report.json or checkpoint.", show_default=False)
    ],
    max_increase: Annotated[
        RuleOpt,
        typer.Option(
            "--max-increase", help="METRIC=DELTA a lower-is-better metric may rise (repeatable), e.g. ece=0.01."
        ),
    ] = None,
    max_decrease: Annotated[
        RuleOpt,
        typer.Option("--max-decrease", help="METRIC=DELTA a higher-is-better metric may fall, e.g. accuracy=0.005."),
    ] = None,
    max_value: Annotated[
        RuleOpt, typer.Option("--max", help="METRIC=VALUE absolute upper bound, e.g. ece=0.05.")
    ] = None,
    min_value: Annotated[RuleOpt, typer.Option("--min", help="METRIC=VALUE absolute lower bound.")] = None,
    junit: Annotated[Path | None, typer.Option("--junit", help="Write JUnit XML (one test case per rule).")] = None,
    markdown: Annotated[
        Path | None, typer.Option("--markdown", help="Write a markdown summary (e.g. $GITHUB_STEP_SUMMARY).")
    ] = None,
    data: opt.DataOpt = None,
    val_from: opt.ValFromOpt = None,
    split: opt.SplitOpt = "test",
    log_to: opt.LogToOpt = None,
    as_json: opt.JsonOpt = False,
    debug: opt.DebugOpt = False,
    **options: Any,
) -> None:
    """Fail (exit 1) when CURRENT's calibration regressed against the baseline beyond noise.

    Rules come from the flags, else [tool.vcal.gate] in pyproject.toml or [gate] in vcal.toml, else the
    defaults: ece, ece_adaptive (+0.01), nll (+0.02), brier (+0.01) may not rise, accuracy may not
    fall by 0.005.

    Example: vcal gate new.safetensors --baseline baseline/report.json --junit gate.xml
    """
    with handle_errors(debug):
        from vcal_cli import api
        from vcal_cli.gate import parse_rule, to_junit, to_markdown

        guard_outputs(
            {"--junit": junit, "--markdown": markdown},
            {"the current report or checkpoint": current, "the baseline": baseline},
        )
        rules = [
            parse_rule(t, kind)
            for kind, texts in (
                ("max_increase", max_increase),
                ("max_decrease", max_decrease),
                ("max", max_value),
                ("min", min_value),
            )
            for t in texts or []
        ]
        trackers = check_trackers(log_to)  # before any work
        opts = opt.EXTRACT.build(options, val_from=val_from)
        result = api.gate(
            current,
            baseline,
            rules=rules,
            data=data,
            split=split,
            options=opts,
            stats=opt.GATE.build(options),
            progress=progress(not as_json),
        )
        for path, text in (
            (junit, to_junit(result) if junit else ""),
            (markdown, to_markdown(result) if markdown else ""),
        ):
            if path:
                try:
                    atomic_write_text(path, text)
                except OSError as e:
                    from vcal_cli.errors import UsageError

                    raise UsageError(f"cannot write '{path}' ({e.strerror})", hint="choose another path") from None
        for w in result.warnings:
            warn(w)
        if trackers:
            log_gate(trackers, result.to_dict())
        if as_json:
            print(json.dumps(result.to_dict(), indent=2))
        else:
            t = Table(
                title=f"vcal gate: {result.current} against {result.baseline}",
                title_justify="left",
                caption=f"noise judged by {result.method}",
                caption_justify="left",
            )
            for col in ("rule", "baseline", "current", "delta", "interval", "verdict"):
                t.add_column(col, justify="right" if col in ("baseline", "current", "delta") else "left")
            for r in result.results:
                t.add_row(
                    r.rule.label,
                    f"{r.baseline:.4f}",
                    f"{r.current:.4f}",
                    f"{r.delta:+.4f}",
                    r.interval,
                    "[green]pass[/green]" if r.passed else f"[red]FAIL[/red] {r.message}",
                )
            out.print(t)
            failed = [r.rule.label for r in result.results if not r.passed]
            note("gate passed" if not failed else f"gate failed: {', '.join(failed)}")
        raise typer.Exit(result.exit_code)


def compare_cmd(
    reports: Annotated[list[Path], typer.Argument(help="Two or more report.json files.", show_default=False)],
    out_dir: Annotated[
        Path, typer.Option("--out", "-o", help="Report directory: compare.png, the overlaid reliability diagrams.")
    ] = Path("vcal-compare"),
    as_json: opt.JsonOpt = False,
    debug: opt.DebugOpt = False,
) -> None:
    """Side-by-side table of reports, with their reliability diagrams overlaid in one PNG.

    Example: vcal compare base/report.json new/report.json
    """
    from vcal_cli.metrics import METRIC_NAMES, ReliabilityBin
    from vcal_cli.reports.figures import plot_reliability_overlay, to_png
    from vcal_cli.reports.tables import metric_label

    with handle_errors(debug):
        from vcal_cli import api

        reps = api.compare(reports)
        out_file = out_dir / "compare.png"
        if out_dir.exists() and not out_dir.is_dir():
            from vcal_cli.errors import UsageError

            raise UsageError(f"--out '{out_dir}' is a file; it names the report directory", hint="choose a directory")
        names = [str(p) for p in reports]
        curves = {
            n: ([ReliabilityBin(**b) for b in r["reliability"]], r["metrics"]["ece"])
            for n, r in zip(names, reps, strict=True)
        }
        atomic_write_bytes(out_file, to_png(plot_reliability_overlay(curves, title="Reliability: compared reports")))
        if as_json:
            print(json.dumps({n: r["metrics"] for n, r in zip(names, reps, strict=True)}, indent=2))
            return
        t = Table(title="vcal compare", title_justify="left")
        t.add_column("metric")
        for n in names:
            t.add_column(n, justify="right")
        for m in METRIC_NAMES:
            bins = reps[0]["settings"].get("bins", DEFAULT_N_BINS)
            t.add_row(metric_label(m, bins), *(f"{r['metrics'][m]:.4f}" for r in reps))
        out.print(t)
        note(f"overlaid reliability diagrams written to {out_file}")
