"""`grpo`: uniform GRPO, the baseline every curriculum must beat at equal rollouts (arXiv 2402.03300).

Each step takes the next m prompts of an epoch-wise shuffled pass over the data (TRL's RepeatSampler: one random
permutation per pass, incomplete last chunk dropped) and gives each the same n = N / m rollouts. The Beta posterior is
updated with the results (Eq. 23-24) only so that callers can report p_hat; it never influences the plan.
"""

import numpy as np
from numba import njit

from cures.policies.kernels import (
    GRPO,
    NEED_SUBSET,
    PHASE,
    TRAIN,
    add_slot,
    begin_round,
    draw_uniform,
    end_plan,
    enter_next_subset,
    finish_step,
    train_on_round,
    update_posterior_from_round,
)
from cures.policies.spec import Param, PolicySpec, integer, prior_pair, register


@njit(cache=True)
def plan(P, S, B, rng):
    if S.ireg[PHASE] == NEED_SUBSET:
        enter_next_subset(P, S, rng)
    begin_round(B, TRAIN)
    batch = np.empty(P.batch_size, np.int64)
    draw_uniform(S, P.batch_size, rng, batch)
    n = P.budget // P.batch_size
    for x in batch:
        add_slot(B, x, n)
    end_plan(S, B)


@njit(cache=True)
def observe(P, S, B, rng):
    update_posterior_from_round(P, S, B)
    train_on_round(B)
    finish_step(S, B)
    return True


def _check(v, n_prompts):
    m, budget = v["batch_size"], v["budget"]
    if n_prompts < m:
        raise ValueError(f"batch_size {m} exceeds n_prompts {n_prompts} (uniform batches hold distinct prompts)")
    if budget % m or budget // m < 2:
        raise ValueError(f"budget {budget} must be a multiple of batch_size {m} with at least 2 rollouts per prompt")


SPEC = register(PolicySpec(
    name="grpo",
    kind=GRPO,
    summary="Uniform GRPO: epoch-shuffled prompts, fixed n = budget / batch_size rollouts each.",
    params=(
        Param("batch_size", 64, "prompts per training step m", integer(1)),
        Param("budget", None, "rollouts per training step N (default 8 x batch_size)", integer(2, optional=True),
              display="8*batch_size"),
        Param("prior", (1.0, 1.0), "Beta prior of the reported pass-rate estimates", prior_pair()),
    ),
    loss_weighting="per-rollout",
    check=_check,
    doc=__doc__,
))
