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
    err_console,
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
    prompts_per_step: Annotated[int | None, SIM_OPTIONS["prompts_per_step"]] = None,
    rollouts_per_step: Annotated[int | None, SIM_OPTIONS["rollouts_per_step"]] = None,
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

    cfg = sim_config(scenario, n_prompts, steps, prompts_per_step, rollouts_per_step, seeds, seed, init_pass_rate,
                     estimator,
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
                "first_step_zero_variance_fraction"):  # peak_accuracy (of the accuracy metric) is in summary.json
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
    prompts_per_step: Annotated[int | None, SIM_OPTIONS["prompts_per_step"]] = None,
    rollouts_per_step: Annotated[int | None, SIM_OPTIONS["rollouts_per_step"]] = None,
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
    cfg = sim_config(scenario, n_prompts, steps, prompts_per_step, rollouts_per_step, seeds, seed, init_pass_rate,
                     estimator,
                      threads, eval_every, None, set_)
    check_output_dir(out, "--out")
    bar, task = progress_bar(cfg.steps * cfg.seeds * len(names))
    with bar:
        result, runs = run_compare(names, cfg, progress=lambda k: bar.advance(task, min(k, cfg.steps)), match=match)
    console.print(markdown_table(result), markup=False, highlight=False, soft_wrap=True)
    for path in write_comparison(out, result, runs, cfg):
        console.print(f"wrote {path}", highlight=False)


@app.command()
@user_errors
def recommend(
    profile: Annotated[Path, typer.Option("--profile", help="A `cures profile` output directory (or its "
                                          "pass_rates.csv): your model's pass rates on your prompts.")],
    rollouts_per_step: Annotated[int, typer.Option("--rollouts-per-step", min=1, help="Rollouts per step N.")],
    prompts_per_step: Annotated[int, typer.Option("--prompts-per-step", min=1, help="Prompts per step m.")],
    steps: Annotated[int | None, typer.Option("--steps", min=1, help="Steps of the baseline (default: the "
                                              "scenario's, or 3 passes over the prompts).")] = None,
    passes: Annotated[float | None, typer.Option("--passes", min=0.0, help="Passes over the prompts instead of "
                                                 "--steps.")] = None,
    scenario: ScenarioOpt = None,
    policies: Annotated[str | None, typer.Option("--policies", help="Comma-separated policies to rank, grpo first "
                                                 "(default: every policy).")] = None,
    seeds: Annotated[int, typer.Option("--seeds", min=2, help="Simulated seeds per policy.")] = 8,
    validation: Annotated[Path | None, typer.Option("--validation", help="A validation.json of `python -m "
                                                    "cures.analysis.sim_to_real report`: its prediction error is "
                                                    "printed as the caveat.")] = None,
):
    """Which policy to train with, for your model and prompts: every policy simulated on the profiled population at
    grpo's rollouts (a calibrated scenario from `cures calibrate` when given), ranked by predicted speed-up to
    grpo's peak, with 95% intervals over seeds."""
    import json

    import numpy as np

    from cures.policies import available, get_spec
    from cures.simulator.calibrate import read_profile
    from cures.simulator.compare import compare as run_compare
    from cures.simulator.config import build_config
    from cures.simulator.output import ci_text, speedup_text
    from cures.simulator.run import policy_for

    if steps is not None and passes is not None:
        fail("--steps and --passes say the same thing: give one")
    pass_rates = read_profile(profile)
    names = [n for n in (policies.split(",") if policies else ["grpo", *[p for p in available() if p != "grpo"]])
             if n]
    for name in names:
        get_spec(name)
    if names[0] != "grpo":
        names = ["grpo", *[n for n in names if n != "grpo"]]
    settings = {"init_pass_rate": str(pass_rates), "prompts_per_step": prompts_per_step,
                "rollouts_per_step": rollouts_per_step,
                "seeds": seeds}
    n_prompts = sum(1 for _ in pass_rates.open()) - 1
    settings["n_prompts"] = n_prompts
    if steps is not None:
        settings["steps"] = steps
    else:
        settings["passes"] = passes if passes is not None else 3.0
    cfg = build_config(scenario, settings)
    bar, task = progress_bar(len(names) * cfg.seeds * cfg.steps, "simulating policies")
    usable = []
    for name in names:  # a policy that cannot run this shape (a pool too small for it) is named, not fatal
        try:
            policy_for(name, cfg).kernel_params(cfg.n_prompts)
            usable.append(name)
        except ValueError as exc:
            err_console.print(f"note: {name} left out: {str(exc).splitlines()[0]}", highlight=False)
    with bar:
        result, _ = run_compare(usable, cfg, progress=lambda k: bar.advance(task, k), match="rollouts", fits=False)
    def score(r):
        return r["speedup_rollouts"] if np.isfinite(r["speedup_rollouts"]) else -np.inf

    rows = sorted(result["policies"][1:], key=lambda r: -score(r))
    table = Table(title=f"{n_prompts} profiled prompts, m = {prompts_per_step}, N = {rollouts_per_step}, {cfg.steps} "
                  f"grpo "
                        f"steps, {cfg.seeds} seeds ({'calibrated: ' + scenario if scenario else 'default dynamics'})")
    table.add_column("policy", style="bold")
    table.add_column("speed-up to grpo's peak at equal rollouts [95% CI]")
    table.add_column("final accuracy [95% CI]")
    for r in rows:
        table.add_row(r["policy"], speedup_text(r["speedup_rollouts"], *r["speedup_rollouts_ci"]),
                      ci_text(r["final_accuracy"]))
    console.print(table)
    best = rows[0] if rows else None
    if best is not None and np.isfinite(best["speedup_rollouts"]) and best["speedup_rollouts_ci"][0] > 1.0:
        console.print(f"recommended: {best['policy']} at its default parameters (`cures policies {best['policy']}`); "
                      f"predicted {speedup_text(best['speedup_rollouts'], *best['speedup_rollouts_ci'])} grpo's "
                      "speed to its peak, at equal rollouts", highlight=False)
    else:
        console.print("recommended: grpo (no policy is predicted faster with an interval above 1)", highlight=False)
    if validation is not None:
        try:
            v = json.loads(Path(validation).read_text())
            errors = {p: r["train_reward"]["error"] for p, r in v["policies"].items()}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            fail(f"--validation {validation}: not a validation.json ({type(exc).__name__})")
        worst = max(errors.values(), key=abs)
        console.print(f"caveat: on the validation runs the calibrated simulator's per-step reward was off by up to "
                      f"{worst:+.3f} (per policy: {', '.join(f'{p} {e:+.3f}' for p, e in errors.items())}); its "
                      f"ranking {'matched' if v['summary']['rankings_match'] else 'did not match'} the observed one",
                      highlight=False)
    else:
        console.print("caveat: these are simulator predictions; see the README's validation table for how well "
                      "they held on real runs", highlight=False)
