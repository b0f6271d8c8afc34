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

from numba import njit

from cures.policies.kernels import (
    DONE,
    N_GROUPS,
    N_SLOTS,
    NEXT,
    PURPOSE,
    ROUND_START,
    SCREEN,
    SCREENS,
    SPEED,
    TRAIN,
    add_slot,
    begin_round,
    end_plan,
    finish_step,
    is_mixed,
    open_uniform_round,
    record_shortfall,
    update_posterior_from_round,
)
from cures.policies.spec import (
    Param,
    PolicySpec,
    default_gen_batch,
    fits_dataset,
    gen_batch_param,
    integer,
    register,
    reporting_prior,
)

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
    if B.reg[DONE] == 0 and B.reg[NEXT] == CONTINUE:
        _continue_mixed(P, S, B)
        return
    for x in open_uniform_round(P, S, B, rng, P.gen_batch_size, SCREEN):
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


SPEC = register(PolicySpec(
    name="speed",
    kind=SPEED,
    summary="SPEED-RL: screen with N_init rollouts, continue only mixed prompts with n_continue more (reused).",
    params=(
        Param("batch_size", 64, "prompts to train per step", integer(1)),
        Param("n_init", 4, "screening rollouts per candidate (N_init)", integer(2), field="n_pre"),
        Param("n_continue", 20, "rollouts added to a screened-mixed prompt", integer(1)),
        gen_batch_param(4, "candidates per screening round (the paper's 64 / 16)"),
        Param("max_gen_batches", 10, "screening rounds per step before training on what there is", integer(1)),
        reporting_prior(),
    ),
    loss_weighting="per-rollout",
    check=fits_dataset("gen_batch_size"),
    resolve=default_gen_batch(4),
    capacity=lambda P, n_prompts: (P.gen_batch_size + P.batch_size) * P.max_gen_batches,
    doc=__doc__,
))
