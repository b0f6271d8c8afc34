"""The simulator against real training: the validation protocol of issue 22, resumable run by run.

    python -m cures.analysis.sim_to_real run    --out runs/sim-to-real   # profile + every real run not yet done
    python -m cures.analysis.sim_to_real report --out runs/sim-to-real   # calibrate on grpo, predict the rest
    python -m cures.analysis.sim_to_real export --out runs/sim-to-real --to docs/sim-to-real   # what is committed

`run` profiles the training prompts (`cures profile`, N' = 8), then trains every policy for every seed with `cures
train` (SmolLM2-135M, offline, on `arith` with difficulty levels 1-3 mixed, a pool small enough that each prompt is
drawn about three times), each run in its own directory. A run with `summary.json` is done; an interrupted one
resumes from its newest checkpoint (`--resume_from_checkpoint true`), else starts again. Every policy here spends
the same rollouts per step, so equal steps are equal generated rollouts. Hours on 2 CPU cores: stop it at any time
and run it again.

`report` fits the simulator to the `grpo` runs only (`cures.simulator.calibrate`, initial pass rates from the
profile), predicts every policy's per-step training reward and zero-variance fraction with the fitted scenario, and
writes `validation.json`, `validation.md` and `validation.png` beside the runs: per policy, predicted vs observed
(means with 95 % intervals over seeds), the prediction error, and whether the predicted ranking matches the
observed one.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from cures.analysis.validation import run_dir, write_validation

POLICIES = ("grpo", "cures", "mopps", "knapsack")  # each spends exactly 16 rollouts a step here (pilot-commit, tried
# first, generated 1,156 rollouts in its first 16 steps, 4.5x the budget: on a pool of 40 it refills and re-pilots;
# the simulator says the same, 4,649 rollouts in 30 steps, so it was dropped from an equal-rollouts comparison)
SEEDS = (0, 1, 2)
TRAIN = {  # one setting for every run: only policy and seed differ
    "model_name_or_path": "smollm2-135m", "dataset_name": "arith", "arith_max_level": 3, "n_problems": 40,
    "n_eval_problems": 64, "prompts_per_step": 4, "rollouts_per_step": 16, "per_device_train_batch_size": 8,
    "max_steps": 30, "learning_rate": 1e-5, "max_completion_length": 32, "gradient_checkpointing": False,
    "eval_strategy": "steps", "eval_steps": 30, "per_device_eval_batch_size": 64, "logging_steps": 1,
    "save_steps": 10, "save_total_limit": 1, "report_to": "none",
    "data_seed": 0,  # the same 40 problems in every run and in the profile
}
PROFILE = {"rollouts_per_prompt": 8, "prompts_per_chunk": 8}
PROFILE_KEYS = ("model_name_or_path", "dataset_name", "arith_max_level", "n_problems", "max_completion_length",
                "data_seed")


def _flags(settings: dict) -> list[str]:
    out = []
    for key, value in settings.items():
        out += [f"--{key}", str(value).lower() if isinstance(value, bool) else str(value)]
    return out


def _cures(*args: str, log: Path) -> int:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    with log.open("a") as fh:
        fh.write(f"\n$ cures {' '.join(args)}\n")
        fh.flush()
        return subprocess.run([sys.executable, "-m", "cures", *args], stdout=fh, stderr=subprocess.STDOUT,
                              env=env).returncode


def run_order(policies, seeds) -> list[tuple[str, int]]:
    """Seed by seed, every policy: a protocol stopped early has every policy on as many seeds as the others, within
    one."""
    return [(p, s) for s in seeds for p in policies]


def run_protocol(out: Path, policies=POLICIES, seeds=SEEDS) -> None:
    """Profile, then every run not yet finished, in `run_order`; prints one line per finished piece with its wall
    time."""
    out.mkdir(parents=True, exist_ok=True)
    log = out / "protocol.log"
    profile = out / "profile"
    if not (profile / "profile.json").is_file():
        t0 = time.perf_counter()
        code = _cures("profile", *_flags({k: TRAIN[k] for k in PROFILE_KEYS}), *_flags(PROFILE),
                      "--seed", "0", "--output_dir", str(profile), log=log)
        if code != 0:
            raise SystemExit(f"cures profile failed (exit {code}); see {log}")
        print(f"profile: {time.perf_counter() - t0:.0f} s", flush=True)
    for policy, seed in run_order(policies, seeds):
        where = run_dir(out, policy, seed)
        if (where / "summary.json").is_file():
            continue
        resume = any(where.glob("checkpoint-*/policy_state.npz"))
        if where.exists() and not resume:
            shutil.rmtree(where)
        t0 = time.perf_counter()
        code = _cures("train", "--backend", "trl", *_flags(TRAIN), "--policy", policy, "--seed", str(seed),
                      "--output_dir", str(where), *(["--resume_from_checkpoint", "true"] if resume else []),
                      log=log)
        if code != 0:
            raise SystemExit(f"cures train {policy} seed {seed} failed (exit {code}); see {log}")
        for checkpoint in where.glob("checkpoint-*"):  # they served resumption only; the model stays
            shutil.rmtree(checkpoint)
        print(f"{policy} seed {seed}: {time.perf_counter() - t0:.0f} s{' (resumed)' if resume else ''}",
              flush=True)


KEEP = ("summary.json", "metrics.jsonl", "plans.rank0.jsonl", "rollouts.parquet")  # a run's results, not its model


def export(out: Path, to: Path) -> list[Path]:
    """Copy the protocol's results (the profile, every run's records, summaries and logs, the validation report),
    without model weights or checkpoints, from `out` to `to`: what the repository keeps."""
    copied = []
    for src in [out / "profile" / f for f in ("pass_rates.csv", "profile.json", "profile_settings.json")] + \
            [d / f for d in sorted((out / "runs").glob("*")) for f in KEEP] + \
            sorted((out / "validation").glob("*")):
        if not src.exists():
            continue
        dst = to / src.relative_to(out)
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, dirs_exist_ok=True)
        elif src.suffix == ".toml":  # a scenario names its pass-rate file: point it at the copy
            dst.write_text(src.read_text().replace(f'"{out}/', f'"{to}/'))
        else:
            shutil.copy2(src, dst)
        copied.append(dst)
    return copied


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m cures.analysis.sim_to_real", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["run", "report", "export"])
    parser.add_argument("--to", type=Path, default=Path("docs/sim-to-real"), help="export: where the results go")
    parser.add_argument("--out", type=Path, default=Path("runs/sim-to-real"))
    parser.add_argument("--policies", default=",".join(POLICIES))
    parser.add_argument("--seeds", default=",".join(map(str, SEEDS)))
    a = parser.parse_args(argv)
    policies = [p for p in a.policies.split(",") if p]
    seeds = [int(s) for s in a.seeds.split(",") if s]
    if a.command == "run":
        run_protocol(a.out, policies, seeds)
    elif a.command == "export":
        print(f"copied {len(export(a.out, a.to))} results to {a.to}")
    else:
        result = write_validation(a.out, policies, seeds)
        print(json.dumps(result["summary"], indent=2))


if __name__ == "__main__":
    main()
