"""`cures report`: figures and an HTML/Markdown report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cures._io import check_output_dir
from cures.cli._app import app, console, fail, progress_bar, user_errors


@app.command()
@user_errors
def report(
    out: Annotated[Path, typer.Option("--out", help="Directory for the figures (PNG, SVG) and report.md/.html.")] =
    Path("report"),
    scenario: Annotated[str, typer.Option("--scenario", help="Scenario of the policy comparisons.")] = "paper-1.5b",
    n_prompts: Annotated[int, typer.Option("--n-prompts", help="Training prompts of the comparisons.")] = 10_000,
    seeds: Annotated[int, typer.Option("--seeds", help="Seeds of the comparisons.")] = 4,
    steps: Annotated[int, typer.Option("--steps", help="Baseline steps of the comparisons.")] = 150,
    mc_reps: Annotated[int, typer.Option("--mc-reps", help="Monte Carlo replicates per gradient-variance point.")] =
    4_000,
    quick: Annotated[bool, typer.Option("--quick", help="A small preview (seconds), ignoring the size options.")] =
    False,
    sweep_dir: Annotated[Path | None, typer.Option("--sweep", help="A `cures sweep` output directory: add its "
                                                   "regime map to the report.")] = None,
):
    """Write every figure of the theory and the comparisons, and a self-contained report."""
    from cures.analysis.report import ReportSizes, build_report
    from cures.simulator.config import load_scenario

    load_scenario(scenario)
    for name, value in (("--n-prompts", n_prompts), ("--seeds", seeds), ("--steps", steps), ("--mc-reps", mc_reps)):
        if value < (2 if name in ("--seeds", "--mc-reps") else 1):
            fail(f"{name} must be at least {2 if name in ('--seeds', '--mc-reps') else 1}; got {value}")
    if mc_reps > 10_000_000:
        fail(f"--mc-reps must be at most 10,000,000 (Monte Carlo replicates per point); got {mc_reps:,}")
    check_output_dir(out, "--out")
    sizes = ReportSizes.quick() if quick else ReportSizes(scenario, n_prompts, seeds, steps, seeds, mc_reps)
    sizes.scenario = scenario
    if sweep_dir is not None:
        from cures.simulator.sweep import read_finished_sweep

        read_finished_sweep(sweep_dir)  # checked before minutes of figures
        sizes.sweep = str(sweep_dir)
    from cures.analysis.report import FIGURES

    bar, task = progress_bar(len(FIGURES), "simulating and drawing figures")
    with bar:
        files = build_report(out, sizes, progress=lambda name: bar.advance(task))
    console.print(f"wrote {len(files)} files to {out} (open {out / 'report.html'})", highlight=False)
