"""`reinforce-ada`: Reinforce-Ada (arXiv 2510.04996; RLHFlow/Reinforce-Ada@05be605), adaptive rounds per prompt.

Each step takes m epoch-shuffled prompts. In round r = 0 .. N-1 every still-active prompt gets M more rollouts;
a prompt leaves once it has what its group needs (`_generate_multi_round_adaptive_downsampling`,
verl/trainer/ppo/ray_trainer.py:929-1221):

    balanced:          pos >= floor(n/2)  and  neg >= n - floor(n/2)        positive_focused:  pos >= 1

Each prompt then trains on n of its rollouts, the first-generated of each class: t_pos = min(floor(n/2), pos),
t_neg = min(n - t_pos, neg), the shortfall filled from the remaining positives, then negatives. A prompt still
active after N rounds keeps min(n, pos + neg) of them (positive_focused: t_pos = max(min(ceil(pos/(pos+neg) n),
take - 1), 1)). Its advantages use the global statistics of every rollout the prompt got in the step
(`global_stat_est`, the paper's script): baseline = pos / (pos + neg). The paper's advantage is Reinforce with that
baseline, unscaled (`norm_adv_by_std_in_grpo=False`): `--set estimator=dr_grpo` in the simulator,
`scale_rewards=none` in training. Every generated rollout counts: between m M and m M N per step.
"""

import math

from cures._jit import njit
from cures.policies.kernels import (
    add_slot,
    begin_training_round,
    end_plan,
    finish_step,
    keep_part,
    round_slots,
    set_baseline,
    uniform_batch,
    update_posterior_from_round,
)
from cures.policies.spec import (
    Param,
    PolicySpec,
    boolean,
    choice,
    fits_dataset,
    integer,
    kernel_record,
    register,
    reporting_prior,
)

POS, NEG = 0, 1  # columns of State.counts


PARAMS = (
    Param("prompts_per_step", 64, "prompts per training step (the paper's 512)", integer(1)),
    Param("round_repeat", 8, "M: rollouts per active prompt per round", integer(1)),
    Param("max_rounds", 4, "N: rounds per step (at most M N rollouts per prompt)", integer(1)),
    Param("n", 4, "rollouts trained per prompt (the effective group size)", integer(2)),
    Param("choice", "balanced", "exit rule: both classes (balanced) or one positive (positive_focused)",
          choice("balanced", "positive_focused")),
    Param("global_stats", True, "baseline from every rollout of the prompt in the step (the paper's script)",
          boolean()),
    reporting_prior(),
)
Params = kernel_record(__name__, PARAMS, derived=("balanced",), consumed=("choice",), decay=1.0)


@njit(cache=True, inline="always")
def finished(P, pos, neg):
    """The prompt has what its group needs and leaves the rounds."""
    if P.balanced:
        return pos >= P.n // 2 and neg >= P.n - P.n // 2
    return pos >= 1


@njit(cache=True)
def trained_counts(P, pos, neg, done):
    """(positives, negatives) the prompt's group trains on (down-sampling to n, `downsample_cache`)."""
    if done or P.balanced:
        t_pos = min(P.n // 2, pos)
        t_neg = min(P.n - t_pos, neg)
    else:  # positive_focused, unfinished after N rounds
        take = min(P.n, pos + neg)
        t_pos = min(max(min(math.ceil(pos / (pos + neg) * P.n), take - 1), 1), pos) if take > 0 else 0
        t_neg = min(take - t_pos, neg)
    short = P.n - t_pos - t_neg
    extra = min(short, pos - t_pos)  # fill from the remaining positives, then negatives
    t_pos += extra
    t_neg += min(short - extra, neg - t_neg)
    return t_pos, t_neg


@njit(cache=True)
def plan(P, S, B, rng):
    if B.vars.done:  # round 0 of a new step: m fresh prompts, counters reset
        batch = uniform_batch(S, P.prompts_per_step, rng)
        begin_training_round(B)
        for x in batch:
            S.counts[x, POS] = 0
            S.counts[x, NEG] = 0
            add_slot(B, x, P.round_repeat)
    else:  # round r: M more for every prompt still active
        lo, hi = round_slots(B)
        begin_training_round(B)
        for j in range(lo, hi):
            x = B.prompt[j]
            if not finished(P, S.counts[x, POS], S.counts[x, NEG]):
                add_slot(B, x, P.round_repeat)
    end_plan(S, B)


@njit(cache=True)
def observe(P, S, B, rng):
    lo, hi = round_slots(B)
    update_posterior_from_round(S, B, P.decay)
    active = 0
    for j in range(lo, hi):
        x = B.prompt[j]
        S.counts[x, POS] += int(B.succ[j])
        S.counts[x, NEG] += B.n[j] - int(B.succ[j])
        active += not finished(P, S.counts[x, POS], S.counts[x, NEG])
    if active > 0 and B.vars.n_rounds < P.max_rounds:
        return False
    # one group per prompt (round 0's slots, in order), built from its slots' first-generated rollouts
    for first in range(B.vars.n_slots):
        if B.round[first] > 0:
            break
        x = B.prompt[first]
        pos, neg = S.counts[x, POS], S.counts[x, NEG]
        want_pos, want_neg = trained_counts(P, pos, neg, finished(P, pos, neg))
        g = B.vars.n_groups
        for j in range(first, B.vars.n_slots):
            if B.prompt[j] != x or (want_pos == 0 and want_neg == 0):
                continue
            take_pos = min(want_pos, int(B.succ[j]))
            take_neg = min(want_neg, B.n[j] - int(B.succ[j]))
            keep_part(B, j, take_pos, take_neg)
            B.group[j] = g
            want_pos -= take_pos
            want_neg -= take_neg
        if P.global_stats:
            set_baseline(B, g, pos, pos + neg)
        B.vars.n_groups = g + 1
    finish_step(S, B)
    return True


def _resolve(v, n_prompts):
    v["balanced"] = v.pop("choice") == "balanced"
    return v


def _capacity(P, subset_size):
    return P.prompts_per_step * P.max_rounds


SPEC = register(PolicySpec(
    name="reinforce-ada",
    summary="Reinforce-Ada: rounds of M rollouts until a prompt has both classes, then n per prompt, global baseline.",
    params=PARAMS,
    kernel_params=Params,
    plan=plan,
    observe=observe,
    capacity=_capacity,
    arrays=("counts",),
    loss_weighting="per-rollout",
    resolve=_resolve,
    check=fits_dataset(),
    doc=__doc__,
))
