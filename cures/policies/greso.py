"""`greso`: GRESO (arXiv 2506.02177), skip prompts that stayed zero-variance in their recent observations.

Per prompt, c_e counts its consecutive most recent observations with mean reward >= 0.98 (all correct) and c_h
those with mean <= 0.11 (all wrong). A candidate is skipped, before any rollout, with probability

    1 - max(q_easy^c_e, 0.01)   if c_e > 0,        1 - max(q_hard^c_h, 0.01)   if c_h > 0,

and survivors go through DAPO-style dynamic sampling (n rollouts, keep mixed groups, refill until `prompts_per_step`).
Self-tuning after each step: q_easy moves -0.01 when the step's all-correct share of generated groups is above
target/3 and +0.01 otherwise; q_hard likewise against 2 target/3 for the all-wrong share (target 0.25), both kept in
[0.05, 0.95]. A refill round asks for remaining / (1 - z) x 1.25 surviving prompts, z the last zero-variance ratio.
Source: Infini-AI-Lab/GRESO verl/trainer/ttis/presampling_selector.py. Candidates come from an epoch-wise shuffled
pass; a skipped candidate is spent for that pass. A round examines at most one pass of candidates.
"""

import math

import numpy as np

from cures._jit import njit
from cures.policies.kernels import (
    add_slot,
    begin_training_round,
    draw_uniform,
    end_plan,
    ensure_subset,
    finish_step,
    keep_mixed_groups,
    record_shortfall,
    round_slots,
    update_posterior_from_round,
)
from cures.policies.spec import Param, PolicySpec, integer, kernel_record, real, register, reporting_prior

PARAMS = (
    Param("prompts_per_step", 64, "mixed groups to train per step", integer(1)),
    Param("n", 8, "rollouts per prompt", integer(2)),
    Param("target", 0.25, "target zero-variance ratio", real(0.0, 1.0)),
    Param("q_init", 0.5, "initial keep base q_easy = q_hard", real(0.0, 1.0)),
    Param("q_step", 0.01, "self-tuning step of q", real(0.0, 1.0)),
    Param("max_gen_batches", 10, "generation rounds per step before training on what there is", integer(1)),
    reporting_prior(),
)
Params = kernel_record(__name__, PARAMS, derived=("gen_batch_size",), q_min=0.05, q_max=0.95, easy_threshold=0.98,
                       hard_threshold=0.11, min_keep=0.01, gen_growth=1.25, decay=1.0)


STATE_VARS = (
    ("q_easy", np.float64),  # keep base of prompts with an all-correct streak
    ("q_hard", np.float64),  # keep base of prompts with an all-wrong streak
    ("zero_var", np.float64),  # zero-variance share of the groups generated in the last step so far
)
EASY, HARD = 0, 1  # columns of State.streak: consecutive all-correct / all-wrong observations


@njit(cache=True)
def skip_probability(P, S, x):
    """1 - max(q^c, min_keep) for the prompt's current easy or hard streak c (0 when it has none)."""
    c_e, c_h = S.streak[x, EASY], S.streak[x, HARD]
    if c_e > 0:
        return 1.0 - max(S.vars.q_easy ** c_e, P.min_keep)
    if c_h > 0:
        return 1.0 - max(S.vars.q_hard ** c_h, P.min_keep)
    return 0.0


@njit(cache=True)
def plan(P, S, B, rng):
    ensure_subset(S)
    begin_training_round(B)
    remaining = P.prompts_per_step - B.vars.n_groups
    z = min(S.vars.zero_var, 0.95)
    wanted = max(1, min(int(math.ceil(remaining / (1.0 - z) * P.gen_growth)), P.gen_batch_size))
    one = np.empty(1, np.int64)
    examined = 0
    added = 0
    while added < wanted and examined < S.vars.queue_len:  # at most one pass of candidates
        draw_uniform(S, 1, rng, one)
        examined += 1
        if rng.random() >= skip_probability(P, S, one[0]):
            add_slot(B, one[0], P.n)
            added += 1
    end_plan(S, B)


@njit(cache=True)
def observe(P, S, B, rng):
    lo, hi = round_slots(B)
    update_posterior_from_round(S, B, P.decay)
    for j in range(lo, hi):
        x, mean = B.prompt[j], B.succ[j] / B.n[j]
        if mean >= P.easy_threshold:
            S.streak[x, EASY] += 1
            S.streak[x, HARD] = 0
        elif mean <= P.hard_threshold:
            S.streak[x, HARD] += 1
            S.streak[x, EASY] = 0
        else:
            S.streak[x, EASY] = 0
            S.streak[x, HARD] = 0
    keep_mixed_groups(B, P.prompts_per_step)
    generated = max(B.vars.generated_groups, 1)
    S.vars.zero_var = (B.vars.all_correct + B.vars.all_wrong) / generated
    if B.vars.n_groups < P.prompts_per_step and B.vars.n_rounds < P.max_gen_batches:
        return False
    # self-tuning toward the target zero-variance ratio
    step_q = P.q_step if B.vars.all_correct / generated <= P.target / 3.0 else -P.q_step
    S.vars.q_easy = min(max(S.vars.q_easy + step_q, P.q_min), P.q_max)
    step_q = P.q_step if B.vars.all_wrong / generated <= 2.0 * P.target / 3.0 else -P.q_step
    S.vars.q_hard = min(max(S.vars.q_hard + step_q, P.q_min), P.q_max)
    record_shortfall(S, B, P.prompts_per_step)
    finish_step(S, B)
    return True


def _resolve(v, n_prompts):
    v["gen_batch_size"] = 25 * v["prompts_per_step"]  # cap on one round's prompts (remaining / 0.05 x 1.25)
    return v


SPEC = register(PolicySpec(
    name="greso",
    summary="GRESO: skip prompts with all-correct/all-wrong streaks (self-tuned), then DAPO-style refills.",
    params=PARAMS,
    kernel_params=Params,
    plan=plan,
    observe=observe,
    capacity=lambda P, subset_size: min(P.gen_batch_size, subset_size) * P.max_gen_batches,
    arrays=("streak",),
    state_vars=STATE_VARS,
    init_vars=lambda P: {"q_easy": P.q_init, "q_hard": P.q_init},
    loss_weighting="per-rollout",
    resolve=_resolve,
    doc=__doc__,
))
