"""`cures sweep` (a grid of comparisons and its regime map) and `cures reconcile` (the accountings side by side)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

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
def sweep(
    grid: Annotated[list[str] | None, typer.Option("--grid", help="KEY=V1,V2,... (repeatable): a setting of "
                                                   "`--set`, or policy.PARAM for every policy that has it; "
                                                   "KEY=[...] as a TOML array for values with commas.")] = None,
    grid_file: Annotated[str | None, typer.Option("--grid-file", help="A grid TOML file (\\[grid], \\[settings], "
                                                  "policies, scenario, match) or a named one: regimes.")] = None,
    policies: Annotated[str | None, typer.Option("--policies", help="Comma-separated policies, the baseline "
                                                 "first (default grpo,cures, or the grid file's).")] = None,
    scenario: ScenarioOpt = None,
    seeds: Annotated[int | None, SIM_OPTIONS["seeds"]] = None,
    set_: SetOpt = None,
    match: Annotated[str | None, typer.Option("--match", help="rollouts, steps or compute (as `compare`).")] = None,
    jobs: Annotated[int | None, typer.Option("--jobs", help="Cells run at once (default: 2 processes; with Ray, "
                                             "as many as the cluster has CPUs).")] = None,
    executor: Annotated[str, typer.Option("--executor", help="processes (on this machine) or ray (Ray tasks on "
                                          "a local Ray, or the cluster of --address / RAY_ADDRESS; needs "
                                          "cures[ray] on every node).")] = "processes",
    address: Annotated[str | None, typer.Option("--address", help="With --executor ray: the cluster's head, "
                                                "HOST:PORT, ray://HOST:PORT or auto.")] = None,
    out: Annotated[Path, typer.Option("--out", help="Results directory; cells already in it are not run again.")] =
    Path("sweep-out"),
):
    """Run `compare` over a grid of settings in parallel processes or on Ray (resumable); write one tidy table (cell x
    policy x seed, CSV and Parquet) and the regime map (each cell's speed-ups over the baseline, its best policy)."""
    from cures.analysis.regime import regime_plot
    from cures.simulator.config import parse_overrides
    from cures.simulator.sweep import Sweep, load_grid_file, parse_grid_option, run_sweep

    spec = load_grid_file(grid_file) if grid_file else {}
    axes = dict(spec.get("grid", {}))
    given = set()
    for text in grid or []:
        key, values = parse_grid_option(text)
        if key in given:
            fail(f"--grid {key} is given twice; list every value once: --grid {key}=V1,V2,...")
        given.add(key)
        axes[key] = values  # the command line's axis replaces the grid file's
    settings, policy_params = parse_overrides(set_ or [])
    settings = {**spec.get("settings", {}), **settings}
    policy_params = {**spec.get("policy_settings", {}), **policy_params}
    if seeds is not None:
        settings["seeds"] = seeds
    names = [p.strip() for p in policies.split(",") if p.strip()] if policies else spec.get("policies",
                                                                                            ["grpo", "cures"])
    if jobs is not None and not 1 <= jobs <= 256:
        fail(f"--jobs must be between 1 and 256; got {jobs}")
    plan = Sweep(grid=axes, policies=names, scenario=scenario or spec.get("scenario"), settings=settings,
                 match=match or spec.get("match", "rollouts"), policy_settings=policy_params).validate()
    check_output_dir(out, "--out")
    bar, task = progress_bar(len(plan.cells()), "sweep cells")
    with bar:
        info = run_sweep(plan, out, jobs, progress=lambda done, total: bar.update(task, completed=done),
                         draw=regime_plot, executor=executor, address=address)
    console.print(Path(out / "regime_map.md").read_text(), markup=False, highlight=False, soft_wrap=True)
    if info["cells_rerun"]:
        err_console.print(f"note: {info['cells_rerun']} cells ran again: their saved results in {out}/cells were "
                          "damaged", highlight=False, soft_wrap=True)
    console.print(f"{info['cells']} cells ({info['cells_reused']} already done), {info['runs']} runs, "
                  f"{info['wall_seconds']:.0f} s; wrote {out}/sweep.csv, sweep.parquet, regime_map.* and sweep.json",
                  highlight=False)


@app.command()
@user_errors
def reconcile(
    policies: Annotated[str, typer.Option("--policies", help="Comma-separated policies, the baseline first.")] =
    "grpo,cures,cures-paper,cures-released,dapo,speed",
    scenario: Annotated[str, typer.Option("--scenario", help="Named scenario or a .toml file.")] = "paper-1.5b",
    n_prompts: Annotated[int | None, SIM_OPTIONS["n_prompts"]] = None,
    steps: Annotated[int | None, SIM_OPTIONS["steps"]] = None,
    seeds: Annotated[int | None, SIM_OPTIONS["seeds"]] = None,
    set_: SetOpt = None,
    out: Annotated[Path | None, typer.Option("--out", help="Write reconcile.md/.csv/.parquet/.json here.")] = None,
):
    """The paper's accounting beside ours: the same policies at equal steps and at equal rollouts, with each one's
    rollouts per step (the released code's x4) and the rollouts it generates without training on them."""
    from cures.analysis import reconcile as rec
    from cures.policies import get_spec

    names = [p.strip() for p in policies.split(",") if p.strip()]
    if len(names) < 2 or len(set(names)) != len(names):
        fail("--policies needs at least two distinct policy names, the baseline first")
    for name in names:
        get_spec(name)
    cfg = sim_config(scenario, n_prompts, steps, None, None, seeds, None, None, None, None, None, None, set_)
    if out is not None:
        check_output_dir(out, "--out")
    bar, task = progress_bar(cfg.steps * cfg.seeds * len(names) * 2)
    with bar:
        result = rec.reconcile(cfg, names, progress=lambda k: bar.advance(task, min(k, cfg.steps)))
    console.print(rec.markdown(result), markup=False, highlight=False, soft_wrap=True)
    if out is not None:
        from cures._io import staged_outputs
        from cures.simulator.output import write_json, write_table

        with staged_outputs(out, "reconcile.json") as stage:
            (stage / "reconcile.md").write_text(rec.markdown(result))
            write_table(stage / "reconcile", rec.frame(result))
            write_json(stage / "reconcile.json", {k: v for k, v in result.items() if k not in ("steps", "rollouts")}
                       | {"config": cfg.to_dict()})
        console.print(f"wrote {out}/reconcile.md, .csv, .parquet and .json", highlight=False)


@app.command()
@user_errors
def calibrate(
    run: Annotated[list[Path], typer.Option("--run", help="A `cures train` output directory with per-prompt records "
                                            "(rollouts.parquet); repeatable, all of one policy.")],
    profile: Annotated[Path, typer.Option("--profile", help="A `cures profile` output directory (or its "
                                          "pass_rates.csv): the initial pass rates.")],
    out: Annotated[Path, typer.Option("--out", help="The scenario file to write; calibration.json and "
                                      "calibration.png go beside it.")] = Path("calibrated.toml"),
    sim_seeds: Annotated[int, typer.Option("--sim-seeds", min=2, help="Simulated seeds per evaluation of the "
                                           "fit (common random numbers).")] = 16,
    max_iter: Annotated[int, typer.Option("--max-iter", min=1, help="Nelder-Mead iterations per structural "
                                          "mode.")] = 80,
):
    """Fit the simulator's learning settings (lr, tabular or shared-skill dimension, unlearnable share,
    discrimination spread) to real runs' per-step reward and zero-variance fraction, the initial pass rates taken
    from a profile; writes a scenario file that simulate, compare and sweep take (--scenario FILE)."""
    import json

    from cures._io import atomic_write_text
    from cures.analysis.calibration import calibration_figure
    from cures.simulator.calibrate import MODES, calibration_json, observed_runs, read_profile, scenario_toml
    from cures.simulator.calibrate import calibrate as fit_runs
    from cures.simulator.calibrate import empirical_bayes_pass_rates as prior_pass_rates

    if out.suffix != ".toml":
        fail(f"--out {out}: the scenario file must end in .toml")
    check_output_dir(out.parent if str(out.parent) else Path("."), "--out")
    observed = observed_runs(run)
    pass_rates = prior_pass_rates(read_profile(profile), out.with_name(f"{out.stem}_pass_rates.csv"))
    bar, task = progress_bar(len(MODES) * (max_iter + 4), "fitting the simulator")
    with bar:
        fit = fit_runs(observed, pass_rates, sim_seeds=sim_seeds, max_iter=max_iter,
                       progress=lambda: bar.advance(task))
    result = calibration_json(fit)
    description = (f"Calibrated by cures calibrate on {len(run)} {observed.policy} run(s); initial pass rates from "
                   f"{pass_rates}")
    atomic_write_text(out, scenario_toml(fit, description))
    atomic_write_text(out.with_name("calibration.json"), json.dumps(result, indent=2) + "\n")
    calibration_figure(out.with_name("calibration.png"), result)
    s = result["settings"]
    mode = s["mode"] if s["mode"] == "tabular" else f"irt dim={s['dim']}"
    console.print(f"fitted: mode={mode} lr={s['lr']:.4g} unlearnable={s['unlearnable']:.3f} "
                  f"a_spread={s['a_spread']:.3f} (loss {result['loss']:.1f} on {result['dof']} degrees of freedom)",
                  highlight=False)
    for y in ("train_reward", "zero_variance_fraction"):
        console.print(f"{y}: RMSE fitted vs observed {result[y]['rmse']:.4f}", highlight=False)
    console.print(f"wrote {out}, {out.with_name('calibration.json')} and {out.with_name('calibration.png')}",
                  highlight=False)
