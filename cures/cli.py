"""The `cures` command line. Heavy subsystems (simulator, analysis, backends) are imported inside their commands."""

from __future__ import annotations

import functools
import os
import sys
import threading
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

import cures
from cures._io import check_output_dir


class OneLineUsageErrors(typer.Typer):
    """typer.Typer whose usage errors (an unknown option, a value of the wrong type, a bad choice) end in one line
    naming the option and the value, exit 2, instead of a framed block."""

    def __call__(self, *args, **kwargs):
        if "standalone_mode" in kwargs:
            return super().__call__(*args, **kwargs)
        try:  # typer vendors click from 0.2x on; older typer uses click itself
            from typer._click.exceptions import ClickException, NoArgsIsHelpError
            from typer.exceptions import Abort
        except ImportError:  # pragma: no cover
            from click.exceptions import Abort, ClickException, NoArgsIsHelpError

        try:
            code = super().__call__(*args, standalone_mode=False, **kwargs)
        except NoArgsIsHelpError as exc:
            console.print(exc.ctx.get_help(), highlight=False, markup=False)
            sys.exit(exc.exit_code)
        except ClickException as exc:
            ctx = getattr(exc, "ctx", None)
            where = f" (see {ctx.command_path} --help)" if ctx is not None else ""
            err_console.print(_error_line(f"{exc.format_message()}{where}"), highlight=False, soft_wrap=True)
            sys.exit(exc.exit_code)
        except Abort:
            err_console.print(_error_line("interrupted"), highlight=False)
            sys.exit(130)
        sys.exit(code if isinstance(code, int) else 0)


app = OneLineUsageErrors(
    name="cures",
    help="CurES curriculum policies for RL on verifiable rewards: sample prompts by rho* and allocate rollouts by "
    "sigma (arXiv 2510.01037).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# No markup, no emoji codes: what is printed holds user text (paths, values, file contents) that must appear as
# typed; "[/]" in it would otherwise raise rich's MarkupError, "[red]" would vanish and ":fire:" become an emoji.
# Styles come from Text objects.
console = Console(markup=False, emoji=False)
err_console = Console(stderr=True, markup=False, emoji=False)


def _error_line(message: str) -> Text:
    return Text.assemble(("error:", "bold red"), " ", message)


def fail(message: str, code: int = 2):
    """Print a one-line error and exit with `code`."""
    err_console.print(_error_line(message), highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def user_errors(fn):
    """Turn the library's ValueError (bad input) into a one-line error and exit code 2, and Ctrl-C into
    "interrupted" and exit code 130; never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (ValueError, FileNotFoundError) as exc:
            fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        except KeyboardInterrupt:
            if threading.active_count() > 1:
                # a worker thread inside a chunk of compiled steps, or compiling a kernel (minutes on a first run),
                # would hold the interpreter's exit until it finishes; results are staged, so nothing is lost
                err_console.print(_error_line("interrupted"), highlight=False)
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(130)
            fail("interrupted", code=130)
        except MemoryError as exc:
            fail(f"out of memory ({exc or 'allocation failed'}); choose smaller sizes")

    return wrapper


def _version(value: bool):
    if value:
        console.print(f"cures {cures.__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", help="Print the version and exit.", callback=_version, is_eager=True)
    ] = False,
):
    """CurES toolkit."""


def _fmt(value) -> str:
    if value is None:
        return "none"
    if isinstance(value, tuple):
        return ",".join(f"{v:g}" for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


@app.command()
@user_errors
def policies(
    name: Annotated[str | None, typer.Argument(help="Show one policy in full: its rule and every parameter.")] = None,
):
    """List every policy: name, one-line description, parameters with defaults."""
    from cures.policies import available, get_spec

    if name is None:
        table = Table(title="cures policies", show_lines=True)
        table.add_column("policy", style="bold cyan", no_wrap=True)
        table.add_column("description")
        table.add_column("parameters (defaults)")
        for n in available():
            spec = get_spec(n)
            params = "\n".join(f"{p.name}={p.display or _fmt(p.default)}" for p in spec.params)
            table.add_row(n, spec.summary, params)
        console.print(table)
        console.print(Text.assemble("Details: ", ("cures policies NAME", "bold")))
        return
    spec = get_spec(name)
    console.print(Text.assemble((spec.name, "bold cyan"), f": {spec.summary}\n"), highlight=False)
    console.print(spec.doc.strip(), highlight=False, markup=False, soft_wrap=True)
    console.print(f"\nloss weighting: {spec.loss_weighting}")
    table = Table(title=f"{spec.name} parameters")
    table.add_column("parameter", style="bold", no_wrap=True)
    table.add_column("default", no_wrap=True)
    table.add_column("meaning")
    for p in spec.params:
        table.add_row(p.name, p.display or _fmt(p.default), p.help)
    console.print(table)


# ----------------------------------------------------------------------------------------------------------------
# Simulator commands (the simulator package is imported inside them)
# ----------------------------------------------------------------------------------------------------------------

ScenarioOpt = Annotated[str | None, typer.Option("--scenario", help="Named scenario (see `cures scenarios`) or a "
                                                 ".toml file.")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="Override a setting: key=value, or policy.PARAM=value;"
                                                  " repeatable.")]


def _sim_config(scenario, n_prompts, steps, batch_size, budget, seeds, seed, init_pass_rate, estimator, threads,
                eval_every, max_rollouts, sets):
    from cures.simulator.config import build_config, parse_overrides

    explicit = {k: v for k, v in {
        "n_prompts": n_prompts, "steps": steps, "batch_size": batch_size, "budget": budget, "seeds": seeds,
        "seed": seed, "init_pass_rate": init_pass_rate, "estimator": estimator, "threads": threads,
        "eval_every": eval_every, "max_rollouts": max_rollouts}.items() if v is not None}
    settings, policy = parse_overrides(sets or [])
    settings.update(explicit)
    return build_config(scenario, settings, policy)


def _progress(total: int, what: str = "simulating steps"):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(TextColumn("{task.description}", style="progress.description", markup=False), BarColumn(),
                   MofNCompleteColumn(), TimeElapsedColumn(), console=err_console, transient=True,
                   disable=not err_console.is_terminal)
    return bar, bar.add_task(what, total=total)


SIM_OPTIONS = dict(
    n_prompts=typer.Option("--n-prompts", help="Training prompts N."),
    steps=typer.Option("--steps", help="Training steps."),
    batch_size=typer.Option("--batch-size", help="Prompts per step m."),
    budget=typer.Option("--budget", help="Rollouts per step N (policies with a budget; fixed-n ones get n = "
                        "budget / batch size)."),
    seeds=typer.Option("--seeds", help="Independent seeds (run in parallel threads)."),
    seed=typer.Option("--seed", help="First seed."),
    init_pass_rate=typer.Option("--init-pass-rate", help="Initial pass rates: beta:A,B; uniform; "
                                "beta:A,B+zero:W0+one:W1; or a counts file (.json counters or .csv)."),
    estimator=typer.Option("--estimator", help="grpo, drgrpo, rloo or reinforce++."),
    threads=typer.Option("--threads", help="Worker threads for the seeds."),
    eval_every=typer.Option("--eval-every", help="Evaluate every this many steps."),
    max_rollouts=typer.Option("--max-rollouts", help="Stop each seed at this many rollouts."),
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

    cfg = _sim_config(scenario, n_prompts, steps, batch_size, budget, seeds, seed, init_pass_rate, estimator,
                      threads, eval_every, max_rollouts, set_)
    if out is not None:
        check_output_dir(out, "--out")
    bar, task = _progress(cfg.steps * cfg.seeds)
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
    cfg = _sim_config(scenario, n_prompts, steps, batch_size, budget, seeds, seed, init_pass_rate, estimator,
                      threads, eval_every, None, set_)
    check_output_dir(out, "--out")
    bar, task = _progress(cfg.steps * cfg.seeds * len(names))
    with bar:
        result, runs = run_compare(names, cfg, progress=lambda k: bar.advance(task, min(k, cfg.steps)), match=match)
    console.print(markdown_table(result), markup=False, highlight=False, soft_wrap=True)
    for path in write_comparison(out, result, runs, cfg):
        console.print(f"wrote {path}", highlight=False)


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
    jobs: Annotated[int, typer.Option("--jobs", help="Cells run at once, each in its own process.")] = 2,
    out: Annotated[Path, typer.Option("--out", help="Results directory; cells already in it are not run again.")] =
    Path("sweep-out"),
):
    """Run `compare` over a grid of settings in parallel processes (resumable); write one tidy table (cell x policy x
    seed, CSV and Parquet) and the regime map (each cell's speed-ups over the baseline, its best policy)."""
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
    if jobs < 1 or jobs > 256:
        fail(f"--jobs must be between 1 and 256; got {jobs}")
    plan = Sweep(grid=axes, policies=names, scenario=scenario or spec.get("scenario"), settings=settings,
                 match=match or spec.get("match", "rollouts"), policy_settings=policy_params).validate()
    check_output_dir(out, "--out")
    bar, task = _progress(len(plan.cells()), "sweep cells")
    with bar:
        info = run_sweep(plan, out, jobs, progress=lambda done, total: bar.update(task, completed=done))
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
    cfg = _sim_config(scenario, n_prompts, steps, None, None, seeds, None, None, None, None, None, None, set_)
    if out is not None:
        check_output_dir(out, "--out")
    bar, task = _progress(cfg.steps * cfg.seeds * len(names) * 2)
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
def bench(
    policy: Annotated[str, typer.Option("--policy", help="Policy to step.")] = "cures",
    scenario: ScenarioOpt = None,
    sizes: Annotated[str, typer.Option("--sizes", help="Comma-separated prompt counts.")] = "10000,1000000",
    batch_size: Annotated[int | None, typer.Option("--batch-size", help="Prompts per step (default: the "
                                                   "scenario's).")] = None,
    budget: Annotated[int | None, typer.Option("--budget", help="Rollouts per step (default: the scenario's).")] =
    None,
    versus: Annotated[str | None, typer.Option("--versus", help="Instead: time the engine's steps of --policy "
                                               "and of this policy alternately, at the first size, and print the "
                                               "cost ratio (median per repeat, and of the fastest repeats).")] = None,
    repeats: Annotated[int | None, typer.Option("--repeats", min=1, help="Rounds, each measuring every "
                                                "implementation (or both policies with --versus) once, alternately; "
                                                "medians are shown. Default 3 (7 with --versus).")] = None,
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
    shape = {k: v for k, v in (("batch_size", batch_size), ("budget", budget)) if v is not None}
    if shape:
        from cures.simulator.config import build_config
        from cures.simulator.run import policy_for

        for name in (policy, versus or policy):  # a shape a policy cannot run fails here, in one line
            policy_for(name, build_config(scenario, shape))
    if versus is not None:
        r = compare_policies(policy, versus, scenario, ns[0], repeats=repeats or 7, batch_size=batch_size,
                             budget=budget)
        for name in (policy, versus):
            us = ", ".join(f"{1e6 * t:.2f}" for t in r["seconds_per_step"][name])
            console.print(f"{name}: us per step {us}", highlight=False)
        console.print(f"{policy} / {versus} per step: median {r['median_ratio']:.2f} (per repeat "
                      f"{', '.join(f'{x:.2f}' for x in r['ratios'])}); fastest repeats {r['min_ratio']:.2f}",
                      highlight=False)
        return
    results = run_bench(policy, scenario, ns, batch_size=batch_size, budget=budget, repeats=repeats or 3)
    table = Table(title=f"engine vs reference ({policy}), medians of {repeats or 3} alternating rounds")
    for col in ("prompts", "implementation", "steps/s", "s/step", "setup s", "peak RSS MB"):
        table.add_column(col)
    for r in results:
        table.add_row(f"{r['n_prompts']:,}", r["which"], f"{r['steps_per_second']:,.0f}",
                      f"{r['seconds_per_step']:.2e}", f"{r['setup_seconds']:.3f}", f"{r['peak_rss_mb']:.0f}")
    console.print(table)
    for key, value in ratios(results).items():
        console.print(f"{key}: {value:.2f}", highlight=False)


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

    bar, task = _progress(len(FIGURES), "simulating and drawing figures")
    with bar:
        files = build_report(out, sizes, progress=lambda name: bar.advance(task))
    console.print(f"wrote {len(files)} files to {out} (open {out / 'report.html'})", highlight=False)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []},
             add_help_option=False)
@user_errors
def train(ctx: typer.Context):
    """Train with TRL's GRPOTrainer, a policy choosing prompts and rollouts per prompt. Takes what `trl grpo` takes:
    --config recipe.yaml and any script, GRPOConfig or ModelConfig field as --field value, plus --policy,
    --policy_params, --prompts_per_step, --rollouts_per_step (`cures train --help` lists them all)."""
    from cures.backends.trl.run import train as run_training

    summary = run_training(ctx.args)
    if not summary:  # not the main process of a multi-process run
        return
    for key in ("steps", "rollouts_total", "train_wall_seconds", "policy_share_of_train_time"):
        console.print(f"{key}: {summary[key]}", highlight=False)
    for entry in summary["evaluations"][-1:]:
        scores = {k: round(v, 4) for k, v in entry.items() if k == "eval_accuracy" or k.startswith("eval_avg_at_")}
        console.print(f"last evaluation (step {entry['step']}): {scores}", highlight=False)
    console.print(f"wrote {Path(summary['config']['output_dir']) / 'summary.json'} and metrics.jsonl",
                  highlight=False)


@app.command()
def scenarios():
    """List the named simulation scenarios."""
    from cures.simulator.config import SCENARIO_DIR, available_scenarios

    for name in available_scenarios():
        first = (SCENARIO_DIR / f"{name}.toml").read_text().splitlines()[0]
        console.print(Text.assemble((name, "bold"), f": {first.removeprefix('description = ').strip(chr(34))}"))


def run():  # pragma: no cover - console-script convenience
    sys.exit(app())


if __name__ == "__main__":  # pragma: no cover
    app()
