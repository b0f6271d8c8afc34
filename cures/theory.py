"""Closed forms of the CurES paper (arXiv 2510.01037, equation numbers of v1) and exact integer allocation.

Every formula is written once, as a Numba scalar kernel (`*_nb`) or Numba ufunc that compiled policy code calls
inside its loops; the public functions validate their input and apply the same kernels to NumPy arrays.
`allocate_into` is the fast path of Eq. 20's greedy rule; the rule itself, written plainly, is
`cures.rules.greedy_allocation`, which the tests require it to equal.
"""

from __future__ import annotations

import math

import numpy as np
from numba import vectorize

from cures._jit import njit

__all__ = [
    "allocate_rollouts",
    "grpo_expected_gradient_scale",
    "optimization_potential",
    "rollout_sigma",
    "sampling_distribution",
    "zero_variance_prob",
]


# --------------------------------------------------------------------------------------------------------------
# Scalar kernels (usable inside Numba code)
# --------------------------------------------------------------------------------------------------------------


@vectorize(cache=True)
def potential_score(p):
    """sqrt(p(1-p)): the per-prompt optimisation potential of Eq. 11 without the sqrt(2 delta) factor."""
    return math.sqrt(max(p * (1.0 - p), 0.0))


@njit(cache=True, inline="always")
def sampling_weight(p, tau):
    """Unnormalised rho* weight of Eq. 14, exp((sqrt(p(1-p)) - 1/2) / tau), in (0, 1].

    The constant offset 1/2 (the largest possible score) cancels in the normalisation and keeps the exponent <= 0,
    so the weight never overflows; it underflows only for tau below ~1e-3. Inlined into compiled loops.
    """
    return math.exp((math.sqrt(max(p * (1.0 - p), 0.0)) - 0.5) / tau)


@vectorize(cache=True)
def sampling_weight_nb(p, tau):
    """`sampling_weight` as a NumPy ufunc."""
    return sampling_weight(p, tau)


@vectorize(cache=True)
def sigma2_nb(p, g2_correct, g2_wrong, gap2):
    """Eq. 21: sigma^2 = p(1-p)^2 E1||s||^2 + p^2(1-p) E0||s||^2 - p^2(1-p)^2 ||E1 s - E0 s||^2, clipped at 0."""
    q = 1.0 - p
    v = p * q * q * g2_correct + p * p * q * g2_wrong - p * p * q * q * gap2
    return v if v > 0.0 else 0.0


@vectorize(cache=True)
def zero_variance_prob_nb(p, n):
    """P(all n rollouts agree) = p^n + (1-p)^n: every one succeeds, or every one fails."""
    return p**n + (1.0 - p) ** n


@njit(cache=True, inline="always")
def sigmoid_nb(z):
    """The logistic function 1 / (1 + exp(-z)) (scipy.special.expit in NumPy code)."""
    return 1.0 / (1.0 + np.exp(-z))


@njit(cache=True)
def _binom_logpmf(k, n, logp, log1mp):
    return math.lgamma(n + 1.0) - math.lgamma(k + 1.0) - math.lgamma(n - k + 1.0) + k * logp + (n - k) * log1mp


@vectorize(cache=True)
def grpo_scale_nb(p, n, std_normalised):
    """E_k[c(k)] for k ~ Binomial(n, p); see `grpo_expected_gradient_scale` for c(k) and its derivation."""
    if n < 2 or p <= 0.0 or p >= 1.0:
        return 0.0
    logp = math.log(p)
    log1mp = math.log1p(-p)
    total = 0.0
    for k in range(1, n):  # k = 0 and k = n are the zero-variance groups: c = 0
        if std_normalised:
            c = math.sqrt(k * (n - k) * (n - 1.0) / (n * n * float(n)))
        else:
            c = k * (n - k) / (n * float(n))
        total += c * math.exp(_binom_logpmf(k, n, logp, log1mp))
    return total


@njit(cache=True, inline="always")
def _before(gain, idx, a, b):
    """Heap order: larger marginal gain first, lower index on ties."""
    return gain[a] > gain[b] or (gain[a] == gain[b] and idx[a] < idx[b])


@njit(cache=True, inline="always")
def _sift_down(gain, idx, size, pos):
    while True:
        best, left = pos, 2 * pos + 1
        if left < size and _before(gain, idx, left, best):
            best = left
        if left + 1 < size and _before(gain, idx, left + 1, best):
            best = left + 1
        if best == pos:
            return
        gain[pos], gain[best] = gain[best], gain[pos]
        idx[pos], idx[best] = idx[best], idx[pos]
        pos = best


@njit(cache=True, inline="always")
def _gain(w, n):
    """The objective's fall when a prompt of weight w goes from n to n + 1 rollouts: w^2/n - w^2/(n+1)."""
    return w * w / (n * (n + 1.0))


NO_LIMIT = np.iinfo(np.int64).max  # n_max <= 0: counts are not bounded above


@njit(cache=True, inline="always")
def _gains_above(w, lam, inv_lam, n_min, top):
    """How many of the gains _gain(w, n), n = n_min, n_min + 1, ... (n < top) exceed lam (they decrease in n);
    inv_lam = 1 / lam only places the first guess."""
    # start from the root of w^2 / (n (n + 1)) = lam, then fix any rounding by evaluating the gains themselves
    n = max(n_min, min(top, int((np.sqrt(1.0 + 4.0 * w * w * inv_lam) - 1.0) * 0.5)))
    while n < top and _gain(w, n) > lam:
        n += 1
    while n > n_min and _gain(w, n - 1) <= lam:
        n -= 1
    return n - n_min


SURE = 1e-12  # relative margin far above the rounding of w^2 and lam n (n + 1), for deciding without dividing


@njit(cache=True)
def _count_above(weights, lam, n_min, n_max, counts):
    """counts[i] = gains of prompt i above lam; returns (their total, the sum of the weights and the number of the
    prompts whose count is not clamped).

    Speed: a first pass without branches or divisions (it compiles to vector instructions) guesses each prompt's
    first n whose gain is not above lam, floor(r) + 1 for the root r of w^2 / (n (n + 1)) = lam, and confirms it
    when w^2 clears lam n (n + 1) on the right side by the relative margin SURE for both gains around it, so that
    the division of `_gain` could not decide otherwise. A prompt not confirmed (a guess rounded across an integer,
    or w^2 within the margin) is counted by `_gains_above`, which divides."""
    m = weights.shape[0]
    top = n_max if n_max > 0 else NO_LIMIT
    inv_lam = 1.0 / lam
    low, high = float(n_min), min(float(top), 2.0**52)  # guesses as exact floats; a larger one is counted again
    fast = 1e-290 < lam < 1e290  # products of normal numbers: the margin covers their rounding
    guess = np.empty(m)
    unsure = np.empty(m, np.bool_)
    for i in range(m):
        w = weights[i]
        w2 = w * w
        n = max(low, min(high, np.floor((np.sqrt(1.0 + 4.0 * w2 * inv_lam) - 1.0) * 0.5) + 1.0))  # above the root
        below_at_n = w2 < lam * (n * (n + 1.0)) * (1.0 - SURE)  # _gain(w, n) <= lam
        above_before = w2 > lam * ((n - 1.0) * n) * (1.0 + SURE)  # _gain(w, n - 1) > lam
        confirmed = ((n == low) | above_before) & ((n >= top) | below_at_n) & (n < high) & fast
        guess[i] = n - low
        unsure[i] = (w > 0.0) & ~confirmed
    total, w_free, k_free = 0, 0.0, 0
    for i in range(m):
        if weights[i] <= 0.0:
            c = 0
        elif unsure[i]:
            c = _gains_above(weights[i], lam, inv_lam, n_min, top)
        else:
            c = int(guess[i])
        counts[i] = c
        total += c
        if c > 0 and n_min + c < top:
            w_free += weights[i]
            k_free += 1
    return total, w_free, k_free


@njit(cache=True)
def _continuous_threshold(weights, wsum, budget, n_min, n_max):
    """The marginal gain lam = s^2 at the continuous optimum of Eq. 20 with the clamps, n_i = clip(w_i / s, n_min,
    n_max) summing to the budget (an unclamped n_i = w_i / s has gain ~ s^2), aimed a little below the budget as the
    counts are integers: a fixed point over the clamped sets, from s = sum(w) / budget (no clamps). A pass that
    only confirms the sets is skipped when no weight of the last pass crosses the new cut-offs."""
    s = wsum / budget
    top = n_max if n_max > 0 else np.inf
    k_low = k_high = -1
    for _ in range(8):
        w_free, k_free, low, high = 0.0, 0, 0, 0
        low_max, free_min, free_max, high_min = -np.inf, np.inf, -np.inf, np.inf
        for w in weights:
            if w <= 0.0:
                continue
            if w < n_min * s:
                low += 1
                low_max = max(low_max, w)
            elif w > top * s:
                high += 1
                high_min = min(high_min, w)
            else:
                w_free += w
                k_free += 1
                free_min = min(free_min, w)
                free_max = max(free_max, w)
        denom = budget - 0.25 * k_free - 1.0 - n_min * low - (n_max * high if n_max > 0 else 0)
        if k_free == 0 or denom <= 0.0 or (low == k_low and high == k_high):
            break
        s = w_free / denom
        k_low, k_high = low, high
        if (low_max < n_min * s <= free_min and free_max <= top * s
                and (high == 0 or high_min > top * s)):  # the next pass would find these sets and stop here
            break
    return s * s


@njit(cache=True)
def _threshold_counts(weights, rest, wsum, budget, n_min, n_max, counts):
    """Fill `counts` with the gains above a threshold lam that at most `rest` gains exceed, and few fewer: lam from
    Eq. 20's continuous optimum with the clamps (`_continuous_threshold`), refined by secant steps on
    count(lam) ~ w_free / sqrt(lam) + c (an unclamped prompt's n ~ w / sqrt(lam)), then raised until no more than
    `rest` gains exceed it. Returns their total."""
    lam = _continuous_threshold(weights, wsum, budget, n_min, n_max)
    for _ in range(4):
        c, w_free, k_free = _count_above(weights, lam, n_min, n_max, counts)
        if (c <= rest and rest - c <= 0.5 * k_free + 1) or w_free <= 0.0:
            break
        target = rest - 0.25 * k_free - 1.0  # aim a little below `rest`: the counts are integers
        s = w_free / np.sqrt(lam) + (target - c)
        lam = (w_free / s) ** 2 if s > 0.0 else lam * 4.0
    while c > rest:
        lam *= 1.1
        c = _count_above(weights, lam, n_min, n_max, counts)[0]
    return c


@njit(cache=True, inline="always")
def _keys_above(keys, p):
    """How many keys exceed p (a loop without branches: it compiles to vector compares)."""
    c = 0
    for key in keys:
        c += key > p
    return c


SMALL_SELECTION = 16  # selection sorts the candidates left once at most this many remain,
MAX_HALVINGS = 12  # or after this many halvings (a block of equal values cannot be split)


@njit(cache=True)
def _kth_largest(values, k):
    """The k-th largest of `values` (1 <= k <= len; values not NaN), the value a descending sort puts at k - 1.

    Bisection on order-preserving integer keys of the floats (the bits, negative ones with the magnitude flipped):
    keep an interval (lo, hi] of keys that holds the answer, halve it by counting the keys above its midpoint, and
    sort what is left in it once at most SMALL_SELECTION values remain (or after MAX_HALVINGS). Each count is a
    pass without branches, where a partition would mispredict about every other comparison. In key order -0.0
    sorts just below 0.0, which compares equal. Written out because np.partition compiles in about 10 s (its
    argument checks pull in np.unique and a sort)."""
    m = values.shape[0]
    bits = values.view(np.int64)
    keys = np.empty(m, np.int64)
    lo, hi = np.iinfo(np.int64).max, np.iinfo(np.int64).min
    for i in range(m):
        b = bits[i]
        key = b if b >= 0 else b ^ 0x7FFFFFFFFFFFFFFF
        keys[i] = key
        lo = min(lo, key)
        hi = max(hi, key)
    lo -= 1  # every key exceeds lo (the least key is not int64's least: that would be a NaN)
    c_lo, c_hi = m, 0  # keys above lo and above hi: c_hi < k <= c_lo
    for _ in range(MAX_HALVINGS):
        mid = (lo >> 1) + (hi >> 1) + (lo & hi & 1)  # floor((lo + hi) / 2) without overflow
        if c_lo - c_hi <= SMALL_SELECTION or mid == lo:
            break
        c = _keys_above(keys, mid)
        if c >= k:
            lo, c_lo = mid, c
        else:
            hi, c_hi = mid, c
    n = c_lo - c_hi
    buf = np.empty(n)
    j = 0
    for i in range(m):
        if lo < keys[i] <= hi:
            buf[j] = values[i]
            j += 1
    for i in range(1, n):  # insertion sort, descending (linear on a block of equal values)
        x = buf[i]
        j = i - 1
        while j >= 0 and buf[j] < x:
            buf[j + 1] = buf[j]
            j -= 1
        buf[j + 1] = x
    return buf[k - c_hi - 1]


@njit(cache=True, error_model="numpy")
def _rest_by_selection(weights, rest, n_max, out):
    """Give `rest` more rollouts, one each to the prompts with the largest next gains (ties to the lower index),
    when that is what the greedy rule does: every chosen prompt's following gain lies strictly below the smallest
    chosen gain t. O(m): t by selection (`_kth_largest`), then passes without branches (the gains are the divisions
    of `_gain`, for every prompt at once; NaN from a zero weight is masked). Returns False, changing nothing, when a
    prompt would deserve two (or too few prompts can take one)."""
    m = weights.shape[0]
    gain = np.empty(m)  # the next gain; -1: cannot take one more
    after = np.empty(m)  # the gain after it; -1: cannot take two more
    size = 0
    for i in range(m):
        w, n = weights[i], float(out[i])
        one = (w > 0.0) & ((n_max <= 0) | (out[i] < n_max))
        two = one & ((n_max <= 0) | (out[i] + 1 < n_max))
        gain[i] = _gain(w, n) if one else -1.0
        after[i] = _gain(w, n + 1.0) if two else -1.0
        size += one
    if size < rest:
        return False
    t = _kth_largest(gain, rest)  # the rest-th largest next gain
    above, twice = 0, 0
    for i in range(m):
        above += gain[i] > t
        twice += (gain[i] > t) & (after[i] >= t)
    if twice > 0:
        return False
    ties = rest - above  # the prompts whose gain equals t, lowest indices first
    for i in range(m):
        if ties > 0 and gain[i] == t:
            if after[i] >= t:
                return False
            ties -= 1
    ties = rest - above
    for i in range(m):
        out[i] += gain[i] > t
    for i in range(m):
        if ties > 0 and gain[i] == t:
            out[i] += 1
            ties -= 1
    return True


@njit(cache=True)
def _rest_by_heap(weights, budget, placed, n_max, out):
    """The greedy rule itself: the remaining rollouts one by one, largest next gain first (a max-heap)."""
    m = weights.shape[0]
    gain = np.empty(m)
    idx = np.empty(m, np.int64)
    size = 0
    for i in range(m):
        if weights[i] > 0.0 and (n_max <= 0 or out[i] < n_max):
            gain[size] = _gain(weights[i], out[i])
            idx[size] = i
            size += 1
    for pos in range(size // 2 - 1, -1, -1):
        _sift_down(gain, idx, size, pos)
    while placed < budget and size > 0:
        i = idx[0]
        out[i] += 1
        placed += 1
        if n_max <= 0 or out[i] < n_max:
            gain[0] = _gain(weights[i], out[i])  # the same prompt's next gain
        else:
            size -= 1
            gain[0], idx[0] = gain[size], idx[size]
        _sift_down(gain, idx, size, 0)
    return placed


@njit(cache=True)
def allocate_into(weights, budget, n_min, n_max, out):
    """Exact integer minimiser of sum(w_i^2 / n_i) with sum(n) = budget, written into `out`.

    Zero weights get n = 0; positive weights get n_min <= n <= n_max (n_max <= 0: no upper bound). The objective is
    separable and convex, so the greedy rule is optimal: start every positive weight at n_min and give each further
    rollout to the prompt whose objective falls most (`_gain`; ties to the lower index). Fast path with the same
    result: every gain above a threshold lam is certainly taken when no more than the remaining budget exceed it, so
    those are granted at once (lam from the continuous optimum of Eq. 20, refined by secant steps,
    `_threshold_counts`, which counts without dividing where a margin decides); the few rollouts left go to the
    largest next gains, found by selection, when no prompt deserves two of them (`_rest_by_selection`), else one by
    one from a max-heap (`_rest_by_heap`). O(m log m) in all.
    Returns the rollouts placed (less than `budget` only when the clamps make it infeasible).
    """
    m = weights.shape[0]
    placed = 0
    wsum = 0.0
    k = 0
    for i in range(m):
        out[i] = 0
        if weights[i] > 0.0:
            out[i] = n_min
            placed += n_min
            wsum += weights[i]
            k += 1
    if k == 0 or placed >= budget:
        return placed
    counts = np.empty(m, np.int64)
    placed += _threshold_counts(weights, budget - placed, wsum, budget, n_min, n_max, counts)
    for i in range(m):
        out[i] += counts[i]
    if placed == budget or _rest_by_selection(weights, budget - placed, n_max, out):
        return budget
    return _rest_by_heap(weights, budget, placed, n_max, out)


# --------------------------------------------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------------------------------------------


def _pass_rates(p, name: str = "p") -> np.ndarray:
    arr = np.asarray(p, dtype=np.float64)
    if np.isnan(arr).any():
        raise ValueError(f"{name} contains NaN")
    if ((arr < 0.0) | (arr > 1.0)).any():
        raise ValueError(f"{name} must lie in [0, 1]; got values in [{arr.min():g}, {arr.max():g}]")
    return arr


def _positive(x, name: str) -> float:
    x = float(x)
    if not x > 0.0:  # also rejects NaN
        raise ValueError(f"{name} must be > 0; got {x}")
    return x


def _scalar_or_array(x):
    return x.item() if isinstance(x, np.ndarray) and x.ndim == 0 else x


# --------------------------------------------------------------------------------------------------------------
# Public functions
# --------------------------------------------------------------------------------------------------------------


def sampling_distribution(p, tau: float) -> np.ndarray:
    """Eq. 14: rho*(x) = exp(sqrt(p(1-p))/tau) / sum_x' exp(sqrt(p'(1-p'))/tau).

    `p` is a 1-D array of pass rates in [0, 1]; `tau` > 0 (np.inf gives the uniform distribution). Computed as a
    max-shifted softmax, so it is stable for any tau. Raises ValueError for tau <= 0 or NaN, and for NaN or
    out-of-range pass rates.
    """
    arr = _pass_rates(p)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"p must be a non-empty 1-D array; got shape {arr.shape}")
    tau = _positive(tau, "tau")
    score = potential_score(arr)
    z = (score - score.max()) / tau
    w = np.exp(z)
    return w / w.sum()


def rollout_sigma(p, g2_correct=1.0, g2_wrong=1.0, gap2=0.0):
    """Eq. 21: the per-prompt gradient standard deviation sigma (not sigma^2).

    sigma^2 = p(1-p)^2 g2_correct + p^2(1-p) g2_wrong - p^2(1-p)^2 gap2, clipped at 0, where g2_correct and
    g2_wrong are E||s||^2 over correct and wrong responses and gap2 = ||E1[s] - E0[s]||^2. With the defaults
    (equal unit norms, no mean gap) sigma = sqrt(p(1-p)). Arguments broadcast.
    """
    arr = _pass_rates(p)
    g2c = np.asarray(g2_correct, dtype=np.float64)
    g2w = np.asarray(g2_wrong, dtype=np.float64)
    gap = np.asarray(gap2, dtype=np.float64)
    for name, v in (("g2_correct", g2c), ("g2_wrong", g2w), ("gap2", gap)):
        if np.isnan(v).any() or (v < 0).any():
            raise ValueError(f"{name} must be finite and >= 0")
    return _scalar_or_array(np.sqrt(sigma2_nb(arr, g2c, g2w, gap)))


def zero_variance_prob(p, n):
    """p^n + (1-p)^n: the probability that all n rollouts of a prompt get the same reward (zero GRPO signal)."""
    arr = _pass_rates(p)
    n_arr = np.asarray(n)
    if not np.issubdtype(n_arr.dtype, np.integer) or (n_arr < 1).any():
        raise ValueError("n must be an integer >= 1")
    return _scalar_or_array(zero_variance_prob_nb(arr, n_arr.astype(np.float64)))


def optimization_potential(p, delta: float):
    """Eq. 11: sqrt(2 delta p(1-p)), the bound on one trust-region step's loss decrease for a prompt."""
    arr = _pass_rates(p)
    delta = _positive(delta, "delta")
    return _scalar_or_array(math.sqrt(2.0 * delta) * potential_score(arr))


def grpo_expected_gradient_scale(p, n, std_normalised: bool = True):
    """Expected GRPO update of one prompt with n rollouts, as a multiple of (E1[s] - E0[s]).

    Derivation. Let k ~ Binomial(n, p) rollouts be correct, with scores s_j whose conditional means are
    mu1 (correct) and mu0 (wrong). GRPO's advantages are A = (1 - k/n)/sd on correct and -(k/n)/sd on wrong
    rollouts, sd = sqrt(k(n-k)/(n(n-1))) the unbiased group std (std_normalised=False: sd = 1, Dr. GRPO). Given k,
    the expected per-prompt update (1/n) sum_j A_j s_j is

        (1/n) [k (1-k/n) mu1 - (n-k)(k/n) mu0] / sd = (k(n-k)/n^2) / sd * (mu1 - mu0),

    i.e. c(k) (mu1 - mu0) with c(k) = sqrt(k(n-k)(n-1)/n^3) (or k(n-k)/n^2 without the std). A zero-variance group
    (k = 0 or k = n) has A = 0, so c = 0 there and those groups are included with weight p^n + (1-p)^n. The result is
    E[c(k)] = sum_k Binom(k; n, p) c(k). Without the std it equals p(1-p)(n-1)/n exactly; with it, it tends to
    sqrt(p(1-p)) (the potential of Eq. 11) as n grows and falls below it for small n. Since the true gradient is
    grad p = p(1-p)(mu1 - mu0), E[update] = E[c(k)] / (p(1-p)) * grad p.
    """
    arr = _pass_rates(p)
    n_arr = np.asarray(n)
    if not np.issubdtype(n_arr.dtype, np.integer) or (n_arr < 1).any():
        raise ValueError("n must be an integer >= 1")
    return _scalar_or_array(grpo_scale_nb(arr, n_arr.astype(np.int64), bool(std_normalised)))


def feasible_budget_range(weights, n_min: int, n_max: int | None) -> tuple[int, int | float]:
    """The budgets `allocate_rollouts` accepts: (k n_min, k n_max) for k positive weights (inf without n_max)."""
    k = int(np.count_nonzero(np.asarray(weights) > 0))
    if k == 0:
        return 0, 0
    return k * n_min, (math.inf if n_max is None else k * n_max)


def allocate_rollouts(weights, budget: int, n_min: int = 2, n_max: int | None = None) -> np.ndarray:
    """Eq. 18-20 in integers: n minimising sum(w_i^2 / n_i) subject to sum(n) == budget exactly.

    Weight 0 gets n = 0; a positive weight gets n_min <= n <= n_max. The continuous optimum is Neyman's
    n_i = budget w_i / sum(w) (Eq. 20); this returns the exact integer optimum by greedy marginal allocation (see
    `allocate_into`). Raises ValueError when no integer vector satisfies the budget and the clamps, naming the
    feasible range, and for negative or NaN weights.
    """
    w = np.ascontiguousarray(weights, dtype=np.float64)
    if w.ndim != 1:
        raise ValueError(f"weights must be 1-D; got shape {w.shape}")
    if np.isnan(w).any() or np.isinf(w).any() or (w < 0).any():
        raise ValueError("weights must be finite and >= 0")
    if int(budget) != budget or budget < 0:
        raise ValueError(f"budget must be an integer >= 0; got {budget}")
    if int(n_min) != n_min or n_min < 1:
        raise ValueError(f"n_min must be an integer >= 1; got {n_min}")
    if n_max is not None and (int(n_max) != n_max or n_max < n_min):
        raise ValueError(f"n_max must be an integer >= n_min ({n_min}); got {n_max}")
    lo, hi = feasible_budget_range(w, n_min, n_max)
    if not lo <= budget <= hi:
        k = int(np.count_nonzero(w > 0))
        raise ValueError(
            f"budget {budget} is infeasible for {k} prompts with positive weight "
            f"(n_min={n_min}, n_max={n_max}): the feasible range is [{lo}, {hi}]"
        )
    out = np.zeros(w.shape[0], dtype=np.int64)
    allocate_into(w, int(budget), int(n_min), -1 if n_max is None else int(n_max), out)
    return out
