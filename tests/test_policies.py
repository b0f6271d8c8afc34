"""Every policy through the common interface: budgets, reproducibility, persistence, compiled callers, and the
defining behaviour of each policy."""

import numpy as np
import pytest
from numba import njit
from scipy import stats

from cures import sumtree
from cures.policies import available, get_spec, make_policy, make_policy_for_budget
from cures.policies.core import PolicyState
from cures.policies.dispatch import observe_round, plan_round
from cures.policies.layout import State
from cures.theory import allocate_rollouts, sampling_distribution

KNOWN = ["cures", "cures-allocation", "cures-paper", "cures-released", "cures-sampling", "dapo", "greso", "grpo",
         "gvm", "knapsack", "mopps", "speed"]
ALL = available()  # the generic tests below cover every registered policy, new ones included
FIXED_BUDGET = {"cures", "cures-allocation", "cures-paper", "cures-sampling", "grpo", "knapsack", "mopps"}
N_PROMPTS = 300


def p_true(n=N_PROMPTS, seed=0):
    """A U-shaped pass-rate population with point masses at 0 and 1, like a real training pool."""
    rng = np.random.default_rng(seed)
    p = rng.beta(0.4, 0.4, n)
    p[: n // 10] = 0.0
    p[n // 10 : n // 5] = 1.0
    return p


def binomial_outcome(p, seed=123):
    rng = np.random.default_rng(seed)
    return lambda plan: rng.binomial(plan.n_rollouts, p[plan.prompt_ids])


def small(name, **kw):
    defaults = {"prompts_per_step": 16}
    if name == "cures-paper":
        defaults["subsets"] = 5
    if name == "mopps":
        defaults["ts_ratio"] = 4
    return make_policy(name, **{**defaults, **kw})


def run(policy, state, steps, outcome):
    return [policy.run_step(state, outcome) for _ in range(steps)]


def test_registry_lists_every_policy_with_docs():
    assert set(KNOWN) <= set(ALL) and ALL == sorted(ALL)
    for name in ALL:
        spec = get_spec(name)
        assert spec.summary and spec.doc and spec.params


@pytest.mark.parametrize("name", ALL)
def test_plans_respect_the_budget_and_count_every_rollout(name):
    policy = small(name)
    state = policy.init(N_PROMPTS, seed=1)
    outcome = binomial_outcome(p_true())
    P = policy.kernel_params(N_PROMPTS)
    rollouts_per_step = P.n * P.prompts_per_step if name == "mopps" else getattr(P, "rollouts_per_step", None)
    cap = {"dapo": lambda: P.max_gen_batches * P.gen_batch_size * P.n,
           "greso": lambda: P.max_gen_batches * N_PROMPTS * P.n,
           "speed": lambda: P.max_gen_batches * (P.gen_batch_size * P.n_init + P.prompts_per_step * P.n_continue)}
    counted = 0
    for _ in range(25):
        step_total = 0
        while True:
            plan = policy.plan(state)
            assert plan.prompt_ids.shape == plan.n_rollouts.shape
            assert np.all(plan.n_rollouts >= 1)
            assert np.all((plan.prompt_ids >= 0) & (plan.prompt_ids < N_PROMPTS))
            counted += plan.total
            step_total += plan.total
            if plan.purpose == "train" and name in FIXED_BUDGET:
                assert plan.total == rollouts_per_step and plan.prompt_ids.size == 16
                assert plan.n_rollouts.min() >= 2
            if policy.observe(state, outcome(plan)):
                break
        assert step_total <= cap.get(name, lambda: np.inf)()
        batch = policy.training_batch(state)
        if name in FIXED_BUDGET:
            assert np.all(batch.group[batch.round == batch.round.max()] >= 0)  # the last round trains
        assert 0 < batch.n_groups <= 16
        np.testing.assert_array_equal(np.unique(batch.group[batch.group >= 0]), np.arange(batch.n_groups))
    assert state.rollouts_total == counted
    assert state.steps_done == 25


@pytest.mark.parametrize("name", ALL)
def test_same_seed_same_plans_other_seed_other_plans(name):
    def trace(seed):
        policy = small(name)
        state = policy.init(N_PROMPTS, seed=seed)
        batches = run(policy, state, 12, binomial_outcome(p_true()))
        return np.concatenate([np.r_[b.prompt_ids, b.n_rollouts] for b in batches])

    a, b = trace(5), trace(5)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, trace(6))


@pytest.mark.parametrize("name", ALL)
def test_saved_state_resumes_with_the_same_plans(name, tmp_path):
    policy = small(name)
    p = p_true()
    state = policy.init(N_PROMPTS, seed=3)
    run(policy, state, 7, binomial_outcome(p, seed=1))
    policy.plan(state)  # save in the middle of a step, with a plan awaiting its rewards
    path = state.save(tmp_path / "state.npz")
    resumed = PolicyState.load(path)
    for s in (state, resumed):
        policy.observe(s, np.zeros(s.step.vars.n_slots - s.step.vars.round_start))
    rest_a = run(policy, state, 6, binomial_outcome(p, seed=2))
    rest_b = run(policy, resumed, 6, binomial_outcome(p, seed=2))
    for x, y in zip(rest_a, rest_b, strict=True):
        np.testing.assert_array_equal(x.prompt_ids, y.prompt_ids)
        np.testing.assert_array_equal(x.n_rollouts, y.n_rollouts)
    np.testing.assert_array_equal(state.arrays.alpha, resumed.arrays.alpha)


@pytest.mark.parametrize("name", ["cures", "cures-paper", "cures-released", "grpo", "speed", "greso"])
def test_rewards_and_successes_are_equivalent(name):
    policy = small(name)
    a, b = policy.init(N_PROMPTS, seed=0), policy.init(N_PROMPTS, seed=0)
    rng = np.random.default_rng(0)
    for _ in range(30):
        plan_a, plan_b = policy.plan(a), policy.plan(b)
        rewards = rng.random(plan_a.total)  # continuous rewards: success means > 0.5
        slots = plan_a.rollout_slots()
        succ = np.bincount(slots, weights=rewards > 0.5, minlength=plan_a.prompt_ids.size)
        assert policy.observe(a, rewards=rewards) == policy.observe(b, successes=succ)
        np.testing.assert_array_equal(plan_a.prompt_ids, plan_b.prompt_ids)
    np.testing.assert_array_equal(a.arrays.alpha, b.arrays.alpha)


@njit
def _compiled_driver(P, S, B, rng, p, steps):
    """A compiled caller in the style of the simulator: deterministic outcomes floor(n p); specialised per policy
    by the type of P."""
    for _ in range(steps):
        while True:
            plan_round(P, S, B, rng)
            for j in range(B.vars.round_start, B.vars.n_slots):
                B.succ[j] = np.floor(B.n[j] * p[B.prompt[j]])
            if observe_round(P, S, B, rng):
                break


@pytest.mark.parametrize("name", ALL)
def test_compiled_callers_run_the_same_policy_code(name):
    policy = small(name)
    p = p_true()
    py_state, nb_state = policy.init(N_PROMPTS, seed=9), policy.init(N_PROMPTS, seed=9)
    run(policy, py_state, 15, lambda plan: np.floor(plan.n_rollouts * p[plan.prompt_ids]))
    _compiled_driver(nb_state.kernel, nb_state.arrays, nb_state.step, nb_state.rng, p, 15)
    fresh = policy.init(N_PROMPTS, seed=9)
    assert py_state.rollouts_total > 0 and py_state.steps_done == nb_state.steps_done == 15
    assert not np.array_equal(py_state.arrays.alpha + py_state.arrays.beta, fresh.arrays.alpha + fresh.arrays.beta)
    for field in State._fields:  # both callers moved the state, and to the same place
        np.testing.assert_array_equal(getattr(py_state.arrays, field), getattr(nb_state.arrays, field))
    np.testing.assert_array_equal(py_state.step.prompt, nb_state.step.prompt)
    assert py_state.rollouts_total == nb_state.rollouts_total
    assert py_state.rng.bit_generator.state == nb_state.rng.bit_generator.state


# ------------------------------------------------------------------------------------------------ grpo
def test_grpo_visits_every_prompt_once_per_epoch():
    policy = make_policy("grpo", prompts_per_step=10, rollouts_per_step=40)
    state = policy.init(100, seed=0)
    seen = np.concatenate([b.prompt_ids for b in run(policy, state, 10, binomial_outcome(p_true(100)))])
    np.testing.assert_array_equal(np.sort(seen), np.arange(100))
    batch = policy.training_batch(state)
    assert np.all(batch.n_rollouts == 4) and batch.n_groups == 10


# ------------------------------------------------------------------------------------------------ cures
def test_cures_samples_from_rho_star_of_the_posterior():
    n = 20
    policy = make_policy("cures", prompts_per_step=50, rollouts_per_step=200, tau=0.1)
    state = policy.init(n, seed=0)
    run(policy, state, 5, binomial_outcome(p_true(n)))  # a posterior with spread-out means
    rho = sampling_distribution(state.posterior_mean(), 0.1)
    counts = np.zeros(n)
    for seed in range(60):
        trial = state.copy()
        trial.rng = np.random.default_rng(seed)
        np.add.at(counts, policy.plan(trial).prompt_ids, 1)
    assert stats.chisquare(counts, counts.sum() * rho).pvalue > 1e-3
    assert counts[np.argmax(rho)] > counts[np.argmin(rho)]


def test_sampling_ess_is_kish_of_rho_star():
    policy = make_policy("cures", prompts_per_step=8, rollouts_per_step=32, tau=0.1)
    state = policy.init(30, seed=0)
    run(policy, state, 3, binomial_outcome(p_true(30)))
    rho = sampling_distribution(state.posterior_mean(), 0.1)
    assert state.sampling_ess() == pytest.approx(1.0 / np.sum(rho**2), rel=1e-9)
    assert 1.0 < state.sampling_ess() < 30.0
    grpo = make_policy("grpo", prompts_per_step=8, rollouts_per_step=32)
    assert grpo.init(30).sampling_ess() is None  # uniform samplers do not draw from rho*


def test_one_budget_for_every_policy():
    assert make_policy_for_budget("cures", 8, 64).params["rollouts_per_step"] == 64
    assert make_policy_for_budget("dapo", 8,
                                  64).params["n"] == 8  # fixed-n policies: n = rollouts_per_step / prompts_per_step
    assert make_policy_for_budget("mopps", 8, 64, n=4).params["n"] == 4  # explicit parameters win
    assert make_policy_for_budget("gvm", 8, 64).params == make_policy("gvm", prompts_per_step=8).params  # no budget
    for n in (2, 3, 8, 13):  # policies without a budget spend GRPO's n per prompt in their own terms
        pods = make_policy_for_budget("pods", 8, 8 * n).params
        assert (pods["n"], pods["m"]) == (4 * n, n)  # generate 4n, train n
        pilot = make_policy_for_budget("pilot-commit", 8, 8 * n).params
        assert pilot["n_pilot"] + pilot["n_commit"] == max(n, 3) and pilot["n_pilot"] == max(2, n // 4)
    assert make_policy_for_budget("pods", 8, 64, n=12).params["m"] is None  # any explicit one: no group mapping
    with pytest.raises(ValueError, match="no parameter 'bogus'"):
        make_policy_for_budget("grpo", 8, 64, bogus=1)


def test_cures_allocation_is_eq20_of_the_posterior_and_the_update_is_eq23():
    policy = make_policy("cures", prompts_per_step=16, rollouts_per_step=160)
    state = policy.init(N_PROMPTS, seed=0)
    outcome = binomial_outcome(p_true())
    run(policy, state, 10, outcome)
    before = state.copy()
    plan = policy.plan(state)
    p_hat = before.posterior_mean()[plan.prompt_ids]
    np.testing.assert_array_equal(plan.n_rollouts, allocate_rollouts(np.sqrt(p_hat * (1 - p_hat)), 160))
    succ = outcome(plan)
    assert policy.observe(state, succ)
    s, f = np.zeros(N_PROMPTS), np.zeros(N_PROMPTS)
    np.add.at(s, plan.prompt_ids, succ)
    np.add.at(f, plan.prompt_ids, plan.n_rollouts - succ)
    np.testing.assert_array_equal(state.arrays.alpha, before.arrays.alpha + s)
    np.testing.assert_array_equal(state.arrays.beta, before.arrays.beta + f)
    batch = policy.training_batch(state)
    np.testing.assert_array_equal(batch.group, np.arange(16))  # one group per draw slot


def test_cures_sum_tree_tracks_rho_star_after_many_updates():
    policy = make_policy("cures", prompts_per_step=32, rollouts_per_step=256, decay=0.9, tau=0.05)
    state = policy.init(1000, seed=0)
    run(policy, state, 40, binomial_outcome(p_true(1000)))
    leaves = sumtree.leaves(state.arrays.tree, state.arrays.vars.tree_height, 1000)
    np.testing.assert_allclose(leaves / leaves.sum(), sampling_distribution(state.posterior_mean(), 0.05),
                               rtol=1e-9)


def test_cures_moves_rollouts_away_from_solved_and_hopeless_prompts():
    p = p_true()
    stuck = (p == 0) | (p == 1)
    usage = {}
    for name in ("grpo", "cures"):
        policy = make_policy(name, prompts_per_step=16, rollouts_per_step=128)
        state = policy.init(N_PROMPTS, seed=0)
        batches = run(policy, state, 150, binomial_outcome(p))
        late = batches[75:]
        usage[name] = sum(b.n_rollouts[stuck[b.prompt_ids]].sum() for b in late) / sum(
            b.rollouts_generated for b in late)
    assert usage["grpo"] == pytest.approx(0.2, abs=0.05)
    assert usage["cures"] < usage["grpo"] / 2


# ------------------------------------------------------------------------------------------------ cures-paper
def test_cures_paper_follows_algorithm_1():
    policy = make_policy("cures-paper", prompts_per_step=8, subsets=3, steps_per_subset=4)
    p = p_true(90)
    state = policy.init(90, seed=0)
    outcome = binomial_outcome(p)
    members = []
    for step in range(12):
        plan = policy.plan(state)
        if step % 4 == 0:  # a subset starts: N' = 4 pre-rollouts for each of its 30 prompts, not trained
            assert plan.purpose == "screen" and plan.total == 4 * 30 and np.all(plan.n_rollouts == 4)
            members.append(set(plan.prompt_ids))
            assert not policy.observe(state, outcome(plan))
            sigma = state.arrays.sigma.copy()
            p_hat = state.posterior_mean()
            pre = plan.prompt_ids
            # reset: the new subset's counts are the prior plus its pre-rollouts only (Eq. 22)
            np.testing.assert_allclose(state.arrays.alpha[pre] + state.arrays.beta[pre], 2 + 4)
            np.testing.assert_allclose(sigma[pre], np.sqrt(p_hat[pre] * (1 - p_hat[pre])))
            plan = policy.plan(state)
        assert plan.purpose == "train" and set(plan.prompt_ids) <= members[-1]
        # line 12: n from the sigma fixed at the subset start, not from the moving posterior
        np.testing.assert_array_equal(plan.n_rollouts, allocate_rollouts(sigma[plan.prompt_ids], 64))
        assert policy.observe(state, outcome(plan))
        batch = policy.training_batch(state)
        assert np.all(batch.group[batch.round == 0] == -1) if step % 4 == 0 else batch.n_groups == 8
    assert len(members) == 3 and not (members[0] & members[1]) and len(members[0] | members[1] | members[2]) == 90


# ------------------------------------------------------------------------------------------------ ablations
def test_cures_sampling_has_fixed_n_and_cures_allocation_uniform_prompts():
    samp = make_policy("cures-sampling", prompts_per_step=10, rollouts_per_step=60)
    st = samp.init(100, seed=0)
    assert all(np.all(b.n_rollouts == 6) for b in run(samp, st, 5, binomial_outcome(p_true(100))))
    alloc = make_policy("cures-allocation", prompts_per_step=10, rollouts_per_step=60)
    st = alloc.init(100, seed=0)
    batches = run(alloc, st, 20, binomial_outcome(p_true(100)))
    for epoch in (batches[:10], batches[10:]):
        np.testing.assert_array_equal(np.sort(np.concatenate([b.prompt_ids for b in epoch])), np.arange(100))
    assert all(np.ptp(b.n_rollouts) == 0 for b in batches[:10])  # first epoch: every p_hat is the prior's 1/2
    assert all(np.ptp(b.n_rollouts) > 0 for b in batches[10:])  # second epoch: sigma from the posterior


# ------------------------------------------------------------------------------------------------ cures-released
def test_cures_released_reproduces_the_public_code():
    policy = make_policy("cures-released", prompts_per_step=16, steps_per_subset=10)
    p = p_true(320)
    state = policy.init(320, seed=0)
    outcome = binomial_outcome(p)
    screen = policy.plan(state)
    assert screen.purpose == "screen" and screen.total == 4 * 160  # auto subsets: 320 / (10 x 16) = 2
    s = outcome(screen)
    assert not policy.observe(state, s)
    ids = screen.prompt_ids
    # identity 8.14: weights after N' = 4 are one of five values, and uniform to within 0.3 %
    expected = np.array([1.00373, 1.00236, 1.00167, 1.00118, 1.00075])
    np.testing.assert_allclose(state.arrays.weight[ids], expected[s.astype(int)], atol=5e-6)
    # 0/N' and N'/N' prompts get no rollouts for the whole iteration
    n_static = state.arrays.n_static[ids]
    assert np.all(n_static[(s == 0) | (s == 4)] == 0) and np.all(n_static[(s > 0) & (s < 4)] > 0)
    # per-shard budget 16 x 8 = 128, rounded half to even without correction
    for k in range(8):
        shard = slice(20 * k, 20 * (k + 1))
        sig = np.sqrt(s[shard] / 4 * (1 - s[shard] / 4))
        np.testing.assert_array_equal(n_static[shard], np.round(128 * sig / sig.sum()).astype(int))
    alpha = state.arrays.alpha.copy()
    plan = policy.plan(state)
    assert plan.purpose == "train"
    assert len(set(plan.prompt_ids)) == plan.prompt_ids.size  # no replacement within the batch
    assert np.all(plan.n_rollouts % 4 == 0) and (plan.total // 4) % 8 == 0  # x4, padded to 8 GPUs
    base = state.arrays.n_static[plan.prompt_ids]
    assert np.all(plan.n_rollouts // 4 - base <= 1) and np.all(plan.n_rollouts // 4 >= base)
    assert policy.observe(state, outcome(plan))
    np.testing.assert_array_equal(state.arrays.alpha, alpha)  # no in-training posterior updates
    for _ in range(9):
        assert policy.plan(state).purpose == "train"
        policy.observe(state, np.zeros(state.step.vars.n_slots - state.step.vars.round_start))
    assert policy.plan(state).purpose == "screen"  # iteration 2 starts on the other subset


# ------------------------------------------------------------------------------------------------ errors
@pytest.mark.parametrize(
    ("name", "kwargs", "match"),
    [
        ("nope", {}, "unknown policy 'nope'; available: cures, "),
        ("cures", {"temperature": 1}, "no parameter 'temperature'; allowed: prompts_per_step"),
        ("cures", {"tau": 0.0}, "tau must be >= 0.001"),
        ("cures", {"tau": "x"}, "tau must be a number"),
        ("cures", {"prompts_per_step": 0}, "prompts_per_step must be an integer >= 1"),
        ("cures", {"prompts_per_step": 2.5}, "prompts_per_step must be an integer"),
        ("cures", {"sigma": "exact"}, "sigma must be one of posterior, pre-rollout"),
        ("cures", {"prior": (0, 0)}, "prior must be two finite counts"),
        ("cures", {"decay": 2}, "decay must be >= 0.0 and <= 1.0"),
        ("grpo", {"reset": True}, "no parameter 'reset'"),
    ],
)
def test_bad_construction_is_a_value_error(name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_policy(name, **kwargs)


@pytest.mark.parametrize(
    ("name", "kwargs", "n_prompts", "match"),
    [
        ("cures", {"prompts_per_step": 16, "rollouts_per_step": 20}, 100, "below prompts_per_step x n_min = 32"),
        ("cures", {"prompts_per_step": 16, "rollouts_per_step": 200, "n_max": 4}, 100, "n_max 4"),
        ("cures", {"subsets": 3}, 100, "steps_per_subset >= 1"),
        ("cures", {"sigma": "pre-rollout"}, 100, "n_pre >= 1"),
        ("grpo", {"prompts_per_step": 16, "rollouts_per_step": 40}, 100, "multiple of prompts_per_step"),
        ("grpo", {"prompts_per_step": 16}, 10, "exceeds n_prompts"),
        ("cures-allocation", {"prompts_per_step": 16}, 10, "exceeds n_prompts"),
        ("cures-sampling", {"prompts_per_step": 16, "rollouts_per_step": 40}, 100, "multiple of prompts_per_step"),
        ("cures", {}, 0, "n_prompts must be an integer >= 1"),
    ],
)
def test_bad_setup_is_a_value_error(name, kwargs, n_prompts, match):
    with pytest.raises(ValueError, match=match):
        make_policy(name, **kwargs).init(n_prompts)


def test_misuse_of_the_step_protocol_is_a_value_error():
    policy = make_policy("cures", prompts_per_step=4)
    state = policy.init(20)
    with pytest.raises(ValueError, match="call plan"):
        policy.observe(state, [0, 0, 0, 0])
    plan = policy.plan(state)
    with pytest.raises(ValueError, match="observe"):
        policy.plan(state)
    with pytest.raises(ValueError, match="not finished|observe"):
        policy.training_batch(state)
    with pytest.raises(ValueError, match="4 slots"):
        policy.observe(state, [0, 0])
    with pytest.raises(ValueError, match=r"\[0, n_rollouts\]"):
        policy.observe(state, plan.n_rollouts + 1)
    with pytest.raises(ValueError, match="rollouts"):
        policy.observe(state, rewards=np.zeros(plan.total + 1))
    with pytest.raises(ValueError, match="exactly one"):
        policy.observe(state)
    with pytest.raises(ValueError, match="belongs to"):
        make_policy("cures", prompts_per_step=8).plan(state)
    assert policy.observe(state, np.zeros(4))


def test_initial_counts_are_used_and_kept():
    from cures.posterior import BetaPosterior

    post = BetaPosterior(50)
    post.update(np.arange(50), np.r_[np.zeros(25), np.full(25, 20)], np.full(50, 20))  # half hopeless, half solved
    post.update([7], [10], [10])
    post.beta[7] = 10 + 1  # prompt 7: p_hat = 1/2 exactly, the most informative
    policy = make_policy("cures", prompts_per_step=64, rollouts_per_step=512, tau=0.05)
    state = policy.init(50, seed=0, posterior=post)
    plan = policy.plan(state)
    share = sampling_distribution(post.mean(), 0.05)[7]  # 0.87: rho* puts most of its mass on prompt 7
    assert abs(np.mean(plan.prompt_ids == 7) - share) < 0.1
    with pytest.raises(ValueError, match="covers 50 prompts"):
        policy.init(40, posterior=post)


def test_same_plans_whatever_the_thread_count(outputs_by_thread_count):
    script = (
        "import numpy as np; from cures.policies import make_policy\n"
        "out = []\n"
        "for name in ['cures', 'cures-paper', 'cures-released', 'grpo', 'greso', 'mopps']:\n"
        "    pol = make_policy(name, prompts_per_step=16); st = pol.init(300, seed=4); rng = np.random.default_rng(0)\n"
        "    for _ in range(8):\n"
        "        b = pol.run_step(st, lambda plan: rng.binomial(plan.n_rollouts, 0.4))\n"
        "        out.append(np.r_[b.prompt_ids, b.n_rollouts])\n"
        "print(np.concatenate(out).tobytes().hex())\n"
    )
    assert len(set(outputs_by_thread_count(script, timeout=300))) == 1
