"""BetaPosterior: conjugate updates, forgetting, Thompson draws, persistence and input errors."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cures.posterior import BetaPosterior


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 9), st.integers(0, 8)), min_size=1, max_size=30),
    st.floats(0.1, 3.0), st.floats(0.1, 3.0),
)
def test_mean_is_prior_plus_counts_over_total(events, a0, b0):
    """Without decay, mean = (alpha0 + s) / (alpha0 + beta0 + n), however the updates are split or repeated."""
    rng = np.random.default_rng(len(events))
    post = BetaPosterior(10, prior=(a0, b0))
    s_tot, n_tot = np.zeros(10), np.zeros(10)
    ids = np.array([e[0] for e in events])
    trials = np.array([e[1] for e in events])
    succ = np.array([rng.integers(0, t + 1) for t in trials])
    np.add.at(s_tot, ids, succ)
    np.add.at(n_tot, ids, trials)
    post.update(ids, succ, trials)  # one call with repeated ids
    np.testing.assert_allclose(post.mean(), (a0 + s_tot) / (a0 + b0 + n_tot))
    a, b = a0 + s_tot, b0 + n_tot - s_tot
    np.testing.assert_allclose(post.var(), a * b / ((a + b) ** 2 * (a + b + 1)))


def test_repeated_ids_equal_sequential_updates_without_decay():
    one = BetaPosterior(3).update([0, 0, 2], [1, 2, 0], [3, 2, 4])
    two = BetaPosterior(3).update([0], [1], [3]).update([0], [2], [2]).update([2], [0], [4])
    np.testing.assert_array_equal(one.alpha, two.alpha)
    np.testing.assert_array_equal(one.beta, two.beta)
    assert one.mean()[0] == pytest.approx((1 + 3) / (2 + 5))  # (s + 1) / (n + 2)


def test_decay_formula_merges_repeated_ids_and_keeps_unsampled_prompts():
    post = BetaPosterior(4, prior=(1.0, 1.0), decay=0.5)
    post.alpha[:] = [5.0, 2.0, 9.0, 1.0]
    post.beta[:] = [3.0, 6.0, 1.0, 1.0]
    before = post.mean().copy()
    post.update([0, 0, 1], [1, 2, 0], [2, 2, 4])
    # id 0: decayed once, then S = 3 of N = 4 added
    assert post.alpha[0] == pytest.approx(0.5 * 5 + 0.5 * 1 + 3)
    assert post.beta[0] == pytest.approx(0.5 * 3 + 0.5 * 1 + 1)
    assert post.alpha[1] == pytest.approx(0.5 * 2 + 0.5 * 1 + 0)
    assert post.beta[1] == pytest.approx(0.5 * 6 + 0.5 * 1 + 4)
    np.testing.assert_array_equal(post.mean()[2:], before[2:])  # not sampled: unchanged


def test_decay_forgets_old_evidence():
    post = BetaPosterior(1, decay=0.8)
    for _ in range(200):
        post.update([0], [10], [10])  # always right
    for _ in range(200):
        post.update([0], [0], [10])  # then always wrong
    assert post.mean()[0] < 0.05
    no_decay = BetaPosterior(1)
    for s in [10] * 200 + [0] * 200:
        no_decay.update([0], [s], [10])
    assert no_decay.mean()[0] == pytest.approx(2001 / 4002)


def test_rewards_count_as_success_strictly_above_threshold():
    post = BetaPosterior(2).update_from_rewards([0, 0, 0, 1], [0.2, 0.5, 0.51, 1.0])
    np.testing.assert_array_equal(post.alpha, [2.0, 2.0])
    np.testing.assert_array_equal(post.beta, [3.0, 1.0])
    post = BetaPosterior(1).update_from_rewards([0, 0], [0.3, 0.3], threshold=0.2)
    assert post.alpha[0] == 3.0


def test_thompson_samples_follow_the_beta_law():
    post = BetaPosterior(2, prior=(1, 1)).update([0, 1], [30, 2], [40, 40])
    draws = np.array([post.sample(np.random.default_rng(i)) for i in range(4000)])
    np.testing.assert_allclose(draws.mean(axis=0), post.mean(), atol=0.005)
    np.testing.assert_allclose(draws.var(axis=0), post.var(), rtol=0.1)
    np.testing.assert_array_equal(post.sample(np.random.default_rng(3)), post.sample(np.random.default_rng(3)))


def test_save_load_round_trips_exactly(tmp_path):
    post = BetaPosterior(50, prior=(0.5, 2.0), decay=0.9)
    rng = np.random.default_rng(0)
    post.update(rng.integers(0, 50, 200), rng.integers(0, 3, 200), np.full(200, 3))
    path = post.save(tmp_path / "sub" / "post.npz")
    back = BetaPosterior.load(path)
    for name in ("alpha", "beta", "alpha0", "beta0"):
        np.testing.assert_array_equal(getattr(back, name), getattr(post, name))
    assert back.prior == post.prior and back.decay == post.decay
    assert [p.name for p in tmp_path.joinpath("sub").iterdir()] == ["post.npz"]  # no temp file left


def test_load_rejects_foreign_or_pickled_files(tmp_path):
    np.savez(tmp_path / "other.npz", x=np.arange(3))
    with pytest.raises(ValueError, match="metadata"):
        BetaPosterior.load(tmp_path / "other.npz")
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    (tmp_path / "obj.npz").write_bytes((tmp_path / "obj.npy").read_bytes())
    with pytest.raises(ValueError):
        BetaPosterior.load(tmp_path / "obj.npz")
    np.save(tmp_path / "plain.npy", np.arange(3))
    (tmp_path / "plain.npz").write_bytes((tmp_path / "plain.npy").read_bytes())
    with pytest.raises(ValueError, match="not a readable"):
        BetaPosterior.load(tmp_path / "plain.npz")
    (tmp_path / "cut.npz").write_bytes((tmp_path / "other.npz").read_bytes()[:40])
    with pytest.raises(ValueError, match="not a readable"):
        BetaPosterior.load(tmp_path / "cut.npz")
    with pytest.raises(ValueError, match="no such file"):
        BetaPosterior.load(tmp_path / "missing.npz")


def test_from_counter_json(tmp_path):
    path = tmp_path / "counter.json"
    path.write_text(json.dumps([{"Accepted": 3, "All": 4}, {"Accepted": 0, "All": 4}, {"Accepted": 0, "All": 0}]))
    post = BetaPosterior.from_counter_json(path)
    np.testing.assert_allclose(post.mean(), [4 / 6, 1 / 6, 0.5])
    path.write_text(json.dumps([{"Accepted": 5, "All": 4}]))
    with pytest.raises(ValueError, match="exceed"):
        BetaPosterior.from_counter_json(path)
    path.write_text(json.dumps([{"accepted": 1}]))
    with pytest.raises(ValueError, match="Accepted"):
        BetaPosterior.from_counter_json(path)
    path.write_text("not json")
    with pytest.raises(ValueError, match="counter JSON"):
        BetaPosterior.from_counter_json(path)


@pytest.mark.parametrize(
    ("ids", "s", "n", "match"),
    [
        ([0], [float("nan")], [1], "must be finite numbers"),
        ([0], [1], [float("nan")], "must be finite numbers"),
        ([0], [float("inf")], [np.inf], "must be finite numbers"),
        ([0], [-1], [2], ">= 0"),
        ([0], [0], [-2], ">= 0"),
        ([0], [3], [2], "exceed"),
        ([5], [0], [1], r"ids must lie in \[0, 2\]"),
        ([-1], [0], [1], "ids must lie"),
        ([0.5], [0], [1], "integers"),
        ([0, 1], [0], [1], "differ in length"),
    ],
)
def test_update_errors(ids, s, n, match):
    with pytest.raises(ValueError, match=match):
        BetaPosterior(3).update(ids, s, n)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"n_prompts": 0}, "n_prompts"), ({"n_prompts": 3, "prior": (-1, 1)}, "prior"),
     ({"n_prompts": 3, "prior": 1.0}, "pair"), ({"n_prompts": 3, "decay": 1.5}, "decay")],
)
def test_constructor_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BetaPosterior(**kwargs)


def test_nan_rewards_are_rejected():
    with pytest.raises(ValueError, match="NaN"):
        BetaPosterior(1).update_from_rewards([0], [float("nan")])
