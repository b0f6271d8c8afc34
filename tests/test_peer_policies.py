"""The defining property of each peer policy (DAPO, GVM, SPEED-RL, MoPPS, GRESO, Knapsack-RL), tested directly."""

import itertools

import numpy as np
import pytest

from cures.policies import make_policy
from cures.policies.greso import skip_probability
from cures.policies.gvm import gvm_weight
from cures.policies.knapsack import solve, value


def outcome_for(p, seed=0):
    rng = np.random.default_rng(seed)
    return lambda plan: rng.binomial(plan.n_rollouts, p[plan.prompt_ids])


def mostly_stuck(n, mixed_share, seed=0):
    """A population where only `mixed_share` of the prompts have 0 < p < 1 (the rest half 0, half 1)."""
    rng = np.random.default_rng(seed)
    p = rng.choice([0.0, 1.0], n)
    k = int(mixed_share * n)
    p[:k] = rng.uniform(0.2, 0.8, k)
    return rng.permutation(p)


# ------------------------------------------------------------------------------------------------ DAPO
def test_dapo_trains_only_mixed_groups_and_counts_its_refills():
    p = mostly_stuck(600, 0.3)
    policy = make_policy("dapo", prompts_per_step=16, n=8, gen_batch_size=24, max_gen_batches=10)
    state = policy.init(600, seed=0)
    outcome = outcome_for(p)
    rounds = []
    for _ in range(20):
        generated = 0
        n_rounds = 0
        while True:
            plan = policy.plan(state)
            generated += plan.total
            n_rounds += 1
            if policy.observe(state, outcome(plan)):
                break
        batch = policy.training_batch(state)
        trained = batch.group >= 0
        assert np.all((batch.successes[trained] > 0) & (batch.successes[trained] < 8))  # mixed only
        assert batch.n_groups == 16  # truncated to exactly prompts_per_step
        # every mixed group generated before the batch filled is kept, in order
        mixed = (batch.successes > 0) & (batch.successes < 8)
        assert np.all(trained[mixed][:16])
        assert batch.rollouts_generated == generated == n_rounds * 24 * 8  # refills count
        rounds.append(n_rounds)
    assert max(rounds) > 1  # ~30 % mixed: 24 candidates rarely give 16 mixed groups
    assert state.arrays.vars.short_steps == 0


def test_dapo_trains_on_what_it_has_when_the_cap_is_hit():
    p = mostly_stuck(600, 0.02)
    policy = make_policy("dapo", prompts_per_step=16, n=8, gen_batch_size=20, max_gen_batches=3)
    state = policy.init(600, seed=0)
    batch = policy.run_step(state, outcome_for(p))  # no exception
    assert batch.n_groups < 16 and batch.rollouts_generated == 3 * 20 * 8
    assert state.arrays.vars.short_steps == 1
    assert state.arrays.vars.short_groups == 16 - batch.n_groups


# ------------------------------------------------------------------------------------------------ GVM
def test_gvm_weight_peaks_at_sqrt_a_and_decreases_above():
    a = 1e-3
    grid = np.linspace(0.001, 1.0, 2000)
    w = np.array([gvm_weight(x, 1.0, a, 2.0) for x in grid])
    assert grid[np.argmax(w)] == pytest.approx(np.sqrt(a), abs=1e-3)
    assert np.all(np.diff(w[grid > np.sqrt(a)]) < 0)
    assert gvm_weight(0.0, 1.0, a, 2.0) == 0.0 and gvm_weight(0.5, 0.0, a, 2.0) == 0.0


def test_gvm_allocation_decreases_in_p_and_sums_to_the_budget():
    n_prompts = 320
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 1, n_prompts)
    p[:30] = 0.0
    policy = make_policy("gvm", prompts_per_step=16, steps_per_subset=10)
    state = policy.init(n_prompts, seed=0)
    screen = policy.plan(state)
    assert screen.purpose == "screen" and np.all(screen.n_rollouts == 8)
    s = outcome_for(p)(screen)
    assert not policy.observe(state, s)
    n = state.arrays.n_static[screen.prompt_ids]
    assert n.sum() == 8 * screen.prompt_ids.size  # sum-preserving: avg_rollouts x |D_t|
    rate = s / 8
    assert np.all(n[rate == 0] == 0) and np.all(n[rate == 1] > 0)  # p = 0 gets none; p = 1 still some
    w = np.array([gvm_weight(r, 1.0, 1e-3, 2.0) for r in rate])
    exact = n.sum() * w / w.sum()
    assert np.all(np.abs(n - exact) < 1)  # largest-remainder rounding of n_i ∝ 1/sqrt(p + a/p)
    means = [n[rate == k / 8].mean() for k in range(1, 9) if np.any(rate == k / 8)]
    assert np.all(np.diff(means) <= 0) and means[0] > 2 * means[-1]  # decreasing in p above sqrt(a)
    # training steps use the fixed n of each prompt and skip n = 0 prompts
    plan = policy.plan(state)
    assert plan.purpose == "train"
    np.testing.assert_array_equal(plan.n_rollouts, state.arrays.n_static[plan.prompt_ids])


def test_gvm_uses_reported_score_norms():
    policy = make_policy("gvm", prompts_per_step=4, subsets=1, steps_per_subset=5)
    state = policy.init(8, seed=0)
    screen = policy.plan(state)
    stats = np.full((8, 3), np.nan)
    stats[:, 0] = np.where(np.arange(8) < 4, 1.0, 9.0)  # E1||s||^2: G = 1 or 3
    policy.observe(state, np.full(8, 4.0), score_stats=stats)  # every p = 1/2
    n = state.arrays.n_static[screen.prompt_ids]
    assert n.sum() == 64 and np.all(n[:4] == n[0]) and np.all(n[4:] == n[4]) and n[4] == 3 * n[0]


# ------------------------------------------------------------------------------------------------ SPEED
def test_speed_continues_only_screened_mixed_prompts_and_reuses_the_screen():
    p = mostly_stuck(400, 0.4)
    policy = make_policy("speed", prompts_per_step=8, n_init=4, n_continue=12, gen_batch_size=16)
    state = policy.init(400, seed=0)
    outcome = outcome_for(p)
    for _ in range(10):
        screened_mixed = []
        while True:
            plan = policy.plan(state)
            succ = outcome(plan)
            if plan.purpose == "screen":
                assert np.all(plan.n_rollouts == 4)
                screened_mixed.append(set(plan.prompt_ids[(succ > 0) & (succ < 4)]))
            else:
                assert np.all(plan.n_rollouts == 12)
                assert set(plan.prompt_ids) <= screened_mixed[-1]
            if policy.observe(state, succ):
                break
        batch = policy.training_batch(state)
        assert batch.n_groups == 8
        for g in range(batch.n_groups):
            members = np.flatnonzero(batch.group == g)
            assert len(members) == 2 and len(set(batch.prompt_ids[members])) == 1
            assert sorted(batch.n_rollouts[members]) == [4, 12]  # screening rollouts trained too
            screen_slot = members[np.argmin(batch.n_rollouts[members])]
            assert 0 < batch.successes[screen_slot] < 4
        untrained_screens = (batch.group < 0) & (batch.n_rollouts == 4)
        assert untrained_screens.any()


# ------------------------------------------------------------------------------------------------ MoPPS
def test_mopps_picks_the_candidates_whose_sampled_rates_are_nearest_the_target():
    n_prompts, m = 64, 8
    policy = make_policy("mopps", prompts_per_step=m, n=4, ts_ratio=8, target=0.3)  # pool = the whole dataset
    state = policy.init(n_prompts, seed=0)
    means = np.linspace(0.02, 0.98, n_prompts)
    scale = 1e7  # concentrated posteriors: every Thompson draw is within ~1e-4 of its mean
    state.arrays.alpha[:] = means * scale
    state.arrays.beta[:] = (1 - means) * scale
    plan = policy.plan(state)
    nearest = np.argsort(np.abs(means - 0.3))[:m]
    assert set(plan.prompt_ids) == set(nearest)
    assert np.all(plan.n_rollouts == 4)


def test_mopps_update_discounts_with_lambda():
    policy = make_policy("mopps", prompts_per_step=2, n=4, ts_ratio=1, decay=0.5)
    state = policy.init(2, seed=0)
    state.arrays.alpha[:] = [9.0, 3.0]
    state.arrays.beta[:] = [1.0, 7.0]
    plan = policy.plan(state)
    policy.observe(state, np.where(plan.prompt_ids == 0, 4.0, 0.0))
    batch = policy.training_batch(state)  # alpha <- 0.5 alpha + 0.5 alpha0 + s, per prompt
    for x, s in zip(batch.prompt_ids, batch.successes, strict=True):
        a0, b0 = ([9.0, 1.0], [3.0, 7.0])[x]
        assert state.arrays.alpha[x] == pytest.approx(0.5 * a0 + 0.5 + s)
        assert state.arrays.beta[x] == pytest.approx(0.5 * b0 + 0.5 + 4 - s)


# ------------------------------------------------------------------------------------------------ GRESO
def test_greso_skip_probability_matches_its_formula():
    policy = make_policy("greso", prompts_per_step=4)
    state = policy.init(10, seed=0)
    P, S = state.kernel, state.arrays
    S.vars.q_easy, S.vars.q_hard = 0.6, 0.3
    S.streak[1] = (3, 0)
    S.streak[2] = (0, 2)
    S.streak[3] = (0, 9)
    assert skip_probability(P, S, 0) == 0.0
    assert skip_probability(P, S, 1) == pytest.approx(1 - 0.6**3)
    assert skip_probability(P, S, 2) == pytest.approx(1 - 0.3**2)
    assert skip_probability(P, S, 3) == pytest.approx(1 - 0.01)  # floor max(q^c, 0.01)


def test_greso_skips_streaking_prompts_at_that_rate():
    n_prompts = 400
    policy = make_policy("greso", prompts_per_step=300, n=4)
    state = policy.init(n_prompts, seed=1)
    state.arrays.streak[:200, 0] = 2  # easy streak 2 with q_easy = 0.5: kept with probability 0.25
    plan = policy.plan(state)  # asks for more survivors than exist: examines one whole pass
    kept = np.isin(np.arange(200), plan.prompt_ids).sum()
    assert np.isin(np.arange(200, 400), plan.prompt_ids).all()
    assert abs(kept - 50) < 4 * np.sqrt(200 * 0.25 * 0.75)


def test_greso_self_tuning_moves_toward_the_target_and_cuts_zero_variance_groups():
    p = mostly_stuck(2000, 0.3, seed=3)
    p[p == 0] = 1.0  # 70 % solved prompts: far too many easy zero-variance groups
    greso = make_policy("greso", prompts_per_step=32, n=8)
    state = greso.init(2000, seed=0)
    zero_var = []
    for _ in range(60):
        batch = greso.run_step(state, outcome_for(p))
        zero_var.append(np.mean((batch.successes == 0) | (batch.successes == batch.n_rollouts)))
    assert state.arrays.vars.q_easy < 0.5  # easy share above target/3: q_easy went down
    assert state.arrays.vars.q_easy >= 0.05
    assert np.mean(zero_var[-15:]) < np.mean(zero_var[:5])


# ------------------------------------------------------------------------------------------------ Knapsack
@pytest.mark.parametrize("seed", range(12))
def test_knapsack_dp_equals_brute_force(seed):
    rng = np.random.default_rng(seed)
    k = int(rng.integers(1, 4))
    p = rng.uniform(0.05, 0.95, k)
    n_min, n_max = 2, int(rng.integers(3, 9))
    total = int(rng.integers(k * n_min, k * n_max + 1))
    out = np.zeros(k, np.int64)
    assert solve(p, total, n_min, n_max, out)
    assert out.sum() == total and np.all((out >= n_min) & (out <= n_max))
    best = max(sum(value(n, q) for n, q in zip(c, p, strict=True))
               for c in itertools.product(range(n_min, n_max + 1), repeat=k) if sum(c) == total)
    assert sum(value(n, q) for n, q in zip(out, p, strict=True)) == pytest.approx(best, rel=1e-12)
    assert not solve(p, k * n_max + 1, n_min, n_max, out)


def test_knapsack_value_peaks_at_one_third_and_vanishes_at_the_ends():
    grid = np.linspace(0, 1, 3001)
    v = np.array([value(10_000, x) for x in grid])
    assert grid[np.argmax(v)] == pytest.approx(1 / 3, abs=1e-3) and v.max() == pytest.approx(4 / 27, rel=1e-3)
    assert value(8, 0.0) == 0.0 and value(8, 1.0) == 0.0


def test_knapsack_plans_spend_exactly_the_budget_with_edge_and_default_groups():
    p = mostly_stuck(200, 0.5)
    policy = make_policy("knapsack", prompts_per_step=20, rollouts_per_step=200, n_max=64)
    state = policy.init(200, seed=0)
    outcome = outcome_for(p)
    for _ in range(10):  # first epoch: no history -> default n = 10 everywhere
        plan = policy.plan(state)
        assert np.all(plan.n_rollouts == 10)
        policy.observe(state, outcome(plan))
    for _ in range(10):
        plan = policy.plan(state)
        last = state.arrays.last[plan.prompt_ids]
        known_solved = last[:, 0] == last[:, 1]
        assert plan.total == 200
        assert np.all(plan.n_rollouts[known_solved] == 2)
        mixed = (last[:, 0] > 0) & ~known_solved
        assert np.all(plan.n_rollouts[mixed] >= 2) and plan.n_rollouts.max() <= 64
        policy.observe(state, outcome(plan))
