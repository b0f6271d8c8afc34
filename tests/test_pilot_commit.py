"""Pilot-Commit: keep / defer / evict thresholds, commits that train with their kept pilots (also across steps),
buffer staleness, epoch-end exclusion, and every generated rollout counted."""

import numpy as np

from cures.policies import make_policy


def policy(**kw):
    return make_policy("pilot-commit", **{"prompts_per_step": 2, "n_pilot": 8, "n_commit": 4, "gen_batch_size": 6,
                                          **kw})


def test_a_step_pilots_keeps_mid_rate_survivors_and_trains_commits_with_their_pilots():
    pc = policy()
    state = pc.init(12, seed=0)
    pilots = pc.plan(state)
    assert pilots.total == 48 and np.all(pilots.n_rollouts == 8)
    assert not pc.observe(state, [0, 1, 6, 7, 8, 4])  # keep 1/8, 6/8, 4/8; defer 0/8; skip 7/8; 8/8 solved
    survivors = pilots.prompt_ids[[1, 2, 5]]
    held = state.held_slot_ids()
    assert held.size == 3 and set(state.arrays.held[survivors, 0]) == set(held.tolist())
    assert state.arrays.flags[pilots.prompt_ids[4]] == 1  # marked for exclusion at the end of the epoch
    second = pc.plan(state)  # 2 commits from the 3 survivors, then 6 new pilots
    commits = second.prompt_ids[:2]
    assert set(commits) <= set(survivors) and np.all(second.n_rollouts[:2] == 4) and np.all(second.n_rollouts[2:] == 8)
    assert pc.observe(state, [2, 3, 0, 0, 0, 0, 0, 0])
    batch = pc.training_batch(state)
    carried = batch.source >= 0
    assert carried.sum() == 2 and batch.rollouts_generated == 48 + 8 + 48 == state.rollouts_total
    for j in np.flatnonzero(carried):  # each commit's group holds its own pilot, with the pilot's counts
        x = batch.prompt_ids[j]
        pilot = np.flatnonzero(batch.slot_id == batch.source[j])[0]
        assert batch.prompt_ids[pilot] == x and batch.round[pilot] == 0 and batch.successes[j] == batch.successes[pilot]
        commit = np.flatnonzero((batch.prompt_ids == x) & (batch.n_rollouts == 4))[0]
        assert batch.group[j] == batch.group[commit] >= 0
    assert batch.n_groups == 2 and batch.rollouts_trained == 2 * (8 + 4)
    left = set(survivors) - set(commits)
    assert set(state.held_slot_ids().tolist()) == set(state.arrays.held[list(left), 0])  # the third survivor


def test_pilots_kept_from_an_earlier_step_are_committed_then_flushed_when_stale():
    pc = policy(prompts_per_step=1, max_off_steps=1)
    state = pc.init(60, seed=1)
    first = pc.plan(state)
    assert not pc.observe(state, [4] * 6)  # six survivors, none committed yet
    pc.plan(state)
    assert pc.observe(state, [1] + [0] * 6)  # one commit: step 0 done; five survivors wait
    pc.plan(state)
    assert pc.observe(state, [1] + [0] * 6)  # step 1: a step-0 pilot is committed (kept across the step)
    batch = pc.training_batch(state)
    j = np.flatnonzero(batch.source >= 0)[0]
    assert batch.prompt_ids[j] in first.prompt_ids and batch.source[j] not in batch.slot_id  # from the last step
    assert len(state.held_slot_ids()) == 4
    pc.plan(state)
    assert pc.observe(state, [1] + [0] * 6)  # end of step 2: step-0 pilots are 2 > max_off_steps old
    assert len(state.held_slot_ids()) == 0


def test_the_epoch_end_clears_the_buffer_and_excludes_solved_prompts():
    pc = policy(prompts_per_step=1, gen_batch_size=4)
    state = pc.init(8, seed=2)
    first = pc.plan(state)
    assert not pc.observe(state, [8, 4, 0, 0])  # prompt 0 solved, prompt 1 survives
    second = pc.plan(state)
    assert pc.observe(state, [2] + [0] * 4)
    third = pc.plan(state)  # the pass of 8 is used up: buffer cleared, the solved prompt leaves
    assert len(state.held_slot_ids()) == 0 and np.all(third.n_rollouts == 8)
    assert first.prompt_ids[0] not in state.arrays.queue[: state.arrays.vars.queue_len]
    assert second.total == 4 + 32
