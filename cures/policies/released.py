"""`cures-released`: what the public CurES code (github.com/ZexuSun/CurES at eccf298) actually does.

Per iteration over a subset D_t (read from that commit's sampler and rollout-allocation code):

1. N' pre-rollouts per prompt, s_x correct; counts (s_x, N') (reset every iteration).
2. Fixed sampling weights w_x = exp(sqrt(q(1-q)) / (100 (s_x + 1))) with q = (s_x + 1)/(N' + 2): a per-prompt
   temperature 100 (accepted + 1), so every weight lies in [1, 1.005] and sampling is uniform to within 0.3 %.
3. sigma_x = G sqrt(a(1-a)) with the raw rate a = s_x / N' (Eq. 21 with scalar norms; G = 1 without norms), so
   0/N' and N'/N' prompts get sigma = 0 and no rollouts for the whole iteration.
4. D_t is cut into K contiguous shards; in each shard n_x = round_half_even(m c sigma_x / sum_shard sigma) with the
   budget coefficient c (8): no clamp and no sum correction, so the per-step total is random.
5. Each of M steps draws m distinct prompts with probabilities w (no replacement within the batch), drops n_x = 0,
   pads the total to a multiple of `align_to` by +1 on the largest n_x in turn, and generates
   rollout_multiplier x n_x rollouts per prompt (the x4 of rollout.n = 4): one group per prompt, no posterior
   updates during the iteration, per-rollout (token-mean) loss weighting.
"""

import numpy as np

from cures._jit import njit
from cures.policies.kernels import (
    add_slot,
    begin_training_round,
    current_subset,
    end_plan,
    enter_next_subset,
    finish_step,
    round_slots,
    screen_subset,
    sigma_from_counts,
    stable_argsort,
    train_on_round,
    update_posterior_from_round,
)
from cures.policies.spec import (
    Param,
    PolicySpec,
    auto_subsets,
    boolean,
    integer,
    kernel_record,
    real,
    register,
    screening_capacity,
)

PARAMS = (
    Param("prompts_per_step", 64, "prompts per step m (released: 1024)", integer(1)),
    Param("n_pre", 4, "N': pre-rollouts per prompt per iteration", integer(1)),
    Param("subsets", 0,
          "iterations' disjoint subsets (0: auto, about steps_per_subset x prompts_per_step prompts each)",
          integer(0)),
    Param("steps_per_subset", 10, "M: steps per iteration", integer(1)),
    Param("shards", 8, "contiguous shards with their own budget (the GPUs of stage 0)", integer(1)),
    Param("budget_coef", 8, "per-shard budget = prompts_per_step x budget_coef (num_rollout_max)", integer(1)),
    Param("rollout_multiplier", 4, "rollouts per allocated unit (vLLM rollout.n)", integer(1)),
    Param("temperature_scale", 100.0, "per-prompt temperature = scale x (accepted + 1)", real(0.0, lo_open=True)),
    Param("within_batch_replacement", False, "draw the batch with replacement (released: False)", boolean()),
    Param("align_to", 8, "pad each step's total to a multiple of this (training GPUs)", integer(1)),
)
Params = kernel_record(__name__, PARAMS, decay=1.0)


@njit(cache=True)
def _draw_batch(P, S, members, rng):
    """m prompts of `members` with probability proportional to S.weight: distinct (Efraimidis-Spirakis keys) or
    i.i.d. with replacement."""
    k = members.shape[0]
    m = min(P.prompts_per_step, k) if not P.within_batch_replacement else P.prompts_per_step
    if P.within_batch_replacement:
        cum = np.cumsum(S.weight[members])
        out = np.empty(m, np.int64)
        for i in range(m):
            out[i] = members[min(np.searchsorted(cum, rng.random() * cum[-1], side="right"), k - 1)]
        return out
    keys = np.empty(k)
    for i in range(k):
        keys[i] = np.log(rng.random()) / S.weight[members[i]]
    return members[stable_argsort(-keys)[:m]]


@njit(cache=True)
def _static_allocation(P, S, B):
    """Steps 2-4 from the screening round just observed: weights w_x, sigma_x and per-shard n_x."""
    lo, hi = round_slots(B)
    for j in range(lo, hi):
        x, s, nn = B.prompt[j], B.succ[j], B.n[j]
        q = (s + 1.0) / (nn + 2.0)
        S.weight[x] = np.exp(np.sqrt(q * (1.0 - q)) / (P.temperature_scale * (s + 1.0)))
        S.sigma[x] = sigma_from_counts(s / nn, B.score[j, 0], B.score[j, 1], B.score[j, 2])
    width = (hi - lo) // P.shards
    budget = P.prompts_per_step * P.budget_coef
    for k in range(P.shards):
        a = lo + k * width
        b = hi if k == P.shards - 1 else a + width
        total = 0.0
        for j in range(a, b):
            total += S.sigma[B.prompt[j]]
        for j in range(a, b):
            x = B.prompt[j]
            S.n_static[x] = int(np.rint(budget * S.sigma[x] / total)) if total > 0.0 else 0


@njit(cache=True)
def plan(P, S, B, rng):
    if S.vars.need_subset:  # step 1: pre-rollouts of the new subset
        lo, hi = enter_next_subset(S, True)
        screen_subset(S, B, lo, hi, P.n_pre)
        return

    begin_training_round(B)
    lo, hi = current_subset(S)
    chosen = _draw_batch(P, S, S.order[lo:hi], rng)  # step 5
    n = S.n_static[chosen].copy()
    total = n.sum()
    if total > 0 and P.align_to > 1:  # pad to a multiple of the GPU count, largest n first
        desc = stable_argsort(-n.astype(np.float64))  # as floats (exact): the type the shared sort is compiled for
        n_pos = np.count_nonzero(n)
        for r in range((-total) % P.align_to):
            n[desc[r % n_pos]] += 1
    for i in range(chosen.shape[0]):
        add_slot(B, chosen[i], P.rollout_multiplier * n[i])  # n = 0 adds no slot
    end_plan(S, B)


@njit(cache=True)
def observe(P, S, B, rng):
    if B.vars.screening:
        update_posterior_from_round(S, B, P.decay)  # counts (s_x, N') of this iteration
        _static_allocation(P, S, B)
        return False
    train_on_round(B)
    finish_step(S, B)
    if S.vars.subset_step >= P.steps_per_subset:
        S.vars.need_subset = True
    return True


SPEC = register(PolicySpec(
    name="cures-released",
    summary="The public CurES code's behaviour: near-uniform sampler, static per-subset n from s/N', x4 rollouts.",
    params=PARAMS,
    kernel_params=Params,
    plan=plan,
    observe=observe,
    capacity=screening_capacity,
    arrays=("sigma", "weight", "n_static"),
    resolve=auto_subsets,
    loss_weighting="per-rollout",
    doc=__doc__,
))
