"""`speed`: SPEED-RL (arXiv 2506.09016), a cheap screen, then rollouts only for prompts with 0 < p_hat < 1.

Each screening round gives N_init rollouts to each of `gen_batch_size` epoch-shuffled prompts and keeps those with
mixed results; the next round gives n_continue more rollouts to as many of them as the batch still needs, and each
continued prompt trains on all N_init + n_continue rollouts as one group (the screening rollouts are reused).
Screening rounds repeat until `batch_size` prompts are continued or `max_gen_batches` screens were made (then the
step trains on what it has and records the shortfall). Source: Zanette-Labs/speed-rl
verl/trainer/ppo/data_controller.py. Two simplifications, both where the code batches work across steps: the
continuation runs as its own round instead of riding with the next screening batch, and screened-mixed prompts that
the batch no longer needs are dropped (their screening rollouts still count), so no state crosses steps.
"""

import numpy as np
from numba import njit

from cures.policies.kernels import (
    DONE,
    N_GROUPS,
    N_SLOTS,
    NEED_SUBSET,
    NEXT,
    PHASE,
    PURPOSE,
    ROUND_START,
    SCREEN,
    SCREENS,
    SPEED,
    TRAIN,
    add_slot,
    begin_round,
    draw_uniform,
    end_plan,
    enter_next_subset,
    finish_step,
    is_mixed,
    record_shortfall,
    update_posterior_from_round,
)
from cures.policies.spec import Param, PolicySpec, integer, prior_pair, register

SCREEN_AGAIN, CONTINUE = 0, 1  # values of B.reg[NEXT]


@njit(cache=True)
def _continue_mixed(P, S, B):
    """Open a continuation round for the mixed prompts of the screening round just observed."""
    lo, hi = B.reg[ROUND_START], B.reg[N_SLOTS]
    begin_round(B, TRAIN)
    for j in range(lo, hi):
        if B.reg[N_GROUPS] >= P.batch_size:
            break
        if is_mixed(B, j):
            g = B.reg[N_GROUPS]
            B.group[j] = g  # the screening rollouts train too
            add_slot(B, B.prompt[j], P.n_continue)
            B.group[B.reg[N_SLOTS] - 1] = g
            B.reg[N_GROUPS] = g + 1
    end_plan(S, B)


@njit(cache=True)
def plan(P, S, B, rng):
    if S.ireg[PHASE] == NEED_SUBSET:
        enter_next_subset(P, S, rng)
    if B.reg[DONE] == 0 and B.reg[NEXT] == CONTINUE:
        _continue_mixed(P, S, B)
        return
    begin_round(B, SCREEN)
    batch = np.empty(P.gen_batch_size, np.int64)
    draw_uniform(S, P.gen_batch_size, rng, batch)
    for x in batch:
        add_slot(B, x, P.n_pre)
    end_plan(S, B)


@njit(cache=True)
def observe(P, S, B, rng):
    update_posterior_from_round(P, S, B)
    B.reg[NEXT] = SCREEN_AGAIN
    if B.reg[PURPOSE] == SCREEN:
        B.reg[SCREENS] += 1
        for j in range(B.reg[ROUND_START], B.reg[N_SLOTS]):
            if is_mixed(B, j):
                B.reg[NEXT] = CONTINUE
                return False
    if B.reg[N_GROUPS] < P.batch_size and B.reg[SCREENS] < P.max_gen_batches:
        return False
    record_shortfall(P, S, B)
    finish_step(S, B)
    return True


def _resolve(v):
    if v["gen_batch_size"] is None:
        v["gen_batch_size"] = 4 * v["batch_size"]
    return v


def _check(v, n_prompts):
    if v["gen_batch_size"] > n_prompts:
        raise ValueError(f"gen_batch_size {v['gen_batch_size']} exceeds n_prompts {n_prompts}")


SPEC = register(PolicySpec(
    name="speed",
    kind=SPEED,
    summary="SPEED-RL: screen with N_init rollouts, continue only mixed prompts with n_continue more (reused).",
    params=(
        Param("batch_size", 64, "prompts to train per step", integer(1)),
        Param("n_init", 4, "screening rollouts per candidate (N_init)", integer(2), field="n_pre"),
        Param("n_continue", 20, "rollouts added to a screened-mixed prompt", integer(1)),
        Param("gen_batch_size", None, "candidates per screening round (default 4 x batch_size, as 64 / 16)",
              integer(1, optional=True), display="4*batch_size"),
        Param("max_gen_batches", 10, "screening rounds per step before training on what there is", integer(1)),
        Param("prior", (1.0, 1.0), "Beta prior of the reported pass-rate estimates", prior_pair()),
    ),
    loss_weighting="per-rollout",
    check=_check,
    resolve=_resolve,
    capacity=lambda P, n_prompts: (P.gen_batch_size + P.batch_size) * P.max_gen_batches,
    doc=__doc__,
))
