"""The CurES family: Algorithm 1 of arXiv 2510.01037 with its ablations (`cures`, `cures-paper`, `cures-sampling`,
`cures-allocation`).

Per subset D_t (Algorithm 1, lines 1-8): optionally reset the Beta counts, optionally draw N' pre-rollouts per prompt
to initialise them (Eq. 22) and the per-prompt sigma_i (Eq. 21), and build rho* (Eq. 14). Per step (lines 10-16):
draw m prompts from rho* with replacement (or uniformly), give them n_i rollouts by Eq. 20 in integers under the
budget N = rollouts_per_step (or N/m each), and update the posterior and rho* from the successes (Eq. 23-24).
Every draw is its own training group, so a prompt drawn twice forms two groups.
"""

import numpy as np

from cures._jit import njit
from cures.policies.kernels import (
    add_slot,
    allocate_or_uniform,
    begin_training_round,
    current_subset,
    draw_uniform,
    end_plan,
    enter_next_subset,
    fill_rho_tree,
    finish_step,
    posterior_sigmas,
    rho_draws,
    rho_update,
    round_slots,
    screen_subset,
    sigma_from_counts,
    train_on_round,
    update_posterior_from_round,
)
from cures.policies.spec import (
    Param,
    PolicySpec,
    batch_capacity,
    boolean,
    choice,
    common_params,
    fits_dataset,
    integer,
    kernel_record,
    real,
    register,
)
from cures.posterior import posterior_mean

TAU_DOC = (
    "Eq. 14 temperature; the paper reports none. Default 0.1: the most and least informative prompts differ by "
    "exp(0.5/0.1) = 148x in probability, so prompts believed solved or hopeless are drawn ~100x less often, while "
    "every prompt keeps a positive probability and an unseen prompt (p_hat = 1/2 under Beta(1,1)) is drawn first"
)

_TAU = Param("tau", 0.1, TAU_DOC, real(1e-3))
_SCHEDULE = (
    Param("n_pre", 0, "N': pre-rollouts per prompt when a subset starts (counted; 0: none)", integer(0)),
    Param("subsets", 1, "T: disjoint random subsets trained in turn (Algorithm 1)", integer(1)),
    Param("steps_per_subset", 0, "M: steps per subset (0: stay on one subset)", integer(0)),
    Param("reset", True, "reset the posterior of a subset when it starts", boolean()),
    Param("sigma", "posterior", "sigma_i from the current posterior each step, or fixed from the pre-rollouts",
          choice("posterior", "pre-rollout")),
)
PARAMS = (*common_params(), _TAU, *_SCHEDULE)  # `cures`; the other members take some of them, with other defaults
Params = kernel_record(__name__, PARAMS,
                       derived=("sigma_from_pre_rollouts",),  # sigma_i fixed by the subset's pre-rollouts (line 8)
                       consumed=("sigma",),
                       rho_sampling=True,  # line 11: draw from rho* (else an epoch-shuffled uniform pass)
                       sigma_allocation=True)  # line 12: n_i by Eq. 20 (else N / m each)


@njit(cache=True, inline="always")
def _start_estimates(P, S, lo, hi):
    """Lines 6-8: rho* over D_t from the current counts (sigma_i is set by the pre-rollout round, if any)."""
    if P.rho_sampling:
        fill_rho_tree(S, lo, hi, P.tau)


@njit(cache=True)
def plan(P, S, B, rng):
    if S.vars.need_subset:
        lo, hi = enter_next_subset(S, P.reset)
        if P.n_pre > 0:  # lines 3-5: N' pre-rollouts for every prompt of D_t, counted, not trained
            screen_subset(S, B, lo, hi, P.n_pre)
            return
        for x in S.order[lo:hi]:
            S.sigma[x] = sigma_from_counts(posterior_mean(S.alpha, S.beta, x), np.nan, np.nan, np.nan)
        _start_estimates(P, S, lo, hi)

    begin_training_round(B)
    m = P.prompts_per_step
    batch = np.empty(m, np.int64)
    if P.rho_sampling:  # line 11: x_i ~ rho*, i.i.d. with replacement
        rho_draws(S, rng, batch)
    else:
        draw_uniform(S, m, rng, batch)

    n = np.empty(m, np.int64)
    if P.sigma_allocation:  # line 12: n_i = N sigma_i / sum_j sigma_j (Eq. 20), exact integers
        w = np.empty(m)
        if P.sigma_from_pre_rollouts:
            for i in range(m):
                w[i] = S.sigma[batch[i]]
        else:
            posterior_sigmas(S, batch, w)  # Eq. 21 with equal score norms, refreshed from p_hat
        allocate_or_uniform(w, P.rollouts_per_step, P.n_min, P.n_max, n)
    else:
        n[:] = P.rollouts_per_step // m
    for i in range(m):
        add_slot(B, batch[i], n[i])
    end_plan(S, B)


@njit(cache=True)
def observe(P, S, B, rng):
    lo, hi = round_slots(B)
    update_posterior_from_round(S, B, P.decay)  # Eq. 22 (pre-rollouts) or Eq. 23-24 (line 14)
    if B.vars.screening:
        for j in range(lo, hi):  # line 8: sigma_i from the pre-rollouts
            x = B.prompt[j]
            S.sigma[x] = sigma_from_counts(posterior_mean(S.alpha, S.beta, x), B.score[j, 0], B.score[j, 1],
                                           B.score[j, 2])
        t_lo, t_hi = current_subset(S)
        _start_estimates(P, S, t_lo, t_hi)
        return False
    if P.rho_sampling:  # line 15: recompute rho* where the posterior moved
        rho_update(S, B.prompt[lo:hi], P.tau)
    train_on_round(B)
    finish_step(S, B)
    if P.steps_per_subset > 0 and S.vars.subset_step >= P.steps_per_subset:
        S.vars.need_subset = True
    return True


# --------------------------------------------------------------------------------------------------------------------
# The four named policies
# --------------------------------------------------------------------------------------------------------------------



def _resolve(v, n_prompts):
    """Public values -> kernel fields: n_max None means no limit (0), sigma='pre-rollout' fixes sigma_i."""
    v["n_max"] = v.get("n_max") or 0
    v["sigma_from_pre_rollouts"] = v.pop("sigma", "posterior") == "pre-rollout"
    return v


def _capacity(P, subset_size):
    """One training round, plus a screening round over the largest subset when there are pre-rollouts."""
    return batch_capacity(P, subset_size) + (subset_size if P.n_pre > 0 else 0)


def _check_family(v, n_prompts):
    m, rollouts_per_step, n_min, n_max = v["prompts_per_step"], v["rollouts_per_step"], v.get("n_min",
                                                                                              2), v.get("n_max", 0)
    if rollouts_per_step < m * n_min:
        raise ValueError(f"rollouts_per_step {rollouts_per_step} is below prompts_per_step x n_min = {m * n_min}")
    if n_max and (n_max < n_min or rollouts_per_step > m * n_max):
        raise ValueError(f"n_max {n_max} must be >= n_min {n_min} and allow the budget: prompts_per_step x n_max >= "
                         f"{rollouts_per_step}")
    subsets, steps = v.get("subsets", 1), v.get("steps_per_subset", 0)
    if subsets > 1 and steps < 1:
        raise ValueError(f"subsets={subsets} needs steps_per_subset >= 1")
    if v["sigma_from_pre_rollouts"] and v["n_pre"] < 1:
        raise ValueError("sigma='pre-rollout' needs n_pre >= 1")


def _check_fixed_n(v, n_prompts):
    _check_family(v, n_prompts)
    if v["rollouts_per_step"] % v["prompts_per_step"]:
        raise ValueError(f"rollouts_per_step {v['rollouts_per_step']} must be a multiple of prompts_per_step "
                         f"{v['prompts_per_step']} (fixed n)")


def _check_uniform(v, n_prompts):
    _check_family(v, n_prompts)
    fits_dataset()(v, n_prompts)


def _register(**spec):
    """Register a member of the family: the kernels, parameters and hooks above, with its own switches."""
    return register(PolicySpec(kernel_params=Params, plan=plan, observe=observe, capacity=_capacity,
                               resolve=_resolve, **spec))



_register(
    name="cures",
    summary="CurES: rho* sampling (Eq. 14) from the live Beta posterior and sigma-proportional rollouts (Eq. 20).",
    params=PARAMS,
    arrays=("sigma", "tree"),
    check=_check_family,
    doc=__doc__ + """
Defaults: one global tau = 0.1 (see `tau`), no pre-rollouts (the Beta(1,1) prior makes unseen prompts the most
attractive, so exploration needs no screening budget), sigma_i = sqrt(p_hat(1-p_hat)) refreshed from the posterior
every step (Eq. 21 with equal score norms; fresher than the paper's once-per-iteration sigma), the whole dataset as
one subset, no forgetting (the paper has none; set `decay` < 1 for long runs with fast drift).
""",
)

_register(
    name="cures-paper",
    summary="CurES Algorithm 1 as written: T subsets x M=10 steps, N'=4 pre-rollouts, reset, sigma from pre-rollouts.",
    params=(
        *common_params(), _TAU,
        Param("n_pre", 4, "N': pre-rollouts per prompt when a subset starts", integer(1)),
        Param("subsets", 15, "T: disjoint random subsets trained in turn", integer(1)),
        Param("steps_per_subset", 10, "M: training steps per subset", integer(1)),
    ),
    fixed={"sigma_from_pre_rollouts": True, "reset": True},
    arrays=("sigma", "tree"),
    check=_check_family,
    doc=__doc__ + """
Algorithm 1 of the paper: per subset, reset, N' = 4 pre-rollouts, p_hat and rho* from the counts (Beta(1,1) prior
as in the reference code; the paper's literal alpha0 = s, beta0 = N' - s is the improper prior (0, 0), which
gives p_hat in {0, 1} and is not offered), sigma_i fixed for the subset (line 8), M = 10 steps, budget 8 x batch
by default. The paper does not say how Eq. 20 is rounded; here it is the exact integer optimum with n_min = 2.
""",
)

_register(
    name="cures-sampling",
    summary="Ablation: CurES's rho* prompt sampling (Eq. 14) with a fixed n = rollouts_per_step / prompts_per_step.",
    params=(*(p for p in common_params() if p.name not in ("n_min", "n_max")), _TAU),
    fixed={"sigma_allocation": False},
    arrays=("sigma", "tree"),
    check=_check_fixed_n,
    doc=__doc__ + "\nSampling only: prompts from rho* as in `cures`, every prompt gets N/m rollouts.\n",
)

_register(
    name="cures-allocation",
    summary="Ablation: uniform epoch-shuffled prompts with CurES's sigma allocation (Eq. 20).",
    params=common_params(),
    fixed={"rho_sampling": False},
    arrays=("sigma",),
    check=_check_uniform,
    doc=__doc__ + "\nAllocation only: prompts as in `grpo`, rollouts n_i by Eq. 20 from the live posterior.\n",
)
