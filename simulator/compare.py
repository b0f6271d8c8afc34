"""Policies side by side at equal total rollouts, and the paper's speed-up measured in rollouts."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np

from cures._io import staged_outputs
from simulator.config import SimConfig
from simulator.output import mean_curve, plot_curves, write_curves, write_json
from simulator.run import SeedRun, accuracy_column, simulate

STEP_CAP = 50  # a policy under the rollout cap may take up to this many times the baseline's steps


def rollouts_to_reach(x: np.ndarray, y: np.ndarray, target: float) -> float:
    """Rollouts at which the curve first reaches `target`, linearly interpolated between evaluations; NaN if never."""
    for i in range(len(y)):
        if np.isfinite(y[i]) and y[i] >= target:
            if i == 0 or not np.isfinite(y[i - 1]):
                return float(x[i])
            frac = (target - y[i - 1]) / (y[i] - y[i - 1])
            return float(x[i - 1] + frac * (x[i] - x[i - 1]))
    return math.nan


def compare(policies: list[str], cfg: SimConfig, progress=None) -> tuple[dict, dict[str, list[SeedRun]]]:
    """Run the first policy for cfg.steps steps, then every other one until it has used as many rollouts.

    The speed-up of a policy is (rollouts the baseline needs to reach its own peak accuracy) / (rollouts the policy
    needs to reach that accuracy), on the curves averaged over seeds: the paper's definition, counted in rollouts.
    """
    if len(set(policies)) != len(policies) or not policies:
        raise ValueError("--policies needs distinct policy names, the baseline first")
    acc = accuracy_column(cfg)
    summaries, runs = {}, {}
    base = policies[0]
    summaries[base], runs[base] = simulate(base, cfg, progress)
    budget = int(round(summaries[base]["rollouts_total"]))
    capped = dataclasses.replace(cfg, steps=cfg.steps * STEP_CAP, max_rollouts=budget)
    for name in policies[1:]:
        summaries[name], runs[name] = simulate(name, capped, progress)

    bx, by, _, _ = mean_curve(runs[base], acc)
    peak = float(np.nanmax(by))
    base_rollouts = rollouts_to_reach(bx, by, peak)
    rows = []
    for name in policies:
        x, y, _, _ = mean_curve(runs[name], acc)
        need = rollouts_to_reach(x, y, peak)
        s = summaries[name]
        rows.append({
            "policy": name,
            "rollouts_to_baseline_peak": need,
            "speedup": base_rollouts / need if need > 0 else math.nan,
            "final_accuracy": s["final_heldout_accuracy" if acc == "heldout_accuracy" else "final_train_accuracy"],
            "peak_accuracy": s["peak_heldout_accuracy"],
            "rollouts_used": s["rollouts_total"],
            "steps": s["steps"],
            "zero_variance_fraction": s["zero_variance_fraction"],
        })
    result = {
        "baseline": base, "baseline_peak_accuracy": peak, "accuracy_metric": acc, "rollout_budget": budget,
        "policies": rows, "summaries": summaries,
    }
    return result, runs


def _ci(d: dict) -> str:
    if not math.isfinite(d["mean"]):
        return "n/a"
    if not math.isfinite(d["lo"]):
        return f"{d['mean']:.3f}"
    return f"{d['mean']:.3f} [{d['lo']:.3f}, {d['hi']:.3f}]"


def markdown_table(result: dict) -> str:
    lines = [
        f"Baseline `{result['baseline']}` peaks at {result['baseline_peak_accuracy']:.3f} "
        f"({result['accuracy_metric'].replace('_', ' ')}); every policy ran to {result['rollout_budget']:,} rollouts.",
        "",
        "| policy | rollouts to baseline peak | speed-up | final accuracy [95% CI] | peak accuracy [95% CI] | "
        "rollouts used | zero-variance groups |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in result["policies"]:
        reach = f"{r['rollouts_to_baseline_peak']:,.0f}" if math.isfinite(r["rollouts_to_baseline_peak"]) else \
            "not reached"
        speed = f"{r['speedup']:.2f}x" if math.isfinite(r["speedup"]) else "-"
        lines.append(f"| {r['policy']} | {reach} | {speed} | {_ci(r['final_accuracy'])} | {_ci(r['peak_accuracy'])} | "
                     f"{r['rollouts_used']:,.0f} | {r['zero_variance_fraction']['mean']:.3f} |")
    return "\n".join(lines) + "\n"


def write_comparison(out: Path, result: dict, runs: dict[str, list[SeedRun]], cfg: SimConfig) -> list[Path]:
    """comparison.json, comparison.md, curves.csv and comparison.png, moved into `out` together."""
    title = f"{len(runs)} policies, {cfg.n_prompts:,} prompts, {cfg.seeds} seeds, equal rollouts (95% bands)"
    with staged_outputs(out, "comparison.json") as stage:
        (stage / "comparison.md").write_text(markdown_table(result))
        files = [write_json(stage / "comparison.json", result), stage / "comparison.md",
                 write_curves(stage / "curves.csv", runs),
                 plot_curves(stage / "comparison.png", runs, result["accuracy_metric"], title)]
    return [Path(out) / f.name for f in files]
