"""Reinforce-Ada: the exit rules, the down-sampling to n (first-generated of each class), the global baseline."""

import numpy as np
import pytest

from cures.policies import make_policy
from cures.policies.reinforce_ada import Params, finished, trained_counts

BAL = Params(prompts_per_step=1, round_repeat=8, max_rounds=4, n=4, balanced=True, global_stats=True)
POS = BAL._replace(balanced=False)


@pytest.mark.parametrize("P, pos, neg, done", [
    (BAL, 2, 2, True), (BAL, 1, 30, False), (BAL, 30, 1, False), (BAL, 5, 3, True),
    (POS, 1, 0, True), (POS, 0, 32, False),
])
def test_exit_rules(P, pos, neg, done):
    assert finished(P, pos, neg) == done


@pytest.mark.parametrize("P, pos, neg, want", [
    (BAL, 5, 3, (2, 2)),  # finished: floor(n/2) positives, the rest negatives
    (BAL, 1, 31, (1, 3)),  # unfinished balanced: one positive only, filled with negatives
    (BAL, 0, 32, (0, 4)),  # all wrong: n negatives (zero advantage under the global baseline)
    (BAL, 32, 0, (4, 0)),
    (POS, 1, 7, (1, 3)),  # finished positive_focused: the balanced targets, filled with negatives
    (POS, 3, 5, (2, 2)),
    (POS, 0, 32, (0, 4)),  # unfinished positive_focused: t_pos = 0 possible, filled with negatives
])
def test_down_sampling_targets(P, pos, neg, want):
    assert trained_counts(P, pos, neg, finished(P, pos, neg)) == want


def test_rounds_stop_per_prompt_and_groups_take_the_first_rollouts_of_each_class():
    policy = make_policy("reinforce-ada", prompts_per_step=3, round_repeat=4, max_rounds=3, n=4)
    state = policy.init(30, seed=0)
    first = policy.plan(state)
    a, b, c = first.prompt_ids
    assert first.total == 12
    assert not policy.observe(state, [2, 4, 0])  # a finished (2/2); b and c not
    second = policy.plan(state)
    np.testing.assert_array_equal(second.prompt_ids, [b, c])
    assert not policy.observe(state, [1, 0])  # b finished (5 pos, 3 neg); c still all wrong
    third = policy.plan(state)
    np.testing.assert_array_equal(third.prompt_ids, [c])
    assert policy.observe(state, [0])  # N = 3 rounds: the step ends with c unfinished
    batch = policy.training_batch(state)
    assert state.rollouts_total == 12 + 8 + 4 == batch.rollouts_generated
    # slots: 0 a(2/4), 1 b(4/4), 2 c(0/4), 3 b(1/4), 4 c(0/4), 5 c(0/4)
    np.testing.assert_array_equal(batch.group, [0, 1, 2, 1, -1, -1])  # c's first slot already has 4 negatives
    np.testing.assert_array_equal(batch.kept_successes, [2, 2, 0, 0, 0, 0])
    np.testing.assert_array_equal(batch.kept_failures, [2, 0, 4, 2, 0, 0])
    np.testing.assert_array_equal(batch.baseline, [[2, 4], [5, 8], [0, 12]])  # every rollout of the prompt
    assert batch.rollouts_trained == 12


def test_positive_focused_exits_at_the_first_success_and_the_baseline_can_be_off():
    policy = make_policy("reinforce-ada", prompts_per_step=2, round_repeat=4, max_rounds=4, n=4,
                         choice="positive_focused",
                         global_stats=False)
    state = policy.init(20, seed=1)
    policy.plan(state)
    assert policy.observe(state, [1, 4])
    batch = policy.training_batch(state)
    assert not batch.baseline.any() and batch.rollouts_trained == 8
