"""`cures bench`: the engine's seconds per step and memory, or two policies' cost ratio."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cures._io import check_output_dir
from cures.cli._app import ScenarioOpt, app, console, fail, user_errors


@app.command()
@user_errors
def bench(
    policy: Annotated[str, typer.Option("--policy", help="Policy to step.")] = "cures",
    scenario: ScenarioOpt = None,
    sizes: Annotated[str, typer.Option("--sizes", help="Comma-separated prompt counts.")] = "10000,1000000",
    prompts_per_step: Annotated[int | None, typer.Option("--prompts-per-step", help="Prompts per step (default: the "
                                                   "scenario's).")] = None,
    rollouts_per_step: Annotated[int | None, typer.Option("--rollouts-per-step", help="Rollouts per step (default: the "
                                                          "scenario's).")] =
    None,
    versus: Annotated[str | None, typer.Option("--versus", help="Instead: time the engine's steps of --policy "
                                               "and of this policy alternately, at the first size, and print the "
                                               "cost ratio (median per repeat, and of the fastest repeats).")] = None,
    repeats: Annotated[int | None, typer.Option("--repeats", min=1, help="Rounds, each measuring every "
                                                "implementation (or both policies with --versus) once, alternately; "
                                                "medians are shown. Default 3 (7 with --versus).")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Also write bench.csv, bench.parquet, bench.json and "
                                             "bench.png (seconds per step and peak memory against prompts) here.")]
    = None,
):
    """Time the compiled engine against two NumPy references (per rollout, and vectorised over the batch), side by
    side, and print the ratios; or, with --versus, one policy's engine steps against another's."""
    from cures.policies import get_spec
    from cures.simulator.bench import compare_policies, ratios, run_bench
    from cures.simulator.config import load_scenario

    get_spec(policy)
    if versus is not None:
        get_spec(versus)
    load_scenario(scenario)
    try:
        ns = tuple(int(s) for s in sizes.split(","))
    except ValueError:
        fail(f"--sizes must be comma-separated integers; got {sizes!r}")
    if min(ns) < 1:
        fail(f"--sizes must be prompt counts of at least 1; got {sizes!r}")
    shape = {k: v for k, v in (("prompts_per_step", prompts_per_step), ("rollouts_per_step",
                                                                        rollouts_per_step)) if v is not None}
    if shape:
        from cures.simulator.config import build_config
        from cures.simulator.run import policy_for

        for name in (policy, versus or policy):  # a shape a policy cannot run fails here, in one line
            policy_for(name, build_config(scenario, shape))
    if out is not None:
        if versus is not None:
            fail("--out writes the size table; it does not go with --versus")
        check_output_dir(out, "--out")
    if versus is not None:
        r = compare_policies(policy, versus, scenario, ns[0], repeats=repeats or 7, prompts_per_step=prompts_per_step,
                             rollouts_per_step=rollouts_per_step)
        for name in (policy, versus):
            us = ", ".join(f"{1e6 * t:.2f}" for t in r["seconds_per_step"][name])
            console.print(f"{name}: us per step {us}", highlight=False)
        console.print(f"{policy} / {versus} per step: median {r['median_ratio']:.2f} (per repeat "
                      f"{', '.join(f'{x:.2f}' for x in r['ratios'])}); fastest repeats {r['min_ratio']:.2f}",
                      highlight=False)
        return
    results = run_bench(policy, scenario, ns, prompts_per_step=prompts_per_step, rollouts_per_step=rollouts_per_step,
                        repeats=repeats or 3)
    table = Table(title=f"engine vs reference ({policy}), medians of {repeats or 3} alternating rounds")
    for col in ("prompts", "implementation", "steps/s", "s/step", "setup s", "peak RSS MB"):
        table.add_column(col)
    for r in results:
        table.add_row(f"{r['n_prompts']:,}", r["which"], f"{r['steps_per_second']:,.0f}",
                      f"{r['seconds_per_step']:.2e}", f"{r['setup_seconds']:.3f}", f"{r['peak_rss_mb']:.0f}")
    console.print(table)
    for key, value in ratios(results).items():
        console.print(f"{key}: {value:.2f}", highlight=False)
    if out is not None:
        from cures.simulator.output import write_bench

        title = (f"{policy}: {prompts_per_step or 'scenario'} prompts and {rollouts_per_step or 'scenario'} rollouts "
                 "per step")
        for path in write_bench(out, results, ratios(results), title):
            console.print(f"wrote {path}", highlight=False)
