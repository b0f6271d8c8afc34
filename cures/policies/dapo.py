"""`dapo`: DAPO dynamic sampling (arXiv 2503.14476), a post-hoc zero-variance filter with refills and no memory.

Each round draws `gen_batch_size` prompts (epoch-wise shuffled) with n rollouts each and keeps the groups whose
rewards are not all equal (0 < s < n for binary rewards); rounds repeat until `batch_size` groups survive, and the
step trains on exactly the first `batch_size` of them (verl-recipe dapo/dapo_ray_trainer.py, volcengine/verl
FilterGroupsConfig). Where verl raises an error once `max_gen_batches` rounds are reached, this policy trains on
the groups it has and records the shortfall (state registers SHORT_STEPS, SHORT_GROUPS). Every generated rollout
counts, so the expected cost per kept group is n / (1 - f0) with f0 the zero-variance fraction.
"""

import numpy as np
from numba import njit

from cures.policies.kernels import (
    DAPO,
    N_GROUPS,
    N_ROUNDS,
    NEED_SUBSET,
    PHASE,
    TRAIN,
    add_slot,
    begin_round,
    draw_uniform,
    end_plan,
    enter_next_subset,
    finish_step,
    keep_mixed_groups,
    record_shortfall,
    update_posterior_from_round,
)
from cures.policies.spec import Param, PolicySpec, integer, prior_pair, register


@njit(cache=True)
def plan(P, S, B, rng):
    if S.ireg[PHASE] == NEED_SUBSET:
        enter_next_subset(P, S, rng)
    begin_round(B, TRAIN)
    batch = np.empty(P.gen_batch_size, np.int64)
    draw_uniform(S, P.gen_batch_size, rng, batch)
    for x in batch:
        add_slot(B, x, P.n)
    end_plan(S, B)


@njit(cache=True)
def observe(P, S, B, rng):
    update_posterior_from_round(P, S, B)
    keep_mixed_groups(P, B)
    if B.reg[N_GROUPS] < P.batch_size and B.reg[N_ROUNDS] < P.max_gen_batches:
        return False  # refill
    record_shortfall(P, S, B)
    finish_step(S, B)
    return True


def _resolve(v):
    if v["gen_batch_size"] is None:
        v["gen_batch_size"] = 3 * v["batch_size"]
    return v


def _check(v, n_prompts):
    if v["gen_batch_size"] > n_prompts:
        raise ValueError(f"gen_batch_size {v['gen_batch_size']} exceeds n_prompts {n_prompts}")


SPEC = register(PolicySpec(
    name="dapo",
    kind=DAPO,
    summary="DAPO dynamic sampling: drop all-equal groups, refill until batch_size mixed groups (capped, no crash).",
    params=(
        Param("batch_size", 64, "mixed groups to train per step (train_batch_size)", integer(1)),
        Param("n", 8, "rollouts per prompt", integer(2)),
        Param("gen_batch_size", None, "prompts per generation round (default 3 x batch_size, verl's 1536/512)",
              integer(1, optional=True), display="3*batch_size"),
        Param("max_gen_batches", 10, "generation rounds per step before training on what there is", integer(1)),
        Param("prior", (1.0, 1.0), "Beta prior of the reported pass-rate estimates", prior_pair()),
    ),
    loss_weighting="per-rollout",
    check=_check,
    resolve=_resolve,
    capacity=lambda P, n_prompts: P.gen_batch_size * P.max_gen_batches,
    doc=__doc__,
))
