"""`knapsack`: Knapsack-RL (arXiv 2509.25849), exact budgeted allocation by dynamic programming.

Each step takes m epoch-shuffled prompts. A prompt observed with at least `min_observations` rollouts last time has
p_hat = its last success rate; prompts with p_hat = 0 or 1 get 2 rollouts (`negative_n`, `positive_n`), prompts
with too little history get the default N/m, and the rest of the budget goes to the mixed prompts by maximising

    sum_i V(n_i, p_i),   V(n, p) = (1 - p^n - (1 - p)^n) p (1 - p)^2,   n_min <= n_i <= n_max,  sum_i n_i = R

exactly (a dynamic program, as liziniu/KnapsackRL verl/trainer/ppo/exploration_utils.py,
sampling_budget_by_knapsack). Budget the mixed prompts cannot absorb (all at n_max) goes to the p = 0 prompts
("fallback"), then to the others, so every step uses exactly the budget. p(1-p)^2 peaks at p = 1/3. The reference
p_hat is the last epoch's success rate (or its last 16 rewards); here it is the prompt's last observation.
"""

import numpy as np

from cures._jit import njit
from cures.policies.kernels import (
    add_slot,
    begin_training_round,
    complete_single_round_step,
    end_plan,
    round_slots,
    uniform_batch,
)
from cures.policies.spec import Param, PolicySpec, batch_capacity, fits_dataset, integer, kernel_record, register

PARAMS = (
    Param("prompts_per_step", 64, "prompts per training step m", integer(1)),
    Param("rollouts_per_step", None, "rollouts per training step N (default 8 x prompts_per_step)", integer(2,
                                                                                                            optional=True),
          display="8*prompts_per_step"),
    Param("n_min", 2, "fewest rollouts of a mixed prompt", integer(1)),
    Param("n_max", 128, "most rollouts of one prompt", integer(1)),
    Param("min_observations", 8, "rollouts a prompt's last observation needs before p_hat is trusted", integer(1)),
)
Params = kernel_record(__name__, PARAMS, decay=1.0)


EDGE_N = 2  # rollouts for prompts believed all-correct or all-wrong (negative_n = positive_n = 2)
UNKNOWN, HOPELESS, SOLVED, MIXED = range(4)


@njit(cache=True)
def value(n, p):
    """V(n, p) = P(non-zero gradient) x p(1-p)^2."""
    return (1.0 - p**n - (1.0 - p) ** n) * p * (1.0 - p) ** 2


@njit(cache=True)
def solve(p, total, n_min, n_max, out):
    """Exact max of sum V(n_i, p_i) with n_min <= n_i <= n_max and sum n_i = total, by dynamic programming over
    (items, budget). Returns False (out untouched) when no such n exists."""
    k = p.shape[0]
    if total < k * n_min or total > k * n_max:
        return False
    best = np.full((k + 1, total + 1), -np.inf)
    choice = np.zeros((k + 1, total + 1), np.int64)
    best[0, 0] = 0.0
    for i in range(1, k + 1):
        for r in range(total + 1):
            for n in range(n_min, min(n_max, r) + 1):
                prev = best[i - 1, r - n]
                if prev > -np.inf:
                    v = prev + value(n, p[i - 1])
                    if v > best[i, r]:
                        best[i, r] = v
                        choice[i, r] = n
    r = total
    for i in range(k, 0, -1):
        out[i - 1] = choice[i, r]
        r -= choice[i, r]
    return True


@njit(cache=True)
def plan(P, S, B, rng):
    m = P.prompts_per_step
    batch = uniform_batch(S, m, rng)
    begin_training_round(B)
    n = np.zeros(m, np.int64)
    status = np.zeros(m, np.int64)
    p_hat = np.zeros(m)
    for i in range(m):
        s, t = S.last[batch[i], 0], S.last[batch[i], 1]
        if t < P.min_observations:
            status[i], n[i] = UNKNOWN, P.rollouts_per_step // m  # too little history: the default n
        elif s == 0.0:
            status[i], n[i] = HOPELESS, EDGE_N
        elif s == t:
            status[i], n[i] = SOLVED, EDGE_N
        else:
            status[i], p_hat[i] = MIXED, s / t
    mixed = np.flatnonzero(status == MIXED)
    remaining = P.rollouts_per_step - n.sum()
    if mixed.shape[0] > 0:
        take = min(remaining, mixed.shape[0] * P.n_max)
        alloc = np.full(mixed.shape[0], P.n_min, np.int64)
        solve(p_hat[mixed], take, P.n_min, P.n_max, alloc)  # feasible: rollouts_per_step >= m n_min, defaults >= n_min
        for i in range(mixed.shape[0]):
            n[mixed[i]] = alloc[i]
        remaining -= alloc.sum()
    # fallback: what the mixed prompts cannot absorb goes round-robin to p = 0 prompts, else to all the others
    if remaining > 0:
        pool = np.flatnonzero(status == HOPELESS)
        if pool.shape[0] == 0:
            pool = np.flatnonzero(status != MIXED)
        if pool.shape[0] == 0:
            pool = np.arange(m)
        for r in range(remaining):
            n[pool[r % pool.shape[0]]] += 1
    for i in range(m):
        add_slot(B, batch[i], n[i])
    end_plan(S, B)


@njit(cache=True)
def observe(P, S, B, rng):
    lo, hi = round_slots(B)
    for j in range(lo, hi):  # the statistic of the next allocation: this observation's rate
        S.last[B.prompt[j], 0] = B.succ[j]
        S.last[B.prompt[j], 1] = B.n[j]
    return complete_single_round_step(S, B, P.decay)


def _check(v, n_prompts):
    m, rollouts_per_step = v["prompts_per_step"], v["rollouts_per_step"]
    fits_dataset()(v, n_prompts)
    if rollouts_per_step < m * max(v["n_min"], EDGE_N) or rollouts_per_step // m < v["n_min"]:
        raise ValueError(f"rollouts_per_step {rollouts_per_step} is below prompts_per_step x n_min = {m * v['n_min']}")
    if v["n_max"] < v["n_min"] or rollouts_per_step > m * v["n_max"]:
        raise ValueError(f"n_max {v['n_max']} must be >= n_min {v['n_min']} and allow the budget: prompts_per_step x "
                         f"n_max >= {rollouts_per_step}")


SPEC = register(PolicySpec(
    name="knapsack",
    summary="Knapsack-RL: exact DP maximising sum (1-p^n-(1-p)^n) p(1-p)^2 under the budget, 2 <= n <= 128.",
    params=PARAMS,
    kernel_params=Params,
    plan=plan,
    observe=observe,
    capacity=batch_capacity,
    arrays=("last",),
    loss_weighting="per-rollout",
    check=_check,
    doc=__doc__,
))
