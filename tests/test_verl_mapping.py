"""The verl mapping (`cures.backends.verl.mapping`) for every policy, through `run_policy_step` and a fake verl agent
loop that writes TransferQueue-style keys from the rows alone, as verl 0.9.1's `AgentLoopWorkerTQ` does: every
rollout is keyed once, read back in plan order, trained under cures' groups, and a held slot's keys are still there
when a later step trains on them. No verl is imported."""

import numpy as np
import pytest
from test_policy_step import SMALL  # noqa: E402 - the same small settings (Pilot-Commit re-using pilots across steps)

from cures.backends.verl.mapping import (
    PROMPT_ID,
    ROLLOUT_N,
    plan_rows,
    rewards_in_plan_order,
    rollout_keys,
    trained_keys,
)
from cures.policies import available, make_policy_for_budget
from cures.policies.step import run_policy_step


class FakeAgentLoop:
    """A dict for TransferQueue; `submit(rows)` runs row[__rollout_n__] sessions per row (popped, as verl does) and
    writes each trajectory's summed reward under `{uid}_{session}_0`; one session in 50 fails (no score)."""

    def __init__(self, p, seed):
        self.p, self.rng, self.tq, self.prompt_of_uid = p, np.random.default_rng(seed), {}, {}

    def submit(self, rows):
        written = []
        for i, uid in enumerate(rows["uid"]):
            row = {k: v[i] for k, v in rows.items()}
            n, prompt = row.pop(ROLLOUT_N), int(row[PROMPT_ID])
            assert uid not in self.prompt_of_uid, "a uid is used twice in one run"
            self.prompt_of_uid[uid] = prompt
            for s in range(int(n)):
                key = f"{uid}_{s}_0"
                if self.rng.random() >= 0.02:
                    self.tq[key] = float(self.rng.random() < self.p[prompt])
                written.append(key)
        return written


@pytest.mark.parametrize("name", available())
def test_every_policy_maps_to_verl_rows_keys_and_groups(name):
    policy = make_policy_for_budget(name, 4, 16, **SMALL.get(name, {}))
    state = policy.init(40, seed=1)
    loop = FakeAgentLoop(np.linspace(0.05, 0.95, 40), seed=2)

    def generate(plan):
        rows = plan_rows(plan)
        assert rows[ROLLOUT_N].sum() == plan.total and (rows[ROLLOUT_N] >= 1).all()
        keys = rollout_keys(rows)
        assert loop.submit(rows) == keys  # the keys verl writes, in plan order
        return keys

    held, cleared, reused = {}, set(), 0
    for _ in range(6):
        step = run_policy_step(policy, state, generate, lambda plan, keys: rewards_in_plan_order(keys, loop.tq),
                               held=held)
        fresh = [k for k, f in zip(step.rollouts.rollouts, step.rollouts.fresh, strict=True) if f]
        assert len(set(fresh)) == len(fresh) == step.rollouts_generated
        np.testing.assert_array_equal(np.isnan(step.rollouts.rewards), [k not in loop.tq for k in
                                                                        step.rollouts.rollouts])
        for per_prompt in (False, True):
            t = trained_keys(step, per_prompt)
            assert len(t.keys) == t.group.size == t.weight.size == step.trained.index.size
            assert len(set(t.keys)) == len(t.keys)  # no rollout trains twice
            np.testing.assert_array_equal(np.bincount(t.group, minlength=step.trained.n_groups),
                                          step.trained.group_sizes())
            assert t.weight.sum() == pytest.approx(len(t.keys))
        # every trained key was written by the agent loop for the prompt its slot trains (re-used slots included)
        slots = step.rollouts.slot[step.trained.index]
        assert [loop.prompt_of_uid[k.rsplit("_", 2)[0]] for k in t.keys] == step.batch.prompt_ids[slots].tolist()
        assert not cleared & set(t.keys)  # a held slot trains on keys still in TransferQueue
        reused += int((~step.rollouts.fresh).sum())
        # clear what does not train and is not held, as the verl trainer must; held keys stay for later steps
        keep = {k for r in step.held.values() for k in r.rollouts}
        for k in t.untrained(step.rollouts.rollouts) + t.keys:
            if k not in keep:
                loop.tq.pop(k, None)
                cleared.add(k)
        held = step.held
    assert not set(loop.tq) - {k for r in held.values() for k in r.rollouts}  # nothing leaks in TransferQueue
    assert reused > 0 or name != "pilot-commit"  # its pilots trained in a later step, from their first keys


def test_rows_of_a_round_give_each_slot_its_own_uid_even_for_a_repeated_prompt():
    from cures.policies.core import Plan

    plan = Plan(step=3, round=1, purpose="train", prompt_ids=np.array([7, 7, 2]), n_rollouts=np.array([2, 5, 1]))
    rows = plan_rows(plan)
    assert list(rows["uid"]) == ["cures-3-1-0", "cures-3-1-1", "cures-3-1-2"]
    assert rollout_keys(rows) == ["cures-3-1-0_0_0", "cures-3-1-0_1_0", *[f"cures-3-1-1_{s}_0" for s in range(5)],
                                  "cures-3-1-2_0_0"]
    assert rows[PROMPT_ID].dtype == rows[ROLLOUT_N].dtype == np.int64


def test_key_advantages_are_the_trl_backends_for_the_trained_keys_in_any_order_and_zero_for_padding():
    import torch

    from cures.backends.advantages import slot_advantages
    from cures.backends.verl.mapping import TrainedKeys, key_advantages

    rng = np.random.default_rng(3)
    keys = [f"cures-0-0-{i}_{s}_0" for i in range(5) for s in range(4)]
    rewards = rng.integers(0, 2, len(keys)).astype(float)
    group = np.repeat(np.arange(5), 4) // 2  # groups spanning two slots, as SPEED's
    weight = rng.uniform(0.5, 2.0, len(keys))
    baseline = np.zeros((3, 2))
    baseline[1] = (3, 10)  # a pooled baseline (Reinforce-Ada)
    trained = TrainedKeys(keys, group, weight, baseline)
    expected = (slot_advantages(torch.as_tensor(rewards), torch.as_tensor(group), baseline=torch.as_tensor(baseline))
                * torch.as_tensor(weight)).numpy()
    order = rng.permutation(len(keys))
    batch = [keys[i] for i in order] + ["pad0123_0_0", "pad0123_1_0"]  # verl's balance reorders and pads
    got = key_advantages(batch, np.concatenate([rewards[order], [1.0, 0.0]]), trained).numpy()
    np.testing.assert_allclose(got[: len(keys)], expected[order], rtol=1e-6, atol=1e-7)
    assert np.all(got[len(keys):] == 0.0)
    policy = make_policy_for_budget("grpo", prompts_per_step=2, rollouts_per_step=4)
    with pytest.raises(ValueError, match="hold no '_'"):  # verl reads a key's uid as key.split("_")[0]
        plan_rows(policy.plan(policy.init(4)), run="my_run")
