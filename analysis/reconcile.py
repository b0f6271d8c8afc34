"""Reconciling the paper's accounting with ours: the same policies matched in steps (the paper's "5.5x faster",
counted in steps) and in rollouts (every generated rollout counted), side by side, with each policy's rollouts per
step relative to the baseline (the released code's x4) and the share it generates without training on it
(pre-rollouts, screening, dropped groups). `cures reconcile` prints and writes it."""

from __future__ import annotations

import math

from cures.simulator.compare import compare
from cures.simulator.config import SimConfig
from cures.simulator.output import ci_text, speedup_text

POLICIES = ("grpo", "cures", "cures-paper", "cures-released", "dapo", "speed")


def reconcile(cfg: SimConfig, policies=POLICIES, progress=None) -> dict:
    """Two comparisons on the same scenario and seeds, one at equal steps and one at equal rollouts; returns
    {"rows": one dict per policy, "steps": the steps-matched result, "rollouts": the rollouts-matched result}."""
    at_steps, runs = compare(list(policies), cfg, progress, match="steps", fits=False)
    base_name = policies[0]
    at_rollouts, _ = compare(list(policies), cfg, progress, match="rollouts", fits=False,
                             baseline=(at_steps["summaries"][base_name], runs[base_name]))
    base = at_steps["policies"][0]
    base_per_step = base["rollouts_used"] / base["steps"]
    rows = []
    for s, r in zip(at_steps["policies"], at_rollouts["policies"], strict=True):
        per_step = s["rollouts_used"] / s["steps"]
        rows.append({
            "policy": s["policy"],
            "rollouts_per_step": per_step,
            "rollouts_per_step_vs_baseline": per_step / base_per_step,
            "untrained_share": 1.0 - s["trained_rollouts"] / s["rollouts_used"] if s["rollouts_used"] else math.nan,
            "equal_steps_speedup_steps": s["speedup_steps"],
            "equal_steps_speedup_steps_ci": s["speedup_steps_ci"],
            "equal_steps_rollouts_vs_baseline": s["rollouts_used"] / base["rollouts_used"],
            "equal_steps_final_accuracy": s["final_accuracy"],
            "equal_rollouts_speedup_rollouts": r["speedup_rollouts"],
            "equal_rollouts_speedup_rollouts_ci": r["speedup_rollouts_ci"],
            "equal_rollouts_final_accuracy": r["final_accuracy"],
        })
    return {"baseline": base["policy"], "baseline_peak_accuracy": at_steps["baseline_peak_accuracy"],
            "baseline_steps": cfg.steps, "baseline_rollouts": base["rollouts_used"], "rows": rows,
            "steps": at_steps, "rollouts": at_rollouts}


def markdown(result: dict) -> str:
    lines = [
        f"Baseline `{result['baseline']}`: {result['baseline_steps']} steps, {result['baseline_rollouts']:,.0f} "
        f"rollouts, peak {result['baseline_peak_accuracy']:.3f}. Speed-up = the baseline's cost to reach its peak "
        "over the policy's (95% bootstrap intervals over seeds). At equal steps every policy runs the baseline's "
        "steps, generating what it generates; at equal rollouts every generated rollout counts against the "
        "baseline's total.",
        "",
        "| policy | rollouts per step (x baseline) | generated, not trained | equal steps: speed-up in steps | "
        "equal steps: rollouts used (x baseline) | equal steps: final accuracy | equal rollouts: speed-up in "
        "rollouts | equal rollouts: final accuracy |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        at_steps = speedup_text(r["equal_steps_speedup_steps"], *r["equal_steps_speedup_steps_ci"])
        at_rollouts = speedup_text(r["equal_rollouts_speedup_rollouts"], *r["equal_rollouts_speedup_rollouts_ci"])
        lines.append(
            f"| {r['policy']} | {r['rollouts_per_step']:,.0f} ({r['rollouts_per_step_vs_baseline']:.2f}x) | "
            f"{r['untrained_share']:.0%} | {at_steps} | {r['equal_steps_rollouts_vs_baseline']:.2f}x | "
            f"{ci_text(r['equal_steps_final_accuracy'])} | {at_rollouts} | "
            f"{ci_text(r['equal_rollouts_final_accuracy'])} |")
    return "\n".join(lines) + "\n"


def frame(result: dict):
    import pandas as pd

    records = []
    for r in result["rows"]:
        rec = {k: v for k, v in r.items() if not isinstance(v, dict | list)}
        for key in ("equal_steps_speedup_steps", "equal_rollouts_speedup_rollouts"):
            rec[f"{key}_lo"], rec[f"{key}_hi"] = r[f"{key}_ci"]
        for key in ("equal_steps_final_accuracy", "equal_rollouts_final_accuracy"):
            rec[key], rec[f"{key}_lo"], rec[f"{key}_hi"] = (r[key][k] for k in ("mean", "lo", "hi"))
        records.append(rec)
    return pd.DataFrame.from_records(records)
