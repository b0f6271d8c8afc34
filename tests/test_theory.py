"""The paper's closed forms (cures.theory) against their definitions, limits, Monte Carlo and brute force."""

import itertools
import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from cures.rules import greedy_allocation
from cures.theory import (
    allocate_rollouts,
    grpo_expected_gradient_scale,
    optimization_potential,
    rollout_sigma,
    sampling_distribution,
    zero_variance_prob,
)

probs = st.lists(st.floats(0.0, 1.0), min_size=1, max_size=40)


# ---------------------------------------------------------------------------------------------- Eq. 14
@given(probs, st.floats(1e-3, 1e3))
def test_sampling_distribution_is_a_distribution_within_the_ratio_bound(p, tau):
    rho = sampling_distribution(p, tau)
    assert rho.shape == (len(p),)
    assert np.all(rho > 0) or tau < 0.01  # may underflow only for tiny tau
    assert rho.sum() == pytest.approx(1.0, abs=1e-12)
    # Eq. 14's max/min probability ratio <= exp(0.5 / tau), since sqrt(p(1-p)) lies in [0, 1/2]
    if rho.min() > 0:
        assert rho.max() / rho.min() <= math.exp(0.5 / tau) * (1 + 1e-9)


def test_sampling_distribution_matches_the_softmax_formula():
    p = np.array([0.0, 0.1, 0.5, 0.9, 1.0])
    tau = 0.2
    w = np.exp(np.sqrt(p * (1 - p)) / tau)
    np.testing.assert_allclose(sampling_distribution(p, tau), w / w.sum(), rtol=1e-12)


def test_sampling_distribution_limits():
    p = np.linspace(0, 1, 11)
    np.testing.assert_allclose(sampling_distribution(p, np.inf), np.full(11, 1 / 11))
    np.testing.assert_allclose(sampling_distribution(p, 1e6), np.full(11, 1 / 11), rtol=1e-5)
    # tau -> 0 puts all mass on p = 0.5, without overflow
    rho = sampling_distribution(p, 1e-4)
    assert rho[5] == pytest.approx(1.0) and np.isfinite(rho).all()
    # symmetric in p <-> 1 - p
    np.testing.assert_allclose(sampling_distribution(p, 0.1), sampling_distribution(p[::-1], 0.1)[::-1])


@pytest.mark.parametrize("tau", [0.0, -1.0, float("nan")])
def test_sampling_distribution_rejects_bad_tau(tau):
    with pytest.raises(ValueError, match="tau"):
        sampling_distribution([0.5], tau)


@pytest.mark.parametrize("p", [[0.5, float("nan")], [1.2], [-0.1]])
def test_sampling_distribution_rejects_bad_p(p):
    with pytest.raises(ValueError, match="p "):
        sampling_distribution(p, 0.1)


# ---------------------------------------------------------------------------------------------- Eq. 21
def test_sigma_vanishes_at_the_ends_and_peaks_in_between():
    assert rollout_sigma(0.0) == 0.0 and rollout_sigma(1.0) == 0.0
    grid = np.linspace(0, 1, 1001)
    s = rollout_sigma(grid)
    assert grid[np.argmax(s)] == pytest.approx(0.5)  # equal norms: sqrt(p(1-p))
    np.testing.assert_allclose(s, np.sqrt(grid * (1 - grid)), atol=1e-15)
    # unequal norms move the peak: larger correct-response norms favour low p
    skew = rollout_sigma(grid, g2_correct=4.0, g2_wrong=1.0)
    assert 0.0 < grid[np.argmax(skew)] < 0.5 and skew[0] == 0 and skew[-1] == 0


def test_sigma_is_clipped_at_zero():
    assert rollout_sigma(0.5, g2_correct=0.0, g2_wrong=0.0, gap2=5.0) == 0.0


@pytest.mark.parametrize("p", [0.1, 0.35, 0.8])
def test_eq21_equals_monte_carlo_trace_variance(p):
    """Tr Var(A s) for a Bernoulli reward and a random score vector whose law depends on correctness."""
    rng = np.random.default_rng(42)
    d, M = 3, 400_000
    mu1, mu0 = np.array([1.0, -0.5, 0.3]), np.array([-0.4, 0.2, 0.0])
    sd1, sd0 = 0.7, 1.3
    r = rng.random(M) < p
    s = np.where(r[:, None], mu1 + sd1 * rng.standard_normal((M, d)), mu0 + sd0 * rng.standard_normal((M, d)))
    h = (r - p)[:, None] * s
    centred = h - h.mean(axis=0)
    sq = (centred**2).sum(axis=1)
    mc, se = sq.mean(), sq.std() / math.sqrt(M)
    g2c = mu1 @ mu1 + d * sd1**2
    g2w = mu0 @ mu0 + d * sd0**2
    gap2 = (mu1 - mu0) @ (mu1 - mu0)
    sigma = rollout_sigma(p, g2c, g2w, gap2)
    assert abs(sigma**2 - mc) < 5 * se, (sigma**2, mc, se)


# ---------------------------------------------------------------------------------------------- small closed forms
def test_zero_variance_probability_values():
    # every rollout succeeds or every one fails: p^n + (1-p)^n
    np.testing.assert_allclose(zero_variance_prob(0.5, np.array([4, 8])), [0.125, 0.0078125])
    np.testing.assert_allclose(zero_variance_prob(0.7, np.array([4, 8, 16])), [0.2482, 0.0577, 0.0033], atol=1e-4)
    np.testing.assert_allclose(zero_variance_prob(0.95, np.array([4, 8, 16])), [0.815, 0.663, 0.440], atol=1e-3)
    with pytest.raises(ValueError, match="n must"):
        zero_variance_prob(0.5, 0)


def test_optimization_potential():
    assert optimization_potential(0.5, 0.02) == pytest.approx(math.sqrt(0.02 / 2))  # max sqrt(delta/2)
    assert optimization_potential(0.0, 0.02) == 0.0
    with pytest.raises(ValueError, match="delta"):
        optimization_potential(0.5, 0.0)


# ---------------------------------------------------------------------------------------------- GRPO update size
@pytest.mark.parametrize(("p", "n", "std"), [(0.5, 4, True), (0.15, 8, True), (0.9, 16, True), (0.3, 6, False)])
def test_grpo_expected_gradient_scale_by_monte_carlo(p, n, std):
    """Simulate groups with vector scores, compute GRPO advantages as TRL does (eps = 0, zero-std groups -> 0)."""
    rng = np.random.default_rng(7)
    G, d = 200_000, 2
    mu1, mu0 = np.array([1.0, 0.5]), np.array([-0.5, 0.25])
    r = (rng.random((G, n)) < p).astype(float)
    s = np.where(r[..., None] > 0, mu1, mu0) + 0.8 * rng.standard_normal((G, n, d))
    centred = r - r.mean(axis=1, keepdims=True)
    if std:
        sd = r.std(axis=1, ddof=1, keepdims=True)
        adv = np.divide(centred, sd, out=np.zeros_like(centred), where=sd > 0)
    else:
        adv = centred
    update = (adv[..., None] * s).mean(axis=1)  # (1/n) sum_j A_j s_j per group
    mean, se = update.mean(axis=0), update.std(axis=0) / math.sqrt(G)
    expected = grpo_expected_gradient_scale(p, n, std_normalised=std) * (mu1 - mu0)
    assert np.all(np.abs(mean - expected) < 5 * se), (mean, expected, se)


def test_grpo_scale_limits():
    assert grpo_expected_gradient_scale(0.0, 8) == 0.0 and grpo_expected_gradient_scale(1.0, 8) == 0.0
    assert grpo_expected_gradient_scale(0.5, 1) == 0.0  # a singleton group has no advantage
    # large n: tends to sqrt(p(1-p)), the Eq. 11 potential; small n is below it (zero-variance groups)
    assert grpo_expected_gradient_scale(0.3, 4000) == pytest.approx(math.sqrt(0.21), rel=1e-3)
    assert grpo_expected_gradient_scale(0.3, 4) < math.sqrt(0.21)
    # Dr. GRPO closed form p(1-p)(n-1)/n
    assert grpo_expected_gradient_scale(0.3, 10, std_normalised=False) == pytest.approx(0.21 * 0.9)


# ---------------------------------------------------------------------------------------------- allocation
def _objective(w, n):
    w, n = np.asarray(w, float), np.asarray(n, float)
    pos = w > 0
    return float(np.sum(w[pos] ** 2 / n[pos]))


def _brute_force(w, budget, n_min, n_max):
    pos = [i for i, x in enumerate(w) if x > 0]
    best = math.inf
    hi = n_max if n_max is not None else budget
    for combo in itertools.product(range(n_min, hi + 1), repeat=len(pos)):
        if sum(combo) == budget:
            n = np.zeros(len(w))
            n[pos] = combo
            best = min(best, _objective(w, n))
    return best


weights_small = st.lists(st.one_of(st.just(0.0), st.floats(0.01, 5.0)), min_size=1, max_size=4)


@settings(max_examples=150, deadline=None)
@given(weights_small, st.integers(0, 14), st.integers(1, 3), st.one_of(st.none(), st.integers(3, 8)))
def test_allocation_is_exactly_optimal_or_reports_infeasibility(w, budget, n_min, n_max):
    k = sum(x > 0 for x in w)
    lo, hi = k * n_min, (k * n_max if n_max is not None else (math.inf if k else 0))
    if not lo <= budget <= hi:
        with pytest.raises(ValueError, match="feasible range"):
            allocate_rollouts(w, budget, n_min, n_max)
        return
    n = allocate_rollouts(w, budget, n_min, n_max)
    assert n.sum() == budget
    w_arr = np.asarray(w)
    assert np.all(n[w_arr == 0] == 0)
    assert np.all(n[w_arr > 0] >= n_min)
    if n_max is not None:
        assert np.all(n <= n_max)
    assert _objective(w, n) == pytest.approx(_brute_force(w, budget, n_min, n_max), rel=1e-12)


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(2, 60))
def test_allocation_is_permutation_equivariant_and_close_to_neyman(seed, m):
    rng = np.random.default_rng(seed)
    w = rng.random(m) + 0.01  # continuous weights: no ties
    budget = int(rng.integers(2 * m, 20 * m))
    n = allocate_rollouts(w, budget)
    perm = rng.permutation(m)
    np.testing.assert_array_equal(allocate_rollouts(w[perm], budget), n[perm])
    # Eq. 20: the continuous Neyman optimum bounds it from below, and its largest-remainder rounding (the
    # usual rounding of Eq. 20) is never better
    cont = budget * w / w.sum()
    assert _objective(w, cont) <= _objective(w, n) + 1e-12
    rounded = np.floor(cont).astype(int)
    rounded[np.argsort(-(cont - rounded), kind="stable")[: budget - rounded.sum()]] += 1
    if rounded.min() >= 2:
        assert _objective(w, n) <= _objective(w, rounded) + 1e-12
    # and it is monotone: a larger weight never gets fewer rollouts
    order = np.argsort(w)
    assert np.all(np.diff(n[order]) >= 0)


def test_allocation_edge_cases():
    np.testing.assert_array_equal(allocate_rollouts([0.0, 0.0], 0), [0, 0])
    np.testing.assert_array_equal(allocate_rollouts([1.0, 1.0, 1.0], 6), [2, 2, 2])
    np.testing.assert_array_equal(allocate_rollouts([1.0, 0.0, 3.0], 8), [2, 0, 6])
    np.testing.assert_array_equal(allocate_rollouts([1.0, 9.0], 10, n_min=2, n_max=5), [5, 5])


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (([1.0, 1.0], 3), r"feasible range is \[4, inf\]"),
        (([1.0, 1.0], 20, 2, 5), r"feasible range is \[4, 10\]"),
        (([0.0, 0.0], 4), r"feasible range is \[0, 0\]"),
        (([1.0, -1.0], 4), "weights must be finite"),
        (([1.0, float("nan")], 4), "weights must be finite"),
        (([1.0], 4, 0), "n_min"),
        (([1.0], 4, 3, 2), "n_max"),
        (([1.0], -1), "budget"),
        (([1.0], 2.5), "budget"),
    ],
)
def test_allocation_errors(args, match):
    with pytest.raises(ValueError, match=match):
        allocate_rollouts(*args)


def _plain_greedy(w, budget, n_min, n_max):
    return greedy_allocation(w, budget, n_min, n_max)  # the rule, cures.rules


@settings(max_examples=200)
@given(st.lists(st.one_of(st.just(0.0), st.integers(1, 4).map(float), st.floats(0.01, 10.0)), min_size=1,
                max_size=30),
       st.integers(0, 400), st.integers(1, 4), st.one_of(st.none(), st.integers(4, 40)))
def test_allocation_equals_the_plain_greedy_ties_included(w, extra, n_min, n_max):
    k = sum(x > 0 for x in w)
    budget = k * n_min + extra
    if n_max is not None:
        budget = min(budget, k * n_max)
    if k == 0:
        budget = 0
    np.testing.assert_array_equal(allocate_rollouts(w, budget, n_min, n_max), _plain_greedy(w, budget, n_min, n_max))


def _greedy(w, budget, n_min, n_max):
    """The greedy rule alone (one rollout at a time from a max-heap): what allocate_into must equal."""
    from cures.theory import _rest_by_heap

    w = np.asarray(w, float)
    out = np.where(w > 0, n_min, 0).astype(np.int64)
    _rest_by_heap(w, budget, int(out.sum()), -1 if n_max is None else n_max, out)
    return out


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 300), st.sampled_from(["beta", "ties", "zeros", "spread"]),
       st.integers(1, 3), st.one_of(st.none(), st.integers(4, 64)), st.floats(1.0, 40.0))
def test_fast_allocation_equals_the_greedy_rule_bit_for_bit(seed, m, kind, n_min, n_max, per_prompt):
    """The threshold and selection fast path gives exactly the greedy rule's integers (ties to the lower index),
    for continuous, tied, partly zero and widely spread weights, with and without an upper clamp."""
    rng = np.random.default_rng(seed)
    if kind == "beta":
        p = rng.beta(0.6, 0.9, m)
        w = np.sqrt(p * (1 - p))
    elif kind == "ties":
        w = rng.choice([0.1, 0.3, 0.5, np.sqrt(0.21)], m)
    elif kind == "zeros":
        w = np.where(rng.random(m) < 0.4, 0.0, rng.random(m))
    else:
        w = 10.0 ** rng.uniform(-4, 1, m)
    k = int((w > 0).sum())
    budget = max(k * n_min, int(per_prompt * m))
    if n_max is not None:
        n_max = max(n_max, n_min)
        budget = min(budget, k * n_max)
    if k == 0:
        return
    np.testing.assert_array_equal(allocate_rollouts(w, budget, n_min, n_max), _greedy(w, budget, n_min, n_max))


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_kth_largest_is_the_sorted_value(data):
    """The selection behind Eq. 20's last rollouts equals a descending sort's k-th value, ties and sentinels included,
    and leaves its input alone."""
    from cures.theory import _kth_largest

    values = np.array(data.draw(st.lists(
        st.one_of(st.sampled_from([-1.0, 0.0, 0.25, 1.0]), st.floats(-1e300, 1e300)), min_size=1, max_size=70)))
    k = data.draw(st.integers(1, values.size))
    before = values.copy()
    assert _kth_largest(values, k) == np.sort(values)[::-1][k - 1]
    np.testing.assert_array_equal(values, before)


def _plain_count(w, lam, n_min, n_max):
    """Gains w^2 / (n (n + 1)), n = n_min, n_min + 1, ..., below n_max, that exceed lam, counted one by one."""
    n = n_min
    while (n_max <= 0 or n < n_max) and w * w / (n * (n + 1.0)) > lam:
        n += 1
    return n - n_min


@settings(max_examples=400, deadline=None)
@given(st.lists(st.one_of(st.just(0.0), st.floats(-1.0, 0.0), st.floats(1e-3, 10.0), st.integers(1, 6).map(float),
                          st.floats(1e-150, 1e150)), min_size=1, max_size=40),
       st.integers(1, 4), st.one_of(st.just(0), st.integers(4, 30)), st.integers(0, 39), st.integers(1, 12),
       st.sampled_from(["gain", "below", "above", "tiny", "huge", "plain"]), st.floats(1e-6, 10.0))
def test_count_above_divides_where_the_margin_cannot_decide(w, n_min, n_max, pick, n_at, where, plain_lam):
    """The division-free first pass of `_count_above` counts exactly the gains `_gain` puts above lam: lam on a
    prompt's gain itself or one float beside it (where only the division decides), lam far outside the normal
    range (where the margin does not hold), and any lam."""
    from cures.theory import _count_above

    w = np.array(w)
    x = abs(w[pick % w.size]) or 1.0
    gain = x * x / (n_at * (n_at + 1.0))
    lam = {"gain": gain, "below": np.nextafter(gain, 0.0), "above": np.nextafter(gain, np.inf), "tiny": 1e-300,
           "huge": 1e295, "plain": plain_lam}[where]
    assume(0.0 < lam < np.inf)
    assume(all(v <= 0.0 or v / math.sqrt(lam) < 1e5 or n_max > 0 for v in w))  # the plain count walks one by one
    counts = np.full(w.size, -7, np.int64)
    total, _, _ = _count_above(w, lam, n_min, n_max, counts)
    expected = [_plain_count(v, lam, n_min, n_max) if v > 0.0 else 0 for v in w]
    np.testing.assert_array_equal(counts, expected)
    assert total == sum(expected)
