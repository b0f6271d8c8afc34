"""The numbers behind the theory figures: closed forms from `cures.theory`, Monte Carlo from the simulator's model,
and the allocations the policies' own kernels make."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import ndtri

from cures.policies.gvm import gvm_weight
from cures.policies.kernels import largest_remainder
from cures.policies.knapsack import EDGE_N, solve
from cures.simulator.engine import EngineConfig, score_statistics
from cures.simulator.population import Model
from cures.simulator.reference import rollout_scores
from cures.theory import allocate_rollouts, rollout_sigma, sampling_distribution


def one_prompt_model(dim: int = 4, norm: float = 1.0) -> Model:
    """A single simulated prompt whose score direction has length `norm` (its p is set by the caller)."""
    a = np.full((1, dim), norm / math.sqrt(dim))
    return Model(a=a, b=np.zeros(1), a_held=np.zeros((0, dim)), b_held=np.zeros(0), theta=np.zeros(dim))


def eq21_sigma2(p: float, model: Model, sigma_correct: float, sigma_wrong: float) -> float:
    """sigma^2 of Eq. 21 with the exact score statistics of the simulator's model."""
    C = EngineConfig(False, 0, True, 1.0, 0.0, sigma_correct, sigma_wrong, 1e-4, True, 0)
    g2c, g2w, gap2 = score_statistics(model, C, 0, p)
    return float(rollout_sigma(p, g2c, g2w, gap2)) ** 2


def mc_gradient_variance(p: float, n: int, sigma_correct: float, sigma_wrong: float, reps: int,
                         rng: np.random.Generator, model: Model | None = None, level: float = 0.95
                         ) -> tuple[float, float, float]:
    """Monte Carlo Tr Var of one prompt's gradient estimate (1/n) sum_j (r_j - p) s_j with n rollouts of the
    simulator's model (exact-mean baseline, as Eq. 19-21 assume). Returns (estimate, lo, hi) with a normal-theory
    interval at `level` (the estimate is a mean of squared deviations, so it is asymptotically normal)."""
    model = one_prompt_model() if model is None else model
    r = (rng.random(reps * n) < p).astype(float)
    h = (r - p)[:, None] * rollout_scores(model, False, 0, p, r, sigma_correct, sigma_wrong, rng)
    g = h.reshape(reps, n, -1).mean(axis=1)
    sq = ((g - g.mean(axis=0)) ** 2).sum(axis=1) * reps / (reps - 1)
    est, se = float(sq.mean()), float(sq.std(ddof=1) / math.sqrt(reps))
    z = float(ndtri(0.5 + level / 2))
    return est, est - z * se, est + z * se


def effective_sample_size(rho: np.ndarray) -> float:
    """1 / sum(rho^2): how many prompts a sampling distribution effectively uses."""
    return float(1.0 / np.sum(rho**2))


def ess_curve(p: np.ndarray, taus: np.ndarray) -> np.ndarray:
    return np.array([effective_sample_size(sampling_distribution(p, t)) for t in taus])


def allocations(p: np.ndarray, budget: int) -> dict[str, np.ndarray]:
    """Rollouts per prompt of one batch under each rule, all with the same total, from the policies' own kernels:
    CurES (Eq. 20 exact, n_min 2, sigma = sqrt(p(1-p))), GVM (n ∝ 1/sqrt(p + 1e-3/p)), Knapsack-RL (exact DP,
    2 <= n <= 128, 2 for p in {0, 1}, the rest of the budget to p = 0 prompts) and uniform."""
    m = p.size
    out = {}
    out["cures"] = allocate_rollouts(rollout_sigma(p), budget, n_min=2)
    gvm = np.zeros(m, np.int64)
    largest_remainder(np.array([gvm_weight(x, 1.0, 1e-3, 2.0) for x in p]), budget, gvm)
    out["gvm"] = gvm
    knap = np.full(m, EDGE_N, np.int64)
    mixed = np.flatnonzero((p > 0) & (p < 1))
    rest = budget - EDGE_N * (m - mixed.size)
    take = min(rest, 128 * mixed.size)
    alloc = np.full(mixed.size, 2, np.int64)
    solve(p[mixed], take, 2, 128, alloc)
    knap[mixed] = alloc
    edges = np.flatnonzero(p == 0) if np.any(p == 0) else np.flatnonzero(p >= 1)
    for i in range(rest - take):
        knap[edges[i % edges.size]] += 1
    out["knapsack"] = knap
    uniform = np.full(m, budget // m, np.int64)
    uniform[: budget - uniform.sum()] += 1
    out["uniform"] = uniform
    return out


def total_variance(p: np.ndarray, n: np.ndarray) -> float:
    """sum_i sigma_i^2 / n_i (Eq. 19 up to 1/m^2), sigma from Eq. 21 with equal norms; infinite if a prompt with
    sigma > 0 gets no rollout."""
    s2 = rollout_sigma(p) ** 2
    if np.any((s2 > 0) & (n == 0)):
        return math.inf
    keep = s2 > 0
    return float(np.sum(s2[keep] / n[keep]))


# --------------------------------------------------------------------------------------------------------------------
# The data of the report's theory figures (analysis.figures draws them)
# --------------------------------------------------------------------------------------------------------------------

PASS_RATE_GRID = tuple(np.linspace(0.05, 0.95, 10))


def gradient_variance_points(reps: int, seed: int = 0, ps=PASS_RATE_GRID, ns=(4, 16),
                             norms=((1.0, 1.0), (0.5, 2.0), (2.0, 0.5)), level: float = 0.95) -> list[dict]:
    """Monte Carlo Tr Var of one prompt's gradient estimate next to Eq. 21 / n, for each (noise scales, n, p)."""
    rng = np.random.default_rng(seed)
    model = one_prompt_model()
    rows = []
    for s1, s0 in norms:
        for n in ns:
            for p in ps:
                est, lo, hi = mc_gradient_variance(float(p), n, s1, s0, reps, rng, model, level)
                rows.append({"sigma_correct": s1, "sigma_wrong": s0, "n": n, "p": float(p), "mc": est, "lo": lo,
                             "hi": hi, "eq21": eq21_sigma2(float(p), model, s1, s0) / n})
    return rows


def ess_shares(taus: np.ndarray, size: int = 10_000, seed: int = 0) -> dict[str, np.ndarray]:
    """Effective sample size of rho* (Eq. 14) over three pass-rate populations, as a share of the pool, per tau."""
    rng = np.random.default_rng(seed)
    pops = {"Beta(0.6, 0.9)": rng.beta(0.6, 0.9, size),
            "24% at 0 + Beta(1.1, 1)": np.where(rng.random(size) < 0.24, 0.0, rng.beta(1.1, 1.0, size)),
            "U-shaped Beta(0.3, 0.3)": rng.beta(0.3, 0.3, size)}
    return {name: ess_curve(pop, taus) / pop.size for name, pop in pops.items()}


@dataclass(frozen=True)
class AllocationComparison:
    """Each rule's rollouts for m prompts of evenly spaced pass rates under one budget, and its Eq. 19 variance."""

    p: np.ndarray
    budget: int
    allocations: dict
    variances: dict


def allocation_comparison(m: int = 64, budget: int = 512) -> AllocationComparison:
    p = np.linspace(0, 1, m)
    alloc = allocations(p, budget)
    return AllocationComparison(p, budget, alloc, {k: total_variance(p, v) for k, v in alloc.items()})
