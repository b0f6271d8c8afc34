"""The compiled simulation loop: O(batch x d) per step, however many prompts and rollouts.

Per training step the policy plans rounds (`cures.policies.dispatch`, the same compiled code the trainer runs); each
slot's successes are drawn as k ~ Binomial(n, p) instead of n Bernoulli rollouts, and each training group's summed
gradient sum_j A_j s_j is drawn from its exact law: with s_j = (r_j - p) a + noise and advantages A1 (correct) and
A0 (wrong),

    sum_j A_j s_j = [k A1 (1 - p) - (n - k) A0 p] a + N(0, (k A1^2 sigma_1^2 + (n - k) A0^2 sigma_0^2) I_d),

which is what `simulator/reference.py` computes rollout by rollout. In IRT mode the groups' Gaussian terms are
independent, so the step draws their sum, N(0, sum_g w_g^2 var_g I_d), once.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from cures._jit import njit, prefetch
from cures.policies.dispatch import observe_round, plan_round
from cures.policies.kernels import kept, round_slots
from cures.policies.layout import new_vars
from cures.theory import sigmoid_nb

GRPO_ADV, DR_GRPO_ADV, RLOO_ADV, RPP_ADV = range(4)
ESTIMATOR_CODES = {"grpo": GRPO_ADV, "dr_grpo": DR_GRPO_ADV, "rloo": RLOO_ADV, "reinforce++": RPP_ADV}
COLUMNS = ("step", "rollouts", "train_accuracy", "heldout_accuracy", "zero_variance_fraction", "posterior_error",
           "grad_norm", "grad_cosine", "groups_per_step", "trained_rollouts_per_step", "trained_rollouts",
           "train_reward")  # train_reward: the mean reward of the rollouts generated since the last row
TALLY_VARS = tuple((name, np.int64) for name in (
    "slots", "zero",  # slots generated and zero-variance slots since the last evaluation
    "slots_all", "zero_all",  # the same over the whole run
    "first_slots", "first_zero",  # the same in the first step
    "steps", "groups", "trained",  # steps, training groups and trained rollouts since the last evaluation
    "touched",  # coordinates the last step's gradient wrote
    "simulated",  # rollouts simulated over the whole run
    "trained_all",  # trained rollouts over the whole run
    "rolled", "succ",  # rollouts generated and their successes since the last evaluation
))


class EngineConfig(NamedTuple):
    tabular: bool
    estimator: int
    per_prompt: bool  # Eq. 16 weighting (each group's mean), else every rollout weighs the same
    lr: float
    clip: float
    sigma_correct: float
    sigma_wrong: float
    eps: float
    score_norms: bool
    max_rollouts: int  # stop once this many rollouts were generated (0: no cap)
    train_cost: float = 0.0  # compute = generated rollouts + train_cost x trained rollouts
    max_compute: float = 0.0  # stop once this much compute was spent (0: no cap)


class Tally(NamedTuple):
    """Counters and scratch carried between calls of `run_steps`."""

    vars: np.record  # TALLY_VARS
    grad: np.ndarray  # float64[D] the last step's gradient estimate
    touched: np.ndarray  # int64[D] coordinates the last step wrote (tabular: prompts)
    mark: np.ndarray  # uint8[D]
    slot_p: np.ndarray  # float64[cap] pass rate of each slot when it was generated
    gk: np.ndarray  # float64[cap] per-group successes, rollouts, prompt, pass rate
    gn: np.ndarray
    gx: np.ndarray  # int64[cap]
    gp: np.ndarray


def new_tally(dim: int, capacity: int) -> Tally:
    return Tally(new_vars(TALLY_VARS), np.zeros(dim), np.zeros(dim, np.int64), np.zeros(dim, np.uint8),
                 np.zeros(capacity), np.zeros(capacity), np.zeros(capacity), np.zeros(capacity, np.int64),
                 np.zeros(capacity))


PREFETCH_AHEAD = 8  # prompts: rows requested from memory this many prompts before their dot product


@njit(cache=True)
def pass_rates_of(M, ids, tabular, out):
    """out[i] = p_x(theta) = sigmoid(a_x . theta - b_x) for x = ids[i].

    One call for many prompts: a compiled function called per prompt would count references to the model's arrays
    at each call, which costs more than the dot product. Each dot product is a chain of dependent additions, during
    which the CPU does not reach the next prompts' rows by itself; with millions of prompts those rows are in no
    cache, so they are requested PREFETCH_AHEAD prompts early (`prefetch`: no value changes). At 10 million prompts
    and d = 16 that takes the pass rates of 256 prompts from about 35 to 15 us."""
    a, b, theta = M.a, M.b, M.theta
    d = a.shape[1]
    m = ids.shape[0]
    for i in range(m):
        if i + PREFETCH_AHEAD < m:
            y = ids[i + PREFETCH_AHEAD]
            for c in range(0, d, 8):  # every 64-byte line of the row a_y (C order), and b_y
                prefetch(a, y * d + c)
            prefetch(a, y * d + d - 1)
            prefetch(b, y)
        x = ids[i]
        if tabular:
            z = a[x, 0] * theta[x] - b[x]
        else:
            z = -b[x]
            for c in range(theta.shape[0]):
                z += a[x, c] * theta[c]
        out[i] = sigmoid_nb(z)


@njit(cache=True)
def binomial(rng, n, p):
    """k ~ Binomial(n, p) from rng, as rng.binomial(n, p). A function of its own, cached on disk: `run_steps` is
    compiled once per policy, and Numba's own Generator.binomial (about 1 s to compile) is not cached between runs."""
    return rng.binomial(n, p)


@njit(cache=True)
def score_statistics(M, C, x, p):
    """The exact Eq. 21 inputs of prompt x at pass rate p: E1||s||^2, E0||s||^2 and ||E1 s - E0 s||^2, for scores
    s = (r - p) a + sigma_r xi, whose conditional means are (1 - p) a (correct) and -p a (wrong)."""
    a2 = 0.0
    for c in range(M.a.shape[1]):
        a2 += M.a[x, c] ** 2
    dim = 1.0 if C.tabular else float(M.theta.shape[0])
    return (1 - p) ** 2 * a2 + dim * C.sigma_correct**2, p * p * a2 + dim * C.sigma_wrong**2, a2


@njit(cache=True)
def advantages(C, k, n, batch_mean, batch_sd):
    """(A1, A0): the advantage of a correct and of a wrong rollout in a group whose statistics are k of n correct."""
    if n < 1:
        return 0.0, 0.0
    mean = k / n
    if C.estimator == RPP_ADV:  # REINFORCE++: whitened over the batch, no group baseline
        return (1.0 - batch_mean) / (batch_sd + C.eps), -batch_mean / (batch_sd + C.eps)
    if n < 2:
        return 0.0, 0.0
    if C.estimator == RLOO_ADV:  # leave-one-out baseline
        return 1.0 - (k - 1.0) / (n - 1.0), -k / (n - 1.0)
    if C.estimator == DR_GRPO_ADV:  # Dr. GRPO: centred, no std
        return 1.0 - mean, -mean
    sd = np.sqrt(k * (n - k) / (n * (n - 1.0)))  # GRPO: unbiased group std, as TRL
    return (1.0 - mean) / (sd + C.eps), -mean / (sd + C.eps)


@njit(cache=True)
def _add_coord(T, c):
    if T.mark[c] == 0:
        T.mark[c] = 1
        T.touched[T.vars.touched] = c
        T.vars.touched += 1


@njit(cache=True)
def gradient_step(M, C, B, T, srng):
    """Build the step's gradient estimate from its training groups and apply the update to theta."""
    for i in range(T.vars.touched):  # clear the previous step's estimate
        c = T.touched[i]
        T.grad[c] = 0.0
        T.mark[c] = 0
    T.vars.touched = 0
    G = B.vars.n_groups
    for g in range(G):
        T.gk[g] = 0.0
        T.gn[g] = 0.0
    k_all, n_all = 0.0, 0.0
    for j in range(B.vars.n_slots):
        g = B.group[j]
        if g >= 0:
            k, n = kept(B, j)  # the rollouts of the slot its group trains on
            T.gk[g] += k
            T.gn[g] += n
            T.gx[g] = B.prompt[j]
            T.gp[g] = T.slot_p[j]
            k_all += k
            n_all += n
    T.vars.groups += G
    T.vars.trained += int(n_all)
    T.vars.trained_all += int(n_all)
    if G == 0 or n_all == 0:
        return
    mu = k_all / n_all
    sd = np.sqrt((k_all * (1 - mu) ** 2 + (n_all - k_all) * mu**2) / max(n_all - 1.0, 1.0))
    d = M.theta.shape[0]
    if not C.tabular:
        for c in range(d):
            _add_coord(T, c)
    noise_var = 0.0  # IRT: the groups' independent Gaussian terms add up to one N(0, noise_var I_d)
    for g in range(G):
        k, n, p, x = T.gk[g], T.gn[g], T.gp[g], T.gx[g]
        if B.baseline[g, 1] > 0:  # the group's statistics come from more rollouts than it trains on
            a1, a0 = advantages(C, B.baseline[g, 0], B.baseline[g, 1], mu, sd)
        else:
            a1, a0 = advantages(C, k, n, mu, sd)
        coef = k * a1 * (1.0 - p) - (n - k) * a0 * p  # sum_j A_j (r_j - p)
        var = k * a1 * a1 * C.sigma_correct**2 + (n - k) * a0 * a0 * C.sigma_wrong**2
        w = 1.0 / (G * n) if C.per_prompt else 1.0 / n_all
        if C.tabular:
            _add_coord(T, x)
            T.grad[x] += w * (coef * M.a[x, 0] + np.sqrt(var) * srng.standard_normal())
        else:
            noise_var += w * w * var
            for c in range(d):
                T.grad[c] += w * coef * M.a[x, c]
    if not C.tabular:
        for c in range(d):
            T.grad[c] += np.sqrt(noise_var) * srng.standard_normal()
    norm2 = 0.0
    for i in range(T.vars.touched):
        norm2 += T.grad[T.touched[i]] ** 2
    scale = C.lr
    if C.clip > 0.0 and C.lr * np.sqrt(norm2) > C.clip:  # trust region on the parameter step
        scale = C.clip / np.sqrt(norm2)
    for i in range(T.vars.touched):
        c = T.touched[i]
        M.theta[c] += scale * T.grad[c]


@njit(cache=True, nogil=True)
def run_steps(P, S, B, prng, srng, M, C, T, steps):
    """Train for up to `steps` steps (fewer if C.max_rollouts or C.max_compute is reached); returns the steps
    taken. P, S, B and prng are a policy's state (`PolicyState.kernel`, `arrays`, `step`, `rng`)."""
    for done in range(steps):
        if C.max_rollouts > 0 and S.vars.rollouts >= C.max_rollouts:
            return done
        if C.max_compute > 0 and S.vars.rollouts + C.train_cost * T.vars.trained_all >= C.max_compute:
            return done
        first = S.vars.step == 0
        while True:
            plan_round(P, S, B, prng)
            lo, hi = round_slots(B)
            pass_rates_of(M, B.prompt[lo:hi], C.tabular, T.slot_p[lo:hi])
            for j in range(lo, hi):
                x = B.prompt[j]
                p = T.slot_p[j]
                k = binomial(srng, B.n[j], p)
                B.succ[j] = k
                zero = 1 if (k == 0 or k == B.n[j]) else 0
                T.vars.slots += 1
                T.vars.zero += zero
                T.vars.slots_all += 1
                T.vars.zero_all += zero
                if first:
                    T.vars.first_slots += 1
                    T.vars.first_zero += zero
                T.vars.simulated += B.n[j]
                T.vars.rolled += B.n[j]
                T.vars.succ += k
                if C.score_norms:
                    B.score[j, 0], B.score[j, 1], B.score[j, 2] = score_statistics(M, C, x, p)
            step_done = observe_round(P, S, B, prng)
            n_slots = B.vars.n_slots  # slots re-using earlier rollouts: scored at today's pass rate (stale
            pass_rates_of(M, B.prompt[hi:n_slots], C.tabular, T.slot_p[hi:n_slots])  # rollouts, no off-policy fix)
            if step_done:
                break
        gradient_step(M, C, B, T, srng)
        T.vars.steps += 1
    return steps


@njit(cache=True, nogil=True)
def evaluate(S, M, C, T, row, hist):
    """Fill one row of COLUMNS (and the pass-rate histogram of the training pool); resets the interval tallies."""
    N = M.b.shape[0]
    bins = hist.shape[0]
    hist[:] = 0
    acc, err = 0.0, 0.0
    d = M.theta.shape[0]
    true_grad = np.zeros(1 if C.tabular else d)
    dot, true2 = 0.0, 0.0
    p_all = np.empty(N)
    pass_rates_of(M, np.arange(N), C.tabular, p_all)
    for x in range(N):
        p = p_all[x]
        acc += p
        hist[min(int(p * bins), bins - 1)] += 1
        t = S.alpha[x] + S.beta[x]
        err += abs((S.alpha[x] / t if t > 0 else 0.5) - p)
        w = p * (1.0 - p) / N  # d p_x / d theta = p (1 - p) a_x
        if C.tabular:
            gx = w * M.a[x, 0]
            true2 += gx * gx
            if T.mark[x] == 1:
                dot += T.grad[x] * gx
        else:
            for c in range(d):
                true_grad[c] += w * M.a[x, c]
    if not C.tabular:
        for c in range(d):
            true2 += true_grad[c] ** 2
            dot += T.grad[c] * true_grad[c]
    est2 = 0.0
    for i in range(T.vars.touched):
        est2 += T.grad[T.touched[i]] ** 2
    held = np.nan
    if not C.tabular and M.b_held.shape[0] > 0:
        held = 0.0
        for x in range(M.b_held.shape[0]):
            z = -M.b_held[x]
            for c in range(d):
                z += M.a_held[x, c] * M.theta[c]
            held += sigmoid_nb(z)
        held /= M.b_held.shape[0]
    steps = max(T.vars.steps, 1)
    row[0] = S.vars.step
    row[1] = S.vars.rollouts
    row[2] = acc / N
    row[3] = held
    row[4] = T.vars.zero / T.vars.slots if T.vars.slots > 0 else np.nan
    row[5] = err / N
    row[6] = np.sqrt(est2)
    row[7] = dot / np.sqrt(est2 * true2) if est2 > 0 and true2 > 0 else np.nan
    row[8] = T.vars.groups / steps if T.vars.steps > 0 else np.nan
    row[9] = T.vars.trained / steps if T.vars.steps > 0 else np.nan
    row[10] = T.vars.trained_all
    row[11] = T.vars.succ / T.vars.rolled if T.vars.rolled > 0 else np.nan
    T.vars.slots = T.vars.zero = T.vars.steps = T.vars.groups = T.vars.trained = T.vars.rolled = T.vars.succ = 0
