"""A 16-ary sum tree over non-negative weights: O(log16 N) weighted draws and updates.

The tree is one flat float64 array, level by level from the root: level l holds 16^l nodes starting at
offset(l) = (16^l - 1) / 15, and node j of level l sums children 16j .. 16j + 15 of level l + 1. A wide node keeps a
draw to about five cache-missing levels for a million prompts, where a binary tree would need twenty.
"""

import numpy as np
from numba import njit

FANOUT = 16


def tree_height(n: int) -> int:
    """Levels below the root needed for n leaves."""
    h = 1
    while FANOUT**h < n:
        h += 1
    return h


def new_tree(n: int) -> tuple[np.ndarray, int]:
    """An all-zero tree with room for n leaves, and its height."""
    h = tree_height(n)
    return np.zeros((FANOUT ** (h + 1) - 1) // (FANOUT - 1)), h


@njit(cache=True, inline="always")
def _offset(level):
    return (FANOUT**level - 1) // (FANOUT - 1)


@njit(cache=True)
def tree_set(tree, h, ids, weights):
    """Set leaf ids[i] to weights[i], in order, adding each change to the leaf's ancestors (h additions per leaf;
    `tree_rebuild` resets rounding drift)."""
    leaf0 = _offset(h)
    for i in range(ids.shape[0]):
        x = ids[i]
        delta = weights[i] - tree[leaf0 + x]
        tree[leaf0 + x] = weights[i]
        offset = leaf0
        j = x
        for _ in range(h):
            offset = (offset - 1) // FANOUT  # the level above
            j //= FANOUT
            tree[offset + j] += delta


@njit(cache=True)
def tree_rebuild(tree, h):
    """Recompute every inner node from the leaves."""
    for level in range(h - 1, -1, -1):
        for j in range(FANOUT**level):
            first = _offset(level + 1) + j * FANOUT
            s = 0.0
            for c in range(FANOUT):
                s += tree[first + c]
            tree[_offset(level) + j] = s


@njit(cache=True)
def tree_draws(tree, h, rng, out):
    """Fill `out` with independent leaves, each drawn with probability proportional to its weight (the root must be
    > 0). One call for the whole batch: a compiled call per draw would count references to the tree and the generator
    each time, which costs about as much as the draw."""
    for i in range(out.shape[0]):
        u = rng.random() * tree[0]
        j = 0
        offset = 0
        for _ in range(h):
            offset = offset * FANOUT + 1  # the level below
            first = offset + j * FANOUT
            pick = -1
            for c in range(FANOUT):
                w = tree[first + c]
                if w > 0.0:
                    pick = c  # the last positive child absorbs rounding at the end of the scan (and sums that drifted)
                    if u < w:
                        break
                    u -= w
            j = j * FANOUT + pick
        out[i] = j


def leaves(tree: np.ndarray, h: int, n: int) -> np.ndarray:
    """The first n leaf weights (a view)."""
    start = (FANOUT**h - 1) // (FANOUT - 1)
    return tree[start : start + n]
