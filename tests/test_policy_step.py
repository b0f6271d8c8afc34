"""The framework-free policy step (`cures.policies.step`): what a backend hands it and what it hands back.

A fake backend (rollouts are records with a prompt id and a Bernoulli reward) drives every policy; the properties
hold for any backend, because the step sees rollouts only as opaque records."""

from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cures.policies import TrainingBatch, available, make_policy_for_budget
from cures.policies.step import RECORD_COLUMNS, Scores, run_policy_step, step_records, trained_rollouts

SMALL = {"dapo": {"gen_batch_size": 6}, "speed": {"gen_batch_size": 6},
         "reinforce-ada": {"round_repeat": 2, "max_rounds": 2}, "pods": {"n": 4},
         "pilot-commit": {"n_pilot": 2, "n_commit": 3, "gen_batch_size": 4, "p_lower": 0.5, "p_upper": 0.0,
                          "p_solve": None}}


@dataclass
class Record:
    prompt: int
    reward: float


class FakeBackend:
    """generate: one record per planned rollout, reward ~ Bernoulli(p[prompt]) (NaN with probability `unscorable`)."""

    def __init__(self, p, seed=0, unscorable=0.0):
        self.p, self.rng, self.unscorable = p, np.random.default_rng(seed), unscorable
        self.generated = 0

    def generate(self, plan):
        self.generated += plan.total
        out = []
        for prompt in plan.rollout_prompt_ids():
            r = float(self.rng.random() < self.p[prompt])
            out.append(Record(int(prompt), np.nan if self.rng.random() < self.unscorable else r))
        return out

    def score(self, plan, rollouts):
        return Scores(np.array([r.reward for r in rollouts]))


def _check_step(step, plans_total):
    r, batch, t = step.rollouts, step.batch, step.trained
    assert step.rollouts_generated == plans_total == batch.rollouts_generated
    assert np.bincount(r.slot, minlength=batch.n_rollouts.size).tolist() == batch.n_rollouts.tolist()
    for j in range(batch.n_rollouts.size):  # every rollout of a slot is of the slot's prompt
        assert {x.prompt for x, s in zip(r.rollouts, r.slot, strict=True) if s == j} <= {int(batch.prompt_ids[j])}
    assert t.index.size == batch.rollouts_trained
    np.testing.assert_array_equal(t.group, batch.group[r.slot[t.index]])
    assert (np.diff(t.group) >= 0).all()
    success = np.nan_to_num(r.rewards) > 0.5
    for j in np.flatnonzero(batch.group >= 0):  # a group trains on exactly the part of each slot the policy kept
        mine = t.index[r.slot[t.index] == j]
        assert success[mine].sum() == batch.kept_successes[j] and (~success[mine]).sum() == batch.kept_failures[j]
    if t.index.size:
        w = t.weights(per_prompt=True)
        per_group = np.bincount(t.group, weights=w)
        per_group = per_group[per_group > 0]
        np.testing.assert_allclose(per_group, per_group[0])  # Eq. 16: every group the same total weight
        assert w.sum() == pytest.approx(t.index.size)
        np.testing.assert_array_equal(t.weights(per_prompt=False), 1.0)
    _check_records(step)


def _check_records(step):
    """The per-slot records add up to the step: rollouts generated, successes observed, rollouts trained, tokens."""
    r = step.rollouts
    lengths = np.array([3 + x.prompt % 5 for x in r.rollouts])
    clipped = lengths >= 6
    rec = step_records(step, lengths, clipped)
    assert tuple(rec) == RECORD_COLUMNS and len({v.size for v in rec.values()}) == 1
    assert rec["rollouts"].sum() == step.rollouts_generated
    assert rec["trained"].sum() == step.trained.index.size
    assert rec["tokens"].sum() == lengths[r.fresh].sum() and rec["clipped"].sum() == clipped[r.fresh].sum()
    assert (rec["successes"] <= rec["rollouts"]).all()
    np.testing.assert_array_equal(rec["successes"][rec["reused_from"] < 0],
                                  step.batch.successes[step.batch.source < 0])  # what observe saw
    assert set(rec["purpose"][rec["reused_from"] >= 0]) <= {"reused"}
    assert set(rec["purpose"]) <= {"train", "screen", "pilot", "reused"} | {p.purpose for p in step.plans}
    assert (rec["step"] == step.plans[0].step).all()


@pytest.mark.parametrize("name", available())
def test_every_policy_steps_through_opaque_callables(name):
    policy = make_policy_for_budget(name, 4, 16, **SMALL.get(name, {}))
    state = policy.init(40, seed=1)
    backend = FakeBackend(np.linspace(0.05, 0.95, 40), seed=2)
    held = {}
    for _ in range(6):
        before = backend.generated
        step = run_policy_step(policy, state, backend.generate, backend.score, held=held)
        _check_step(step, backend.generated - before)
        assert set(step.held) == set(state.held_slot_ids().tolist())
        for j in np.flatnonzero(step.batch.source >= 0):  # re-used slots carry the very records generated earlier
            source = int(step.batch.source[j])
            again = [x for x, s in zip(step.rollouts.rollouts, step.rollouts.slot, strict=True) if s == j]
            earlier = held.get(source)
            if earlier is not None:
                assert all(a is b for a, b in zip(again, earlier.rollouts, strict=True))
        held = step.held
        assert state.step.vars["done"]


def test_pilot_commit_re_uses_its_pilots_across_steps():
    policy = make_policy_for_budget("pilot-commit", 4, 16, **SMALL["pilot-commit"])
    state = policy.init(40, seed=0)
    backend = FakeBackend(np.full(40, 0.5), seed=0)
    held, carried = {}, 0
    for _ in range(6):
        step = run_policy_step(policy, state, backend.generate, backend.score, held=held)
        carried += int((~step.rollouts.fresh).sum())
        held = step.held
    assert carried > 0


def test_the_step_matches_the_plain_plan_observe_loop():
    """The same rewards through run_policy_step and through Policy.plan/observe give the same states."""
    policy = make_policy_for_budget("cures-paper", 4, 16)
    a, b = policy.init(30, seed=3), policy.init(30, seed=3)
    p = np.linspace(0.1, 0.9, 30)
    one, two = FakeBackend(p, seed=5), FakeBackend(p, seed=5)
    for _ in range(3):
        run_policy_step(policy, a, one.generate, one.score)
        while True:
            plan = policy.plan(b)
            if policy.observe(b, rewards=[r.reward for r in two.generate(plan)]):
                break
    np.testing.assert_array_equal(a.arrays.alpha, b.arrays.alpha)
    np.testing.assert_array_equal(a.arrays.beta, b.arrays.beta)
    assert a.rng.bit_generator.state == b.rng.bit_generator.state


def test_unscorable_rollouts_are_failures_for_the_policy():
    policy = make_policy_for_budget("grpo", 4, 16)
    state = policy.init(8, seed=0)
    backend = FakeBackend(np.ones(8), unscorable=1.0)  # every rollout would succeed, none can be scored
    step = run_policy_step(policy, state, backend.generate, backend.score)
    assert np.isnan(step.rollouts.rewards).all() and step.batch.successes.sum() == 0


def test_a_backend_that_miscounts_is_named():
    policy = make_policy_for_budget("grpo", 4, 16)
    state = policy.init(8, seed=0)
    backend = FakeBackend(np.full(8, 0.5))
    with pytest.raises(ValueError, match="generate returned 15 rollouts; the plan has 16"):
        run_policy_step(policy, state, lambda plan: backend.generate(plan)[:-1], backend.score)
    state = policy.init(8, seed=0)
    with pytest.raises(ValueError, match="score returned 3 rewards"):
        run_policy_step(policy, state, backend.generate, lambda plan, r: np.zeros(3))


@given(st.lists(st.tuples(st.integers(1, 6), st.integers(-1, 3)), min_size=1, max_size=8), st.randoms())
def test_trained_rollouts_property(slots, rnd):
    """Any batch: trained rollouts are grouped, each slot contributes exactly its kept part, first-generated first."""
    n = np.array([k for k, _ in slots])
    group = np.array([g for _, g in slots])
    used = np.unique(group[group >= 0])
    group[group >= 0] = np.searchsorted(used, group[group >= 0])  # groups 0..G-1
    slot_of = np.repeat(np.arange(n.size), n)
    order = list(range(slot_of.size))
    rnd.shuffle(order)
    slot_of = slot_of[order]  # rollouts of a slot arrive interleaved with others
    success = np.array([rnd.random() < 0.5 for _ in order])
    succ = np.bincount(slot_of, weights=success, minlength=n.size)
    ks = np.array([rnd.randint(0, int(s)) for s in succ])
    kf = np.array([rnd.randint(0, int(k - s)) for k, s in zip(n, succ, strict=True)])
    ks[group < 0] = kf[group < 0] = 0
    batch = TrainingBatch(np.arange(n.size), n, succ, group, np.zeros(n.size, np.int64), ks, kf,
                          np.zeros((max(used.size, 1), 2)), np.arange(n.size), np.full(n.size, -1))
    t = trained_rollouts(batch, slot_of, success)
    assert (np.diff(t.group) >= 0).all() and t.index.size == ks.sum() + kf.sum()
    for j in range(n.size):
        rows = np.flatnonzero(slot_of == j)
        wins, losses = rows[success[rows]], rows[~success[rows]]
        want = set(wins[: ks[j]]) | set(losses[: kf[j]])
        assert set(t.index[slot_of[t.index] == j]) == want
def test_trained_rollouts_follow_the_training_groups():
    # slots: 0 (2 rollouts, group 1), 1 (3, not trained), 2 (2, group 0), 3 (1, group 1: a continuation of slot 0)
    n, succ = np.array([2, 3, 2, 1]), np.array([1, 0, 1, 1.0])
    batch = TrainingBatch(prompt_ids=np.array([5, 6, 7, 5]), n_rollouts=n, successes=succ,
                          group=np.array([1, -1, 0, 1]), round=np.array([0, 0, 0, 1]), kept_successes=succ.astype(int),
                          kept_failures=(n - succ).astype(int), baseline=np.zeros((2, 2)), slot_id=np.arange(4),
                          source=np.full(4, -1))
    success = np.array([1, 0, 0, 0, 0, 0, 1, 1], bool)
    t = trained_rollouts(batch, np.array([0, 0, 1, 1, 1, 2, 2, 3]), success)
    np.testing.assert_array_equal(t.index, [5, 6, 0, 1, 7])
    np.testing.assert_array_equal(t.group, [0, 0, 1, 1, 1])
    with pytest.raises(ValueError, match="does not match"):
        trained_rollouts(batch, np.array([0, 0, 1, 1, 2, 2, 3]), success)


def test_a_group_that_keeps_part_of_a_slot_trains_on_its_first_rollouts_of_each_class():
    # one slot of 6 rollouts (rewards 0 1 1 0 1 0) keeps 1 success and 2 failures; a second slot is whole
    batch = TrainingBatch(prompt_ids=np.array([3, 4]), n_rollouts=np.array([6, 2]), successes=np.array([3, 1.0]),
                          group=np.array([0, 1]), round=np.array([0, 0]), kept_successes=np.array([1, 1]),
                          kept_failures=np.array([2, 1]), baseline=np.zeros((2, 2)), slot_id=np.arange(2),
                          source=np.full(2, -1))
    success = np.array([0, 1, 1, 0, 1, 0, 1, 0], bool)
    t = trained_rollouts(batch, np.array([0, 0, 0, 0, 0, 0, 1, 1]), success)
    np.testing.assert_array_equal(t.index, [0, 1, 3, 6, 7])
    np.testing.assert_array_equal(t.group, [0, 0, 0, 1, 1])
    assert t.index.size == batch.rollouts_trained


