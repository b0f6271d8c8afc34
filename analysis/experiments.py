"""Simulator experiments behind the comparison figures: one equal-rollout comparison and the sensitivity grids."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from cures.policies import available
from cures.simulator.compare import compare
from cures.simulator.config import SimConfig
from cures.simulator.engine import COLUMNS
from cures.simulator.run import BOUNDS, SeedRun, mean_ci, simulate

CURES_FAMILY = ("grpo", "cures", "cures-sampling", "cures-allocation", "cures-paper", "cures-released")
PEERS = ("grpo", *(name for name in available() if not name.startswith("cures") and name != "grpo"))  # registered
ALL_POLICIES = tuple(dict.fromkeys(CURES_FAMILY + PEERS))


@dataclass
class Sensitivity:
    """Final held-out accuracy of CurES over its temperature and of Algorithm 1 over (N', budget coefficient)."""

    taus: list[float]
    tau_accuracy: list[dict]  # mean_ci per tau
    n_pre: list[int]
    coefs: list[int]
    grid_accuracy: np.ndarray  # [len(n_pre), len(coefs)] mean final held-out accuracy
    grid_rollouts: np.ndarray  # [len(n_pre), len(coefs)] mean rollouts used


def final_accuracy(runs: list[SeedRun], column: str = "heldout_accuracy") -> dict:
    return mean_ci([r.curves[-1, COLUMNS.index(column)] for r in runs], BOUNDS[column])


def run_comparison(cfg: SimConfig, policies=ALL_POLICIES, progress=None):
    """Every policy at the baseline's (the first policy's) total rollouts."""
    return compare(list(policies), cfg, progress)


def run_sensitivity(cfg: SimConfig, taus=(0.03, 0.1, 0.3, 1.0), n_pre=(4, 8, 16), coefs=(8, 16, 32),
                    progress=None) -> Sensitivity:
    """The paper's Fig. 5 grid at equal steps: `cures-paper` over N' x budget coefficient (rollouts grow with both),
    and `cures` over tau."""
    tau_acc = []
    for tau in taus:
        c = dataclasses.replace(cfg, policy_params={"tau": tau})
        tau_acc.append(final_accuracy(simulate("cures", c, progress)[1]))
    acc = np.zeros((len(n_pre), len(coefs)))
    rollouts = np.zeros_like(acc)
    for i, n in enumerate(n_pre):
        for j, coef in enumerate(coefs):
            c = dataclasses.replace(cfg, rollouts_per_step=coef * cfg.prompts_per_step, policy_params={"n_pre": n})
            summary, runs = simulate("cures-paper", c, progress)
            acc[i, j] = final_accuracy(runs)["mean"]
            rollouts[i, j] = summary["rollouts_total"]
    return Sensitivity(list(taus), tau_acc, list(n_pre), list(coefs), acc, rollouts)
