"""`cures train`: real training through a backend."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from cures.cli._app import app, console, err_console, progress_bar, user_errors

BACKENDS = ("trl", "verl")
VERL_MISSING = ("--backend verl needs verl, which this environment lacks: install it in an environment of its own "
                "with pip install 'cures[verl]' (verl 0.9.1 needs transformers<5.11; the train extra pins 5.24.0)")


def backend_of(argv: list[str]) -> str:
    """The backend named by `--backend NAME` / `--backend=NAME`, else by `backend:` in the `--config` recipe, else
    trl; an unknown or unavailable one is a ValueError naming the option and the choices."""
    name, where = None, "--backend"
    for i, token in enumerate(argv):
        if token == "--backend":
            if i + 1 >= len(argv) or argv[i + 1].startswith("--"):
                raise ValueError(f"--backend needs a value: one of {', '.join(BACKENDS)}")
            name = argv[i + 1]
        elif token.startswith("--backend="):
            name = token.split("=", 1)[1]
    if name is None and "--config" in argv[:-1]:
        name, where = _recipe_backend(argv[argv.index("--config") + 1])
    if name is None or name in BACKENDS:
        return name or BACKENDS[0]
    raise ValueError(f"{where}: unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")


def _recipe_backend(path: str) -> tuple[str | None, str]:
    """`backend:` of a YAML recipe; a recipe that cannot be read is left to the backend's parser to report."""
    import yaml

    try:
        with open(path) as fh:
            recipe = yaml.safe_load(fh)
    except (OSError, yaml.YAMLError):
        return None, ""
    value = recipe.get("backend") if isinstance(recipe, dict) else None
    return (None if value is None else str(value)), f"--config {path}: backend"


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []},
             add_help_option=False)
@user_errors
def train(ctx: typer.Context):
    """Train a model, a policy choosing prompts and rollouts per prompt. --backend trl (the default; TRL's
    GRPOTrainer) takes what `trl grpo` takes: --config recipe.yaml and any script, GRPOConfig or ModelConfig field as
    --field value, plus --policy, --policy_params, --prompts_per_step, --rollouts_per_step (`cures train --help`
    lists them all). --backend verl takes --config FILE (a Hydra config over verl's ppo_trainer, with a cures:
    section) and Hydra overrides key=value, as verl's main_ppo does; it needs the verl extra."""
    if backend_of(ctx.args) == "verl":  # an unknown backend fails there, before torch is imported
        return _train_verl(ctx.args)
    from cures.backends.trl.run import train as run_training

    summary = run_training(ctx.args)
    if not summary:  # not the main process of a multi-process run
        return
    if summary.get("preempted"):
        from cures.backends.trl.trainer import PREEMPTED_EXIT

        err_console.print(f"preempted (SIGTERM) after step {summary['steps']}: checkpoint written in "
                          f"{summary['config']['output_dir']}; continue with --resume_from_checkpoint true",
                          highlight=False)
        raise typer.Exit(PREEMPTED_EXIT)
    for key in ("steps", "rollouts_total", "train_wall_seconds", "policy_share_of_train_time"):
        console.print(f"{key}: {summary[key]}", highlight=False)
    for entry in summary["evaluations"][-1:]:
        scores = {k: round(v, 4) for k, v in entry.items() if k == "eval_accuracy" or k.startswith("eval_avg_at_")}
        console.print(f"last evaluation (step {entry['step']}): {scores}", highlight=False)
    console.print(f"wrote {Path(summary['config']['output_dir']) / 'summary.json'} and metrics.jsonl",
                  highlight=False)


def _without_backend(argv: list[str]) -> list[str]:
    out, skip = [], False
    for i, token in enumerate(argv):
        if skip:
            skip = False
        elif token == "--backend":
            skip = i + 1 < len(argv)
        elif not token.startswith("--backend="):
            out.append(token)
    return out


def _train_verl(argv: list[str]) -> None:
    import importlib.util

    if any(importlib.util.find_spec(m) is None for m in ("verl", "transfer_queue")):
        raise ValueError(VERL_MISSING)
    from cures.backends.verl.main import train as run_verl

    run_verl(_without_backend(argv))


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []},
             add_help_option=False)
@user_errors
def profile(ctx: typer.Context):
    """Estimate every training prompt's pass rate under a model before training: --rollouts_per_prompt N' (default
    8) completions each, sampled and scored as `cures train` would (same options: --config, model, dataset,
    rewards, temperature), resumable chunk by chunk; writes pass_rates.csv (for `cures simulate --init-pass-rate`)
    and profile.json to --output_dir (`cures profile --help` lists every option)."""
    if backend_of(ctx.args) != "trl":
        raise ValueError("--backend verl: cures profile generates through the trl backend (transformers or vLLM); "
                         "profile with --backend trl, then train with either")
    from cures.backends.trl.profile import profile as run_profile

    bar, task = progress_bar(1, "profiling prompts")
    t0 = time.perf_counter()

    def advance(done, total):
        rate = done / max(time.perf_counter() - t0, 1e-9)
        bar.update(task, completed=done, total=total, description=f"profiling prompts ({rate:.2f}/s)")

    with bar:
        summary = run_profile(ctx.args, progress=advance)
    if not summary:
        return
    for key in ("prompts", "rollouts_per_prompt", "mean_pass_rate", "share_never_solved", "share_always_solved",
                "mean_completion_tokens", "clipped_share", "wall_seconds"):
        value = summary[key]
        console.print(f"{key}: {round(value, 4) if isinstance(value, float) else value}", highlight=False)
    console.print(f"histogram of successes (0..{summary['rollouts_per_prompt']}): {summary['histogram']}",
                  highlight=False)
    out = Path(summary["output_dir"])
    console.print(f"wrote {out / 'pass_rates.csv'} and {out / 'profile.json'}; simulate this population with: cures "
                  f"simulate --init-pass-rate {out / 'pass_rates.csv'}", highlight=False)
