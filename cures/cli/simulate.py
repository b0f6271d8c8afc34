"""`cures simulate` and `cures compare`: one policy, or several at an equal budget, in the simulator."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cures._io import check_output_dir
from cures.cli._app import (
    SIM_OPTIONS,
    ScenarioOpt,
    SetOpt,
    app,
    console,
    fail,
    progress_bar,
    sim_config,
    user_errors,
)


@app.command()
@user_errors
def simulate(
    policy: Annotated[str, typer.Option("--policy", help="Policy name (see `cures policies`).")] = "cures",
    n_prompts: Annotated[int | None, SIM_OPTIONS["n_prompts"]] = None,
    steps: Annotated[int | None, SIM_OPTIONS["steps"]] = None,
    batch_size: Annotated[int | None, SIM_OPTIONS["batch_size"]] = None,
    budget: Annotated[int | None, SIM_OPTIONS["budget"]] = None,
    seeds: Annotated[int | None, SIM_OPTIONS["seeds"]] = None,
    seed: Annotated[int | None, SIM_OPTIONS["seed"]] = None,
    init_pass_rate: Annotated[str | None, SIM_OPTIONS["init_pass_rate"]] = None,
    scenario: ScenarioOpt = None,
    estimator: Annotated[str | None, SIM_OPTIONS["estimator"]] = None,
    threads: Annotated[int | None, SIM_OPTIONS["threads"]] = None,
    eval_every: Annotated[int | None, SIM_OPTIONS["eval_every"]] = None,
    max_rollouts: Annotated[int | None, SIM_OPTIONS["max_rollouts"]] = None,
    set_: SetOpt = None,
    out: Annotated[Path | None, typer.Option("--out", help="Write summary.json, curves.csv, pass_rates.csv and "
                                             "curves.png here.")] = None,
):
    """Simulate RL training with one policy on synthetic prompts; print a summary (and write files with --out)."""
    from cures.simulator.output import ci_text
    from cures.simulator.run import simulate as run_simulation

    cfg = sim_config(scenario, n_prompts, steps, batch_size, budget, seeds, seed, init_pass_rate, estimator,
                      threads, eval_every, max_rollouts, set_)
    if out is not None:
        check_output_dir(out, "--out")
    bar, task = progress_bar(cfg.steps * cfg.seeds)
    with bar:
        summary, runs = run_simulation(policy, cfg, progress=lambda k: bar.advance(task, k))
    table = Table(title=f"{policy}: {cfg.n_prompts:,} prompts, {cfg.seeds} seeds, {summary['steps']:.0f} steps")
    table.add_column("metric", style="bold")
    table.add_column("mean  [95% CI]")
    for key in ("final_train_accuracy", "final_heldout_accuracy", "peak_heldout_accuracy", "zero_variance_fraction",
                "first_step_zero_variance_fraction"):
        table.add_row(key.replace("_", " "), ci_text(summary[key], 4, "  "))
    table.add_row("rollouts", f"{summary['rollouts_total']:,.0f}")
    table.add_row("wall seconds", f"{summary['wall_seconds']:.2f}")
    console.print(table)
    if out is not None:
        from cures.simulator.output import write_simulation

        for path in write_simulation(out, summary, runs):
            console.print(f"wrote {path}", highlight=False)


@app.command()
@user_errors
def compare(
    policies: Annotated[str, typer.Option("--policies", help="Comma-separated policies, the baseline first.")] =
    "grpo,cures",
    n_prompts: Annotated[int | None, SIM_OPTIONS["n_prompts"]] = None,
    steps: Annotated[int | None, SIM_OPTIONS["steps"]] = None,
    batch_size: Annotated[int | None, SIM_OPTIONS["batch_size"]] = None,
    budget: Annotated[int | None, SIM_OPTIONS["budget"]] = None,
    seeds: Annotated[int | None, SIM_OPTIONS["seeds"]] = None,
    seed: Annotated[int | None, SIM_OPTIONS["seed"]] = None,
    init_pass_rate: Annotated[str | None, SIM_OPTIONS["init_pass_rate"]] = None,
    scenario: ScenarioOpt = None,
    estimator: Annotated[str | None, SIM_OPTIONS["estimator"]] = None,
    threads: Annotated[int | None, SIM_OPTIONS["threads"]] = None,
    eval_every: Annotated[int | None, SIM_OPTIONS["eval_every"]] = None,
    set_: SetOpt = None,
    match: Annotated[str, typer.Option("--match", help="What every policy gets as much of as the baseline: "
                                       "rollouts (generated), steps, or compute (generated + train_cost x trained "
                                       "rollouts; --set train_cost=C, default 1).")] = "rollouts",
    out: Annotated[Path, typer.Option("--out", help="Write comparison.json/.md/.csv/.parquet, seeds.csv/.parquet, "
                                      "curves.csv/.parquet and comparison.png here.")] = Path("compare-out"),
):
    """Run several policies on the same scenario and seeds, matched to the baseline in rollouts, steps or compute;
    report speed-ups to the baseline's peak counted all three ways, and ScaleRL curve fits."""
    from cures.policies import get_spec
    from cures.simulator.compare import MATCHES, markdown_table, write_comparison
    from cures.simulator.compare import compare as run_compare

    if match not in MATCHES:
        fail(f"--match must be one of {', '.join(MATCHES)}; got {match!r}")
    names = [p.strip() for p in policies.split(",") if p.strip()]
    for name in names:
        get_spec(name)
    cfg = sim_config(scenario, n_prompts, steps, batch_size, budget, seeds, seed, init_pass_rate, estimator,
                      threads, eval_every, None, set_)
    check_output_dir(out, "--out")
    bar, task = progress_bar(cfg.steps * cfg.seeds * len(names))
    with bar:
        result, runs = run_compare(names, cfg, progress=lambda k: bar.advance(task, min(k, cfg.steps)), match=match)
    console.print(markdown_table(result), markup=False, highlight=False, soft_wrap=True)
    for path in write_comparison(out, result, runs, cfg):
        console.print(f"wrote {path}", highlight=False)
