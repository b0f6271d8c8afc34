"""VIP: the allocation is the exact integer optimum of its objective (exhaustive search on small instances), the
code's drop-below-min_keep rule, the first-step and uniform fallbacks, and the last-observation predictor."""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cures.policies import make_policy
from cures.policies.vip import allocate, cholesky_solve, objective


def brute_force(rloo, a, b, lower, upper, budget):
    best, best_n = np.inf, None
    for n in itertools.product(range(lower, upper + 1), repeat=a.size):
        if sum(n) != min(budget, a.size * upper):
            continue
        value = sum(objective(rloo, a[i], b[i], float(n[i])) for i in range(a.size))
        if value < best - 1e-15:
            best, best_n = value, n
    return best, np.array(best_n)


@settings(max_examples=40, deadline=None)
@given(st.booleans(), st.lists(st.floats(1e-4, 1 - 1e-4), min_size=1, max_size=4), st.floats(0, 5e-3),
       st.integers(0, 12), st.data())
def test_allocation_is_the_exact_optimum(rloo, ps, gamma, extra, data):
    p = np.array(ps)
    a, b = p * (1 - p), gamma * np.log(p)
    lower = data.draw(st.integers(2 if rloo else 3, 5))
    upper = lower + data.draw(st.integers(1, 6))
    budget = lower * p.size + extra
    n = np.empty(p.size, np.int64)
    allocate(rloo, a, b, lower, upper, budget, n)
    best, _ = brute_force(rloo, a, b, lower, upper, budget)
    assert n.sum() == min(budget, p.size * upper) and n.min() >= lower and n.max() <= upper
    value = sum(objective(rloo, a[i], b[i], float(n[i])) for i in range(p.size))
    assert value == pytest.approx(best, rel=1e-12, abs=1e-15)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 12), st.integers(0, 2**32 - 1), st.sampled_from([1e-4, 1e-2, 1.0]))
def test_cholesky_solve_solves_any_kernel_system(k, seed, jitter):
    """The GP's solve: for a kernel matrix plus jitter (symmetric positive definite, possibly with repeated points),
    K x = y to rounding, and the same x as LAPACK's general solver."""
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(k, 3))
    emb[rng.integers(0, k, size=k // 3)] = emb[0]  # some prompts share an embedding: K has equal rows but the jitter
    K = np.exp(-0.5 * ((emb[:, None, :] - emb[None, :, :]) ** 2).sum(-1)) + jitter * np.eye(k)
    y = rng.normal(size=k)
    x = cholesky_solve(K, y)
    np.testing.assert_allclose(K @ x, y, rtol=0, atol=1e-9 * max(1.0, np.abs(y).max()) / jitter)
    np.testing.assert_allclose(x, np.linalg.solve(K, y), rtol=1e-6, atol=1e-6 / jitter)


def step(policy, state, successes_of):
    plan = policy.plan(state)
    policy.observe(state, successes_of(plan))
    return plan


def test_first_step_fallback_drop_rule_and_predictor():
    policy = make_policy("vip", prompts_per_step=8, rollouts_per_step=48, upper=16, gamma=0.0)
    state = policy.init(8, seed=0)  # one candidate batch = every prompt, so each step sees all of them
    first = step(policy, state, lambda plan: np.zeros(plan.prompt_ids.size))
    assert np.all(first.n_rollouts == 8)  # no history: rollout.n each (64, not B)
    # every prompt observed at 0/8: equal predictions, the uniform fallback (B >= 4 m: B / m each)
    second = step(policy, state, lambda plan: np.where(plan.prompt_ids < 4, plan.n_rollouts // 2, 0))
    assert np.all(second.n_rollouts == 6)
    np.testing.assert_allclose(state.arrays.latent[:4], 0.0, atol=1e-12)  # logit(3/6)
    np.testing.assert_allclose(state.arrays.latent[4:], np.log(1e-6 / (1 - 1e-6)))
    # p = 1/2 for 0-3, 1e-6 for 4-7, no bonus: stage 1 gives 2 to each and the other 32 to the mixed four (10
    # each); the hopeless, below min_keep, are dropped; stage 2 spends B on the mixed four: 12 each
    third = policy.plan(state)
    assert sorted(third.prompt_ids.tolist()) == [0, 1, 2, 3] and np.all(third.n_rollouts == 12)


def test_small_budget_fallback_draws_groups_of_four():
    policy = make_policy("vip", prompts_per_step=8, rollouts_per_step=24, first_n=2)
    state = policy.init(8, seed=3)
    step(policy, state, lambda plan: np.zeros(plan.prompt_ids.size))
    plan = policy.plan(state)  # equal predictions, B < 4 m: B / 4 = 6 draws of +4
    assert plan.total == 24 and np.all(plan.n_rollouts % 4 == 0)


def test_bad_settings_are_value_errors():
    with pytest.raises(ValueError, match="below 2 x prompts_per_step"):
        make_policy("vip", prompts_per_step=8, rollouts_per_step=10).init(20)
    with pytest.raises(ValueError, match="min_keep"):
        make_policy("vip", prompts_per_step=8, upper=8, min_keep=9).init(20)


def test_the_embedding_gp_is_the_codes_recursive_update(tmp_path):
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(12, 3))
    emb[1] = emb[0]  # two prompts with one embedding
    path = tmp_path / "emb.npy"
    np.save(path, emb)
    policy = make_policy("vip", prompts_per_step=4, rollouts_per_step=32, embeddings=str(path), length_scale=0.8)
    state = policy.init(12, seed=0)
    np.testing.assert_array_equal(state.arrays.features, emb)
    from cures.policies.vip import gp_update

    S, P = state.arrays, state.kernel
    S.latent[:] = rng.normal(size=12)
    S.latent[1] = S.latent[0]
    m = S.latent.copy()
    T, g = np.array([0, 5, 7]), np.array([0.3, -1.0, 2.0])
    gp_update(P, S, T, g)
    d2 = ((emb[:, None, :] - emb[None, :, :]) ** 2).sum(-1)
    K = np.exp(-0.5 * d2 / 0.8**2)
    alpha = np.linalg.solve(K[np.ix_(T, T)] + 1e-4 * np.eye(3), g - m[T])
    want = m + K[:, T] @ alpha
    want[T] = g
    np.testing.assert_allclose(S.latent, want, rtol=1e-10, atol=1e-12)
    assert abs(S.latent[1] - 0.3) < 1e-3  # the twin of prompt 0 (same embedding, same prior) moved with it


def test_embeddings_file_errors_are_value_errors(tmp_path):
    with pytest.raises(ValueError, match="cannot be read"):
        make_policy("vip", prompts_per_step=4, embeddings=str(tmp_path / "missing.npy")).init(10)
    np.save(tmp_path / "short.npy", np.zeros((9, 2)))
    with pytest.raises(ValueError, match=r"holds shape \(9, 2\); expected one row per prompt: \(10, d\)"):
        make_policy("vip", prompts_per_step=4, embeddings=str(tmp_path / "short.npy")).init(10)
    bad = np.zeros((10, 2))
    bad[3, 1] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    with pytest.raises(ValueError, match="NaN"):
        make_policy("vip", prompts_per_step=4, embeddings=str(tmp_path / "nan.npy")).init(10)
