"""`mopps`: MoPPS (arXiv 2507.04632), a Beta-Bernoulli bandit with Thompson sampling toward p = 0.5, fixed n.

Each step draws a candidate pool of ts_ratio x m prompts (epoch-wise shuffled), samples gamma_i ~ Beta(alpha_i,
beta_i) for each candidate, keeps the m with the smallest (gamma_i - target)^2 (the `topk` mode of thu-rllab/MoPPS
recipe/ours/mopps.py, PosteriorSampler) and gives each n rollouts. The update with discount lambda (`decay`) is
alpha <- lambda alpha + (1 - lambda) alpha0 + s, beta likewise with failures (Eq. 23-24 with forgetting). Defaults
are the paper's math settings: ts_ratio 16, lambda 1 (no forgetting), n 8. The pool is capped at the dataset size.
"""

import numpy as np

from cures._jit import njit
from cures.policies.kernels import (
    add_slot,
    begin_training_round,
    complete_single_round_step,
    end_plan,
    stable_argsort,
    uniform_batch,
)
from cures.policies.spec import (
    Param,
    PolicySpec,
    batch_capacity,
    fits_dataset,
    integer,
    kernel_record,
    prior_pair,
    real,
    register,
)

PARAMS = (
    Param("prompts_per_step", 64, "prompts per training step m", integer(1)),
    Param("n", 8, "rollouts per prompt", integer(2)),
    Param("ts_ratio", 16, "candidate pool = ts_ratio x prompts_per_step (16 math, 8 Countdown/Geo3k)", integer(1)),
    Param("target", 0.5, "target success rate", real(0.0, 1.0)),
    Param("decay", 1.0, "discount lambda (1: no forgetting, the math setting; 0.5 elsewhere)", real(0.0, 1.0)),
    Param("prior", (1.0, 1.0), "Beta prior (alpha0, beta0)", prior_pair()),
)
Params = kernel_record(__name__, PARAMS)


@njit(cache=True)
def plan(P, S, B, rng):
    pool = uniform_batch(S, min(P.ts_ratio * P.prompts_per_step, S.order.shape[0]), rng)
    begin_training_round(B)
    distance = np.empty(pool.shape[0])
    for i in range(pool.shape[0]):
        x = pool[i]
        gamma = rng.beta(max(S.alpha[x], 1e-12), max(S.beta[x], 1e-12))  # Thompson draw
        distance[i] = (gamma - P.target) ** 2
    for i in stable_argsort(distance)[: P.prompts_per_step]:
        add_slot(B, pool[i], P.n)
    end_plan(S, B)


@njit(cache=True)
def observe(P, S, B, rng):
    return complete_single_round_step(S, B, P.decay)


SPEC = register(PolicySpec(
    name="mopps",
    summary="MoPPS: Thompson-sample each candidate's Beta posterior, keep the m nearest the target rate, fixed n.",
    params=PARAMS,
    kernel_params=Params,
    plan=plan,
    observe=observe,
    capacity=batch_capacity,
    loss_weighting="per-rollout",
    check=fits_dataset(),
    doc=__doc__,
))
