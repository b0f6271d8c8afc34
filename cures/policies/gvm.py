"""`gvm`: GVM allocation (arXiv 2505.02391), rollouts tilted toward hard prompts; the paper's allocation baseline.

Per iteration over a subset D_t (RLHFlow/GVM em/stage_2_calc_sample_size.py, em/run_em.sh): N' = 8 stage-1
samples per prompt give p_i = s_i / N' and G_i (the mean score norm of accepted responses; 1 when no norms are
reported, else sqrt(E1||s||^2) from the score statistics); then

    n_i ∝ G_i / sqrt(p_i + a / p_i^(b - 1)),   a = 1e-3, b = 2,   n_i = 0 if p_i = 0 or G_i = 0,

rounded to integers that sum exactly to `avg_rollouts` x |D_t| (largest remainder). The weight peaks at
p = sqrt(a) ~ 0.032 and decreases above it; all-correct prompts still get rollouts (useful for RAFT, zero
advantage under GRPO). The M steps of the iteration take prompts from an ordinary shuffled pass over D_t, each with
its fixed n_i (prompts with n_i = 0 are skipped), so a step's rollout count varies around m x avg_rollouts.
"""

import numpy as np

from cures._jit import njit
from cures.policies.kernels import (
    add_slot,
    begin_training_round,
    draw_uniform,
    end_plan,
    enter_next_subset,
    finish_step,
    largest_remainder,
    round_slots,
    screen_subset,
    train_on_round,
    update_posterior_from_round,
)
from cures.policies.spec import (
    Param,
    PolicySpec,
    auto_subsets,
    integer,
    kernel_record,
    real,
    register,
    screening_capacity,
)

PARAMS = (
    Param("prompts_per_step", 64, "prompts per training step m", integer(1)),
    Param("n_pre", 8, "stage-1 samples per prompt of a subset", integer(1)),
    Param("avg_rollouts", 8, "mean stage-2 rollouts per prompt (the subset's total / |D_t|)", integer(1)),
    Param("a", 1e-3, "weight parameter a", real(0.0, lo_open=True)),
    Param("b", 2.0, "weight parameter b", real()),
    Param("subsets", 0, "disjoint subsets (0: auto, about steps_per_subset x prompts_per_step prompts each)",
          integer(0)),
    Param("steps_per_subset", 10, "steps per EM iteration", integer(1)),
)
Params = kernel_record(__name__, PARAMS, decay=1.0)


@njit(cache=True)
def gvm_weight(p, g, a, b):
    """G / sqrt(p + a / p^(b-1)); 0 for p = 0 or G = 0."""
    if p <= 0.0 or g <= 0.0:
        return 0.0
    return g / np.sqrt(p + a / p ** (b - 1.0))


@njit(cache=True)
def plan(P, S, B, rng):
    if S.vars.need_subset:  # stage 1: pre-sample the new subset
        lo, hi = enter_next_subset(S, True)
        screen_subset(S, B, lo, hi, P.n_pre)
        return
    begin_training_round(B)
    batch = np.empty(P.prompts_per_step, np.int64)
    draw_uniform(S, P.prompts_per_step, rng, batch)
    for x in batch:
        add_slot(B, x, S.n_static[x])
    end_plan(S, B)


@njit(cache=True)
def observe(P, S, B, rng):
    lo, hi = round_slots(B)
    update_posterior_from_round(S, B, P.decay)
    if B.vars.screening:  # stage 2: sample sizes for the whole subset
        w = np.empty(hi - lo)
        for j in range(lo, hi):
            g = np.sqrt(B.score[j, 0]) if np.isfinite(B.score[j, 0]) else 1.0
            w[j - lo] = gvm_weight(B.succ[j] / B.n[j], g, P.a, P.b)
        n = np.empty(hi - lo, np.int64)
        largest_remainder(w, P.avg_rollouts * (hi - lo), n)
        for j in range(lo, hi):
            S.n_static[B.prompt[j]] = n[j - lo]
        return False
    train_on_round(B)
    finish_step(S, B)
    if S.vars.subset_step >= P.steps_per_subset:
        S.vars.need_subset = True
    return True


def _check(v, n_prompts):
    subset = n_prompts // min(v["subsets"], n_prompts)
    if subset < v["prompts_per_step"]:
        raise ValueError(f"subsets of about {subset} prompts are smaller than prompts_per_step "
                         f"{v['prompts_per_step']}")


SPEC = register(PolicySpec(
    name="gvm",
    summary="GVM: per-subset pre-sample, n_i ∝ G_i / sqrt(p_i + a/p_i^(b-1)) (decreasing in p), uniform prompts.",
    params=PARAMS,
    kernel_params=Params,
    plan=plan,
    observe=observe,
    capacity=screening_capacity,
    arrays=("n_static",),
    resolve=auto_subsets,
    loss_weighting="per-rollout",
    check=_check,
    doc=__doc__,
))
