"""The sum tree's batched draws: the same leaves as the documented scan, on any tree, and weight-proportional."""

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from scipy import stats

from cures.rules import inverse_cdf_draw, tree_descent
from cures.sumtree import FANOUT, leaves, new_tree, tree_draws, tree_find, tree_rebuild, tree_set

scan = tree_descent  # the rule (cures.rules) the lockstep walk must equal


weights = st.one_of(st.just(0.0), st.floats(1e-300, 1e300), st.floats(0.5, 2.0), st.floats(-1.0, 0.0),
                    st.integers(1, 4).map(float))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(1, 600), data=st.data(), m=st.integers(0, 23), seed=st.integers(0, 2**32 - 1),
       drift=st.one_of(st.just(0.0), st.floats(0.0, 0.2)), damaged=st.integers(0, 3))
def test_find_is_the_scan_on_any_tree(n, data, m, seed, drift, damaged):
    """The lockstep walk equals the scan bit for bit: zero and negative weights, wide magnitudes, positions exactly
    on a boundary (integer weights make every running remainder exact, so some reach 0), inner sums that drifted
    away from their children (u can pass every child) and blocks of children zeroed under a positive parent."""
    tree, h = new_tree(n)
    leaves(tree, h, n)[:] = data.draw(st.lists(weights, min_size=n, max_size=n))
    tree_rebuild(tree, h)
    inner = (FANOUT**h - 1) // (FANOUT - 1)
    rng = np.random.default_rng(seed)
    tree[:inner] *= 1.0 + drift * rng.uniform(-1.0, 1.0, inner)
    for first in rng.integers(0, (tree.size - 1) // FANOUT, damaged) * FANOUT + 1:  # lost sums below a node
        tree[first:first + FANOUT] = 0.0
    assume(np.isfinite(tree[0]) and tree[0] > 0.0)
    boundaries = np.cumsum(np.maximum(leaves(tree, h, n), 0.0))
    u = np.concatenate([rng.random(m) * tree[0], rng.choice(boundaries, m), [0.0, tree[0]] * (m % 3)])
    out = np.full(u.size, -7, np.int64)
    tree_find(tree, h, u, out)
    try:
        expected = [scan(tree, h, float(v)) for v in u]
    except IndexError:  # the scan itself walks off the array from a damaged node: nothing to compare
        assume(False)
    np.testing.assert_array_equal(out, expected)


def test_draws_are_the_scan_at_the_generators_positions():
    n = 3000
    tree, h = new_tree(n)
    tree_set(tree, h, np.arange(n), np.random.default_rng(0).gamma(0.5, size=n))
    out = np.empty(1027, np.int64)
    tree_draws(tree, h, np.random.default_rng(1), out)
    u = np.random.default_rng(1).random(out.size) * tree[0]
    np.testing.assert_array_equal(out, [scan(tree, h, float(v)) for v in u])


def test_draws_follow_the_weights():
    n = 700
    tree, h = new_tree(n)
    w = np.random.default_rng(0).gamma(0.3, size=n)
    w[::7] = 0.0
    tree_set(tree, h, np.arange(n), w)
    out = np.empty(200_000, np.int64)
    tree_draws(tree, h, np.random.default_rng(1), out)
    counts = np.bincount(out, minlength=n)
    assert counts[w == 0.0].sum() == 0
    expected = w / w.sum() * out.size
    big = expected > 5  # the chi-square approximation's usual condition; the rest pooled
    observed = np.append(counts[big], counts[~big].sum())
    pooled = np.append(expected[big], expected[~big].sum())
    assert stats.chisquare(observed, pooled).pvalue > 1e-4


@settings(max_examples=150, deadline=None)
@given(n=st.integers(1, 5000), data=st.data(), seed=st.integers(0, 2**32 - 1))
def test_set_adds_each_change_to_every_ancestor_in_order(n, data, seed):
    """tree_set gives every inner node, the root included, exactly the sums of adding each leaf's change along its
    path in the order of the updates (repeated leaves included), as the plain rule does in floating point."""
    rng = np.random.default_rng(seed)
    tree, h = new_tree(n)
    tree_set(tree, h, np.arange(n), rng.gamma(0.5, size=n))
    ids = rng.integers(0, n, data.draw(st.integers(0, 300)))
    weights = rng.gamma(0.5, size=ids.size) * data.draw(st.sampled_from([1.0, 1e-12, 1e12]))
    expected = tree.copy()
    leaf0 = (FANOUT**h - 1) // (FANOUT - 1)
    for x, w in zip(ids, weights, strict=True):
        delta = w - expected[leaf0 + x]
        expected[leaf0 + x] = w
        offset, j = leaf0, x
        for _ in range(h):
            offset, j = (offset - 1) // FANOUT, j // FANOUT
            expected[offset + j] += delta
    tree_set(tree, h, ids, weights)
    np.testing.assert_array_equal(tree.view(np.int64), expected.view(np.int64))


@settings(max_examples=200, deadline=None)
@given(w=st.lists(st.integers(0, 9).map(float), min_size=1, max_size=300), data=st.data())
def test_on_exact_sums_a_draw_is_the_inverse_cdf(w, data):
    """With integer weights every sum is exact: the tree's draw at u is the first prompt whose running sum of
    weights exceeds u (cures.rules.inverse_cdf_draw), on and between the boundaries."""
    assume(sum(w) > 0)
    n = len(w)
    tree, h = new_tree(n)
    tree_set(tree, h, np.arange(n), np.array(w))
    u = np.array(data.draw(st.lists(st.floats(0.0, sum(w), exclude_max=True), min_size=1, max_size=20))
                 + [b for b in np.cumsum(w) if b < sum(w)])
    out = np.empty(u.size, np.int64)
    tree_find(tree, h, u, out)
    np.testing.assert_array_equal(out, [inverse_cdf_draw(w, float(v)) for v in u])


@pytest.mark.parametrize("n", [1, 17, 10_000, 70_000])
def test_every_node_s_children_start_a_cache_line_wherever_the_tree_comes_from(n, tmp_path):
    """new_tree places the tree so that each node's 16 children fill two 64-byte lines (element 1 on a line's
    start); a policy state's tree keeps that placement when it is created, copied, saved and loaded."""
    from cures.policies import make_policy
    from cures.policies.core import PolicyState

    tree, h = new_tree(n)
    assert tree.flags.c_contiguous and (tree == 0).all()
    state = make_policy("cures", prompts_per_step=1, rollouts_per_step=2).init(n, seed=0)
    state.save(tmp_path / "s.npz")
    for t in (tree, state.arrays.tree, state.copy().arrays.tree, PolicyState.load(tmp_path / "s.npz").arrays.tree):
        assert (t.ctypes.data + 8) % 64 == 0 and t.size == tree.size
        offsets = [(FANOUT**level - 1) // (FANOUT - 1) for level in range(1, h + 1)]
        assert all((t.ctypes.data + 8 * o) % 64 == 0 for o in offsets)
