"""`vip`: VIP, variance-informed predictive allocation (arXiv 2602.01601; HieuNT91/VIP, trainer at 87bedf7).

Each step takes m epoch-shuffled candidate prompts, predicts each one's pass rate p_i, and splits the budget B by
minimising the predicted gradient variance plus a hard-prompt bonus (bernoulli_allocation.py:135-162):

    RLOO:  sum_i a_i / (n_i - 1) + b_i n_i        GRPO (Dr. GRPO):  sum_i a_i (n_i - 1) / n_i^2 + b_i n_i

with a_i = p_i (1 - p_i), b_i = gamma log p_i (p clipped to [1e-6, 1 - 1e-6]; gamma 7e-4 for RLOO, 4e-4 for GRPO),
sum n_i = B and n_i <= 32. The code solves a continuous relaxation (SLSQP), rounds, and zeroes every n_i < 4; here
both stages are exact integer optima (`allocate`): the objective on [2 (RLOO) or 3 (GRPO), 32], where each term is
discretely convex, then, over the prompts that got at least 4, again on [4, 32]. Prompts with n_i = 0 are not
generated. On the first step (no history) every candidate gets `first_n` rollouts; when the predictions are all
equal (std < 1e-6) the code's uniform fallback applies (B < 4 m: B/4 draws with replacement, +4 rollouts each;
else B/m each, the first B mod m one more).

The predictor keeps a logit m_i per prompt, -5 before any observation (the trainer's prior), and predicts
p_i = sigmoid(m_i). By default (no embeddings) m_i is logit(clip(s/n)) of the prompt's latest group: the code's
Gaussian process with an identity kernel ("last observed pass rate, with a prior for never-seen prompts"). With
`embeddings` (a .npy file, one row per prompt) it is the code's GP (success_rate_prediction/gaussian_process.py at
dc365c3): after each step, with T its prompts, g_T their logit pass rates and K = exp(-(d / l)^2 / 2) on the
Euclidean distances of the embeddings, alpha = (K_TT + 1e-4 I)^-1 (g_T - m_T), m <- m + K_:T alpha for every prompt,
then m_T <- g_T (the previous mean is the next prior; l = 0.27).
"""

import math
from pathlib import Path

import numpy as np

from cures._jit import njit
from cures.policies.kernels import (
    add_slot,
    begin_training_round,
    complete_single_round_step,
    end_plan,
    round_slots,
    stable_argsort,
    uniform_batch,
)
from cures.policies.spec import (
    Param,
    PolicySpec,
    batch_capacity,
    choice,
    fits_dataset,
    integer,
    kernel_record,
    real,
    register,
    reporting_prior,
    text,
)
from cures.theory import sigmoid_nb

EPS = 1e-6  # clip of p and of observed pass rates


PARAMS = (
    Param("prompts_per_step", 64, "candidate prompts per training step", integer(1)),
    Param("rollouts_per_step", None, "rollouts per training step B (default 8 x prompts_per_step)", integer(2,
                                                                                                            optional=True),
          display="8*prompts_per_step"),
    Param("objective", "rloo", "variance objective: rloo (the trainer's default) or grpo (Dr. GRPO)",
          choice("rloo", "grpo")),
    Param("gamma", None, "weight of the hard-prompt bonus gamma log p (default 7e-4 rloo, 4e-4 grpo)",
          real(0.0, optional=True), display="7e-4|4e-4"),
    Param("upper", 32, "most rollouts of one prompt", integer(4)),
    Param("min_keep", 4, "fewest rollouts of a generated prompt (smaller groups are dropped)", integer(2)),
    Param("first_n", 8, "rollouts per candidate on the first step, before any prediction (rollout.n)", integer(2)),
    Param("prior_logit", -5.0, "predicted logit pass rate of a never-seen prompt (the trainer's GP prior)", real()),
    Param("embeddings", None, "a .npy file of prompt embeddings (one row per prompt) for the GP predictor "
          "(default: none, the last observed pass rate)", text(optional=True)),
    Param("length_scale", 0.27, "the GP kernel's length scale l (with embeddings)", real(0.0, lo_open=True)),
    reporting_prior(),
)
Params = kernel_record(__name__, PARAMS, derived=("rloo", "gp"), consumed=("objective", "embeddings"), jitter=1e-4,
                       decay=1.0)


@njit(cache=True, inline="always")
def objective(rloo, a, b, n):
    """One prompt's term of the objective at n rollouts."""
    if rloo:
        return a / (n - 1.0) + b * n
    return a * (n - 1.0) / (n * n) + b * n


@njit(cache=True)
def allocate(rloo, a, b, lower, upper, budget, out):
    """The exact integer minimiser of sum_i objective(a_i, b_i, n_i) with lower <= n_i <= upper and sum n_i = budget
    (all at upper when that is less), for terms discretely convex on [lower, upper]: every n_i starts at lower and
    the budget - k lower smallest marginals f_i(n + 1) - f_i(n) are taken (ties: lower prompt, then lower n). Each
    row of marginals is non-decreasing, so the chosen ones are row prefixes."""
    k = a.shape[0]
    width = upper - lower
    marginal = np.empty(k * width)
    for i in range(k):
        for t in range(width):
            n = lower + t
            marginal[i * width + t] = objective(rloo, a[i], b[i], n + 1.0) - objective(rloo, a[i], b[i], float(n))
    for i in range(k):
        out[i] = lower
    rest = min(budget - k * lower, k * width)
    order = stable_argsort(marginal)
    for r in range(rest):
        out[order[r] // width] += 1


@njit(cache=True)
def uniform_fallback(P, k, rng, n):
    """The code's allocation when the predictions are all equal."""
    n[:] = 0
    if P.rollouts_per_step < 4 * k:
        for _ in range(P.rollouts_per_step // 4):
            n[int(rng.random() * k)] += 4
    else:
        for i in range(k):
            n[i] = P.rollouts_per_step // k + (1 if i < P.rollouts_per_step % k else 0)


@njit(cache=True)
def plan(P, S, B, rng):
    if S.vars.step == 0 and B.vars.n_rounds == 0:  # nothing observed yet: the prior for every prompt
        S.latent[:] = P.prior_logit
    batch = uniform_batch(S, P.prompts_per_step, rng)
    begin_training_round(B)
    k = batch.shape[0]
    n = np.empty(k, np.int64)
    if S.vars.step == 0:  # no rollout log: every candidate gets rollout.n
        n[:] = P.first_n
    else:
        p = np.empty(k)
        for i in range(k):
            p[i] = min(max(sigmoid_nb(S.latent[batch[i]]), EPS), 1.0 - EPS)
        if p.std() < 1e-6:
            uniform_fallback(P, k, rng, n)
        else:
            a = p * (1.0 - p)
            b = P.gamma * np.log(p)
            allocate(P.rloo, a, b, 2 if P.rloo else 3, P.upper, P.rollouts_per_step, n)  # where every term is convex
            kept = np.flatnonzero(n >= P.min_keep)  # the code zeroes groups below min_keep ...
            n[:] = 0
            second = np.empty(kept.shape[0], np.int64)
            allocate(P.rloo, a[kept], b[kept], P.min_keep, P.upper, P.rollouts_per_step,
                     second)  # ... and re-spends on the rest
            for i in range(kept.shape[0]):  # n[kept] = second (a loop: the fancy-index store compiles 1.7 s)
                n[kept[i]] = second[i]
    for i in range(k):
        add_slot(B, batch[i], n[i])  # n = 0: not generated
    end_plan(S, B)


@njit(cache=True, inline="always")
def rbf(S, x, y, length_scale):
    """exp(-(d / l)^2 / 2), d the Euclidean distance between the embeddings of prompts x and y."""
    d2 = 0.0
    for c in range(S.features.shape[1]):
        d2 += (S.features[x, c] - S.features[y, c]) ** 2
    return math.exp(-0.5 * d2 / length_scale**2)


@njit(cache=True)
def cholesky_solve(K, y):
    """x with K x = y for a symmetric positive definite K (a kernel matrix plus jitter): K = L L^T (Cholesky), then
    L z = y and L^T x = z by substitution, as Rasmussen & Williams (2006), Algorithm 2.1, lines 2-3. Written out
    because Numba's np.linalg.solve (LAPACK through SciPy, with its checks and copies) takes about 1 s to compile and
    these systems have one row per prompt of a step."""
    k = y.shape[0]
    L = np.zeros((k, k))
    for j in range(k):
        d = K[j, j]
        for c in range(j):
            d -= L[j, c] * L[j, c]
        L[j, j] = math.sqrt(d)
        for i in range(j + 1, k):
            s = K[i, j]
            for c in range(j):
                s -= L[i, c] * L[j, c]
            L[i, j] = s / L[j, j]
    z = np.empty(k)
    for i in range(k):
        s = y[i]
        for c in range(i):
            s -= L[i, c] * z[c]
        z[i] = s / L[i, i]
    x = np.empty(k)
    for i in range(k - 1, -1, -1):
        s = z[i]
        for c in range(i + 1, k):
            s -= L[c, i] * x[c]
        x[i] = s / L[i, i]
    return x


@njit(cache=True)
def gp_update(P, S, T, g):
    """The GP's recursive update from the prompts T of one step and their logit pass rates g."""
    k = T.shape[0]
    K = np.empty((k, k))
    for a in range(k):
        for b in range(k):
            K[a, b] = rbf(S, T[a], T[b], P.length_scale) + (P.jitter if a == b else 0.0)
    resid = np.empty(k)
    for a in range(k):
        resid[a] = g[a] - S.latent[T[a]]
    alpha = cholesky_solve(K, resid)
    for x in range(S.latent.shape[0]):
        for a in range(k):
            S.latent[x] += rbf(S, x, T[a], P.length_scale) * alpha[a]
    for a in range(k):
        S.latent[T[a]] = g[a]


@njit(cache=True)
def observe(P, S, B, rng):
    lo, hi = round_slots(B)
    g = np.empty(hi - lo)
    for j in range(lo, hi):  # the observations: the step's pass rates on the logit scale
        rate = min(max(B.succ[j] / B.n[j], EPS), 1.0 - EPS)
        g[j - lo] = math.log(rate / (1.0 - rate))
    if P.gp:
        gp_update(P, S, B.prompt[lo:hi].copy(), g)
    else:
        for j in range(lo, hi):
            S.latent[B.prompt[j]] = g[j - lo]
    return complete_single_round_step(S, B, P.decay)


def _resolve(v, n_prompts):
    v["rloo"] = v.pop("objective") == "rloo"
    v["gp"] = v["embeddings"] is not None
    if v["gamma"] is None:
        v["gamma"] = 7e-4 if v["rloo"] else 4e-4
    return v


def _load(v, n_prompts):
    """The prompt embeddings of the GP predictor, one float row per prompt."""
    if v["embeddings"] is None:
        return {}
    path = Path(v["embeddings"])
    try:
        emb = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ValueError(f"embeddings file {path} cannot be read as a .npy array ({exc})") from None
    if emb.ndim != 2 or emb.shape[0] != n_prompts or not np.issubdtype(emb.dtype, np.number):
        raise ValueError(f"embeddings file {path} holds shape {emb.shape}; expected one row per prompt: "
                         f"({n_prompts}, d)")
    emb = emb.astype(np.float64)
    if not np.isfinite(emb).all():
        raise ValueError(f"embeddings file {path} holds NaN or infinite values")
    return {"features": emb}


def _check(v, n_prompts):
    fits_dataset()(v, n_prompts)
    m, rollouts_per_step, lower = v["prompts_per_step"], v["rollouts_per_step"], 2 if v["rloo"] else 3
    if rollouts_per_step < lower * m:
        raise ValueError(f"rollouts_per_step {rollouts_per_step} is below {lower} x prompts_per_step = {lower * m} "
                         f"(the objective's convex range)")
    if not lower <= v["min_keep"] <= v["upper"]:
        raise ValueError(f"min_keep {v['min_keep']} must lie in [{lower}, upper = {v['upper']}]")


SPEC = register(PolicySpec(
    name="vip",
    summary="VIP: predicted pass rates, exact integer minimum of predicted gradient variance - gamma log p under B.",
    params=PARAMS,
    kernel_params=Params,
    plan=plan,
    observe=observe,
    capacity=batch_capacity,
    arrays=("latent", "features"),
    load=_load,
    load_params=("embeddings",),
    loss_weighting="per-rollout",
    resolve=_resolve,
    check=_check,
    doc=__doc__,
))
