"""PODS: the kept counts follow the code's max-variance rule; the step trains on exactly m rollouts per prompt."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from cures.policies import make_policy
from cures.policies.pods import kept_successes


def code_rule(rewards: np.ndarray, m: int) -> np.ndarray:
    """trainer/maxvargrpo_trainer.py's selection, literally: sort descending, try top i + bottom m - i for
    i = m, 0, 1, ..., m - 1, keep the first of strictly largest sample variance."""
    r = np.sort(rewards)[::-1]
    best, best_var = None, -1.0
    for i in [m, *range(m)]:
        subset = np.concatenate([r[:i], r[len(r) - (m - i):]]) if m - i else r[:i]
        var = subset.var(ddof=1)
        if var > best_var + 1e-12:
            best, best_var = subset, var
    return best


@given(st.integers(2, 40), st.data())
def test_kept_successes_equal_the_code_rule_on_binary_rewards(n, data):
    m = data.draw(st.integers(2, n))
    k = data.draw(st.integers(0, n))
    rewards = np.r_[np.ones(k), np.zeros(n - k)]
    assert kept_successes(k, n, m) == int(code_rule(rewards, m).sum())
    if m % 2 == 0:  # the closed form for even m: j* = clip(m/2, max(0, m - (n - k)), min(k, m))
        assert kept_successes(k, n, m) == min(max(m // 2, max(0, m - (n - k))), min(k, m))


def test_a_step_generates_n_and_trains_m_per_prompt_with_the_subsets_statistics():
    policy = make_policy("pods", prompts_per_step=6, n=10, m=4)
    state = policy.init(50, seed=0)
    plan = policy.plan(state)
    assert plan.total == 60 and np.all(plan.n_rollouts == 10)
    successes = np.array([0, 1, 3, 5, 9, 10])
    assert policy.observe(state, successes)
    batch = policy.training_batch(state)
    np.testing.assert_array_equal(batch.kept_successes, [0, 1, 2, 2, 3, 4])
    np.testing.assert_array_equal(batch.kept_successes + batch.kept_failures, 4)
    assert batch.rollouts_generated == 60 and batch.rollouts_trained == 24
    assert not batch.baseline.any()  # advantages from the kept subset itself
    assert state.rollouts_total == 60
