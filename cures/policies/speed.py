"""`speed`: SPEED-RL (arXiv 2506.09016), a cheap screen, then rollouts only for prompts with 0 < p_hat < 1.

Each screening round gives N_init rollouts to each of `gen_batch_size` epoch-shuffled prompts and keeps those with
mixed results; the next round gives n_continue more rollouts to as many of them as the batch still needs, and each
continued prompt trains on all N_init + n_continue rollouts as one group (the screening rollouts are reused).
Screening rounds repeat until `prompts_per_step` prompts are continued or `max_gen_batches` screens were made (then the
step trains on what it has and records the shortfall). Source: Zanette-Labs/speed-rl
verl/trainer/ppo/data_controller.py. Two simplifications, both where the code batches work across steps: the
continuation runs as its own round instead of riding with the next screening batch, and screened-mixed prompts that
the batch no longer needs are dropped (their screening rollouts still count), so no state crosses steps.
"""

import numpy as np

from cures._jit import njit
from cures.policies.kernels import (
    add_slot,
    begin_screening_round,
    begin_training_round,
    end_plan,
    finish_step,
    is_mixed,
    record_shortfall,
    round_slots,
    uniform_batch,
    update_posterior_from_round,
)
from cures.policies.spec import (
    Param,
    PolicySpec,
    default_gen_batch,
    fits_dataset,
    gen_batch_param,
    integer,
    kernel_record,
    register,
    reporting_prior,
)

PARAMS = (
    Param("prompts_per_step", 64, "prompts to train per step", integer(1)),
    Param("n_init", 4, "screening rollouts per candidate (N_init)", integer(2)),
    Param("n_continue", 20, "rollouts added to a screened-mixed prompt", integer(1)),
    gen_batch_param(4, "candidates per screening round (the paper's 64 / 16)"),
    Param("max_gen_batches", 10, "screening rounds per step before training on what there is", integer(1)),
    reporting_prior(),
)
Params = kernel_record(__name__, PARAMS, decay=1.0)


STEP_VARS = (
    ("screens", np.int64),  # screening rounds in this step
    ("continue_mixed", np.bool_),  # the next round continues the mixed prompts of the screen just observed
)


@njit(cache=True)
def _continue_mixed(P, S, B):
    """Open a continuation round for the mixed prompts of the screening round just observed."""
    lo, hi = round_slots(B)
    begin_training_round(B)
    for j in range(lo, hi):
        if B.vars.n_groups >= P.prompts_per_step:
            break
        if is_mixed(B, j):
            g = B.vars.n_groups
            B.group[j] = g  # the screening rollouts train too
            add_slot(B, B.prompt[j], P.n_continue)
            B.group[B.vars.n_slots - 1] = g
            B.vars.n_groups = g + 1
    end_plan(S, B)


@njit(cache=True)
def plan(P, S, B, rng):
    if B.vars.continue_mixed:
        _continue_mixed(P, S, B)
        return
    if B.vars.done:  # a new step
        B.vars.screens = 0
    batch = uniform_batch(S, P.gen_batch_size, rng)
    begin_screening_round(B)
    for x in batch:
        add_slot(B, x, P.n_init)
    end_plan(S, B)


@njit(cache=True)
def observe(P, S, B, rng):
    update_posterior_from_round(S, B, P.decay)
    B.vars.continue_mixed = False
    if B.vars.screening:
        B.vars.screens += 1
        lo, hi = round_slots(B)
        for j in range(lo, hi):
            if is_mixed(B, j):
                B.vars.continue_mixed = True
                return False
    if B.vars.n_groups < P.prompts_per_step and B.vars.screens < P.max_gen_batches:
        return False
    record_shortfall(S, B, P.prompts_per_step)
    finish_step(S, B)
    return True


def _capacity(P, subset_size):
    return (P.gen_batch_size + P.prompts_per_step) * P.max_gen_batches


SPEC = register(PolicySpec(
    name="speed",
    summary="SPEED-RL: screen with N_init rollouts, continue only mixed prompts with n_continue more (reused).",
    params=PARAMS,
    kernel_params=Params,
    plan=plan,
    observe=observe,
    capacity=_capacity,
    step_vars=STEP_VARS,
    loss_weighting="per-rollout",
    check=fits_dataset("gen_batch_size"),
    resolve=default_gen_batch(4),
    doc=__doc__,
))
