"""`pods`: PODS, Policy Optimization with Down-Sampling (arXiv 2504.13818; YixuanEvenXu/pods@187f43b).

Each step takes m epoch-shuffled prompts and generates n rollouts for each; every prompt then trains on the m of
them with the largest reward variance (max-variance down-sampling), and the other n - m are discarded (they still
count). The code's rule (trainer/maxvargrpo_trainer.py:515-526): sort the n rewards in descending order, consider
"top i and bottom m - i" for i = m, 0, 1, ..., m - 1, and keep the first candidate of largest sample variance
(a later one must be strictly larger). With binary rewards, k of n correct, a candidate holding j successes has
variance proportional to j (m - j), so the kept counts follow from k alone; which rollouts of a class are kept is
arbitrary in the code (argsort order) and the first-generated here. The group's advantages use the kept subset's
own statistics. Defaults follow the code's config (n = 32, m = 8), and m = n / 4 when only n is given (as the
paper's main experiment, n = 64, m = 16).
"""

from cures._jit import njit
from cures.policies.kernels import (
    complete_single_round_step,
    keep_part,
    round_slots,
    uniform_round,
)
from cures.policies.spec import (
    Param,
    PolicySpec,
    batch_capacity,
    fits_dataset,
    integer,
    kernel_record,
    register,
    reporting_prior,
)

PARAMS = (
    Param("prompts_per_step", 64, "prompts per training step", integer(1)),
    Param("n", 32, "rollouts generated per prompt (code default 32; paper's main experiment 64)", integer(2)),
    Param("m", None, "rollouts trained per prompt (default n / 4: the code's 32 -> 8, the paper's 64 -> 16)",
          integer(2, optional=True), display="n/4"),
    reporting_prior(),
)
Params = kernel_record(__name__, PARAMS, decay=1.0)


@njit(cache=True)
def kept_successes(k, n, m):
    """Successes among the m rollouts PODS keeps when k of n are correct: the first of the candidates "top i and
    bottom m - i" (i = m, 0, 1, ..., m - 1, rewards sorted descending) with the strictly largest j (m - j)."""
    best_j, best = -1, -1.0
    for step in range(m + 1):
        i = m if step == 0 else step - 1
        top = min(i, k)  # successes among the top i
        bottom_successes = max(0, (m - i) - (n - k))  # the bottom m - i reach into the successes when failures run out
        j = top + bottom_successes
        variance = j * (m - j)
        if variance > best:
            best_j, best = j, variance
    return best_j


@njit(cache=True)
def plan(P, S, B, rng):
    uniform_round(S, B, rng, P.prompts_per_step, P.n)


@njit(cache=True)
def observe(P, S, B, rng):
    lo, hi = round_slots(B)
    for j in range(lo, hi):
        k = int(B.succ[j])
        successes = kept_successes(k, P.n, P.m)
        keep_part(B, j, successes, P.m - successes)
    return complete_single_round_step(S, B, P.decay)


def _resolve(v, n_prompts):
    if v["m"] is None:
        v["m"] = max(2, v["n"] // 4)
    return v


def _check(v, n_prompts):
    fits_dataset()(v, n_prompts)
    if v["m"] > v["n"]:
        raise ValueError(f"m {v['m']} must be <= n {v['n']} (PODS trains on m of the n rollouts)")


SPEC = register(PolicySpec(
    name="pods",
    summary="PODS: n rollouts per prompt, train on the m of largest reward variance (max-variance down-sampling).",
    params=PARAMS,
    kernel_params=Params,
    plan=plan,
    observe=observe,
    capacity=batch_capacity,
    loss_weighting="per-rollout",
    resolve=_resolve,
    check=_check,
    group_size_params=lambda n: {"n": 4 * n, "m": n},  # the paper's ratio: generate 4n, train GRPO's n
    doc=__doc__,
))
