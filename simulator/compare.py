"""Policies side by side, matched in rollouts, steps or compute, with the paper's speed-up counted three ways."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np

from cures._io import staged_outputs
from cures.simulator.config import SimConfig
from cures.simulator.engine import COLUMNS
from cures.simulator.output import ci_text, plot_curves, speedup_text, write_json, write_table
from cures.simulator.run import SeedRun, accuracy_column, simulate, stacked
from cures.simulator.scaling import ACCOUNTINGS, axis, saturating_fit, speedups

STEP_CAP = 50  # a policy under a rollout or compute cap may take up to this many times the baseline's steps
MATCHES = ACCOUNTINGS


def compute_used(runs: list[SeedRun], train_cost: float) -> float:
    """Mean compute over seeds at the end of the run: generated + train_cost x trained rollouts."""
    return float(np.mean([np.nanmax(axis([r], "compute", train_cost)) for r in runs]))


def matched_config(cfg: SimConfig, match: str, base_runs: list[SeedRun]) -> SimConfig:
    """The schedule every other policy runs under: the baseline's steps, or its rollouts or compute as a cap."""
    if match == "steps":
        return cfg
    if match == "rollouts":
        budget = int(round(np.mean([r.rollouts_total for r in base_runs])))
        return dataclasses.replace(cfg, steps=cfg.steps * STEP_CAP, max_rollouts=budget)
    if match == "compute":
        return dataclasses.replace(cfg, steps=cfg.steps * STEP_CAP, max_compute=compute_used(base_runs, cfg.train_cost))
    raise ValueError(f"--match must be one of {', '.join(MATCHES)}; got {match!r}")


def compare(policies: list[str], cfg: SimConfig, progress=None, match: str = "rollouts", fits: bool = True,
            policy_params: dict[str, dict] | None = None, baseline: tuple[dict, list[SeedRun]] | None = None
            ) -> tuple[dict, dict[str, list[SeedRun]]]:
    """Run the first policy for cfg.steps steps, then every other one matched to it (`match`): for as many steps,
    until it has used as many rollouts, or until it has spent as much compute (generated + cfg.train_cost x trained
    rollouts).

    Each policy's speed-up is the baseline's cost to reach its own peak accuracy over the policy's cost to reach that
    accuracy, on the curves averaged over seeds (the paper's definition), in every accounting: rollouts, steps and
    compute, whatever the run was matched on (NaN where the policy never reaches the peak within its run); 95%
    intervals bootstrap the seeds. With `fits`, ScaleRL's saturating curve is fitted to each policy's accuracy
    against rollouts. `policy_params` adds parameters to single policies (name -> parameters); `baseline` is the
    baseline's (summary, runs) from an earlier call with the same settings, reused instead of simulated again.
    """
    def own(name: str, c: SimConfig) -> SimConfig:
        extra = (policy_params or {}).get(name)
        return dataclasses.replace(c, policy_params={**c.policy_params, **extra}) if extra else c

    if len(set(policies)) != len(policies) or not policies:
        raise ValueError("--policies needs distinct policy names, the baseline first")
    if match not in MATCHES:
        raise ValueError(f"--match must be one of {', '.join(MATCHES)}; got {match!r}")
    acc = accuracy_column(cfg)
    summaries, runs = {}, {}
    base = policies[0]
    summaries[base], runs[base] = baseline or simulate(base, own(base, cfg), progress)
    others = matched_config(cfg, match, runs[base])
    for name in policies[1:]:
        summaries[name], runs[name] = simulate(name, own(name, others), progress)

    peak = float(np.nanmax(np.nanmean(stacked(runs[base], acc), axis=0)))
    rows = []
    for name in policies:
        s = summaries[name]
        sp = speedups(runs[base], runs[name], acc, cfg.train_cost)
        row = {
            "policy": name,
            **{f"speedup_{a}": sp[a]["mean"] for a in ACCOUNTINGS},
            **{f"speedup_{a}_ci": [sp[a]["lo"], sp[a]["hi"]] for a in ACCOUNTINGS},
            "speedup": sp[match]["mean"],
            "final_accuracy": s["final_heldout_accuracy" if acc == "heldout_accuracy" else "final_train_accuracy"],
            "peak_accuracy": s["peak_accuracy"],
            "rollouts_used": s["rollouts_total"],
            "trained_rollouts": float(np.mean([r.curves[-1, _col("trained_rollouts")] for r in runs[name]])),
            "compute_used": compute_used(runs[name], cfg.train_cost),
            "steps": s["steps"],
            "zero_variance_fraction": s["zero_variance_fraction"],
        }
        if fits:
            row["fit"] = saturating_fit(runs[name], acc, "rollouts", cfg.train_cost)
        rows.append(row)
    result = {
        "baseline": base, "baseline_peak_accuracy": peak, "accuracy_metric": acc, "match": match,
        "train_cost": cfg.train_cost, "rollout_budget": rows[0]["rollouts_used"], "baseline_steps": cfg.steps,
        "compute_budget": rows[0]["compute_used"], "policies": rows, "summaries": summaries,
    }
    return result, runs


def _col(name: str) -> int:
    return COLUMNS.index(name)


def comparison_frame(result: dict):
    """One row per policy: speed-ups with intervals in each accounting, accuracies, costs and the saturating fit."""
    import pandas as pd

    records = []
    for r in result["policies"]:
        rec = {"policy": r["policy"], "match": result["match"]}
        for a in ACCOUNTINGS:
            rec[f"speedup_{a}"] = r[f"speedup_{a}"]
            rec[f"speedup_{a}_lo"], rec[f"speedup_{a}_hi"] = r[f"speedup_{a}_ci"]
        for key in ("final_accuracy", "peak_accuracy", "zero_variance_fraction"):
            rec[key], rec[f"{key}_lo"], rec[f"{key}_hi"] = (r[key][k] for k in ("mean", "lo", "hi"))
        for key in ("rollouts_used", "trained_rollouts", "compute_used", "steps"):
            rec[key] = r[key]
        for key in ("A", "C_mid", "B"):
            fit = r.get("fit", {}).get(key, {"mean": math.nan, "lo": math.nan, "hi": math.nan})
            rec[f"fit_{key}"], rec[f"fit_{key}_lo"], rec[f"fit_{key}_hi"] = fit["mean"], fit["lo"], fit["hi"]
        records.append(rec)
    return pd.DataFrame.from_records(records)


def seeds_frame(runs: dict[str, list[SeedRun]], accuracy: str, train_cost: float):
    """One row per policy x seed: final and peak accuracy, rollouts generated and trained, compute, steps and the
    zero-variance fractions (the tidy data every interval above is computed from)."""
    import pandas as pd

    records = []
    for name, seed_runs in runs.items():
        for r in seed_runs:
            last = r.curves[-1]
            records.append({
                "policy": name, "seed": r.seed, "steps": r.steps, "rollouts": r.rollouts_total,
                "trained_rollouts": last[_col("trained_rollouts")],
                "compute": r.rollouts_total + train_cost * last[_col("trained_rollouts")],
                "final_train_accuracy": last[_col("train_accuracy")],
                "final_heldout_accuracy": last[_col("heldout_accuracy")],
                "peak_accuracy": float(np.nanmax(r.curves[:, _col(accuracy)])),
                "zero_variance_fraction": r.zero_variance_fraction,
                "first_step_zero_variance_fraction": r.first_step_zero_variance_fraction,
            })
    return pd.DataFrame.from_records(records)


def _speed(r: dict, a: str) -> str:
    return speedup_text(r[f"speedup_{a}"], *r[f"speedup_{a}_ci"])


def markdown_table(result: dict) -> str:
    matched = {"rollouts": f"{result['rollout_budget']:,.0f} rollouts",
               "steps": f"{result['baseline_steps']:,} steps",
               "compute": f"{result['compute_budget']:,.0f} compute units (generated + {result['train_cost']:g} x "
                          "trained rollouts)"}[result.get("match", "rollouts")]
    lines = [
        f"Baseline `{result['baseline']}` peaks at {result['baseline_peak_accuracy']:.3f} "
        f"({result['accuracy_metric'].replace('_', ' ')}); every policy ran to the baseline's {matched}. Speed-up: the "
        "baseline's cost to reach its peak over the policy's, counted in rollouts, steps and compute (95% bootstrap "
        "intervals over seeds).",
        "",
        "| policy | speed-up (rollouts) | speed-up (steps) | speed-up (compute) | final accuracy [95% CI] | "
        "peak accuracy [95% CI] | rollouts | trained | steps | zero-variance groups |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["policies"]:
        lines.append(f"| {r['policy']} | {_speed(r, 'rollouts')} | {_speed(r, 'steps')} | {_speed(r, 'compute')} | "
                     f"{ci_text(r['final_accuracy'])} | {ci_text(r['peak_accuracy'])} | {r['rollouts_used']:,.0f} | "
                     f"{r['trained_rollouts']:,.0f} | {r['steps']:,.0f} | "
                     f"{r['zero_variance_fraction']['mean']:.3f} |")
    if any("fit" in r for r in result["policies"]):
        lines += ["", "ScaleRL's saturating fit R(C) = R0 + (A - R0) / (1 + (C_mid / C)^B), C in rollouts: A is the "
                  "ceiling, C_mid the rollouts to half the gain (efficiency), B the steepness (95% bootstrap "
                  "intervals over seeds; the ceiling extrapolates past the run).", "",
                  "| policy | R0 | A (ceiling) | C_mid (rollouts) | B |", "|---|---|---|---|---|"]
        for r in result["policies"]:
            f = r["fit"]
            lines.append(f"| {r['policy']} | {f['R0']:.3f} | {ci_text(f['A'])} | {ci_text(f['C_mid'], 0)} | "
                         f"{ci_text(f['B'], 2)} |")
    return "\n".join(lines) + "\n"


def write_comparison(out: Path, result: dict, runs: dict[str, list[SeedRun]], cfg: SimConfig) -> list[Path]:
    """comparison.json/.md/.csv/.parquet, seeds.csv/.parquet, curves.csv/.parquet and comparison.png, moved into
    `out` together."""
    from cures.simulator.output import curves_frame

    title = (f"{len(runs)} policies, {cfg.n_prompts:,} prompts, {cfg.seeds} seeds, equal "
             f"{result.get('match', 'rollouts')} (95% bands)")
    with staged_outputs(out, "comparison.json") as stage:
        (stage / "comparison.md").write_text(markdown_table(result))
        files = [write_json(stage / "comparison.json", result), stage / "comparison.md",
                 *write_table(stage / "comparison", comparison_frame(result)),
                 *write_table(stage / "seeds", seeds_frame(runs, result["accuracy_metric"], cfg.train_cost)),
                 *write_table(stage / "curves", curves_frame(runs)),
                 plot_curves(stage / "comparison.png", runs, result["accuracy_metric"], title)]
    return [Path(out) / f.name for f in files]

