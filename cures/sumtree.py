"""A 16-ary sum tree over non-negative weights: O(log16 N) weighted draws and updates.

The tree is one flat float64 array, level by level from the root: level l holds 16^l nodes starting at
offset(l) = (16^l - 1) / 15, and node j of level l sums children 16j .. 16j + 15 of level l + 1. A wide node keeps a
draw to about five cache-missing levels for a million prompts, where a binary tree would need twenty.
The draws (`tree_find`) are a fast path of the plain descent `cures.rules.tree_descent`, which the tests require
them to equal; on exact sums both are the inverse CDF of the weights (`cures.rules.inverse_cdf_draw`).
"""

import numpy as np

from cures._jit import njit, prefetch

FANOUT = 16


def tree_height(n: int) -> int:
    """Levels below the root needed for n leaves."""
    h = 1
    while FANOUT**h < n:
        h += 1
    return h


CACHE_LINE = 64  # bytes


def new_tree(n: int) -> tuple[np.ndarray, int]:
    """An all-zero tree with room for n leaves, and its height.

    The array is placed in its buffer so that element 1 starts a 64-byte cache line. Every node's 16 children start
    at an index of 1 mod 8 (offset(l) = 1 + 16 + ... + 16^(l-1)), so each group of children then fills exactly two
    lines instead of straddling three: a draw in a tree too large for the caches reads a third fewer lines (256
    draws from 10 million leaves: about 25 to 21 us). Only the placement differs; the values are the same."""
    h = tree_height(n)
    return _placed_zeros((FANOUT ** (h + 1) - 1) // (FANOUT - 1)), h


def _placed_zeros(size: int) -> np.ndarray:
    """`size` float64 zeros whose element 1 starts a cache line (see `new_tree`)."""
    per_line = CACHE_LINE // 8
    buf = np.zeros(size + per_line - 1)
    skip = -(buf.ctypes.data // 8 + 1) % per_line  # elements before the one that puts element 1 on a line's start
    return buf[skip : skip + size]


def copy_tree(tree: np.ndarray) -> np.ndarray:
    """A copy of a tree, placed as `new_tree` places one."""
    out = _placed_zeros(tree.size)
    out[:] = tree
    return out


@njit(cache=True, inline="always")
def _offset(level):
    return (FANOUT**level - 1) // (FANOUT - 1)


@njit(cache=True)
def tree_set(tree, h, ids, weights):
    """Set leaf ids[i] to weights[i], in order, adding each change to the leaf's ancestors (h additions per leaf;
    `tree_rebuild` resets rounding drift). The root, which every change reaches, adds them up in a register: the
    same sums in the same order, without a store and a load between two of them."""
    leaf0 = _offset(h)
    root = tree[0]
    for i in range(ids.shape[0]):
        x = ids[i]
        delta = weights[i] - tree[leaf0 + x]
        tree[leaf0 + x] = weights[i]
        offset = leaf0
        j = x
        for _ in range(h - 1):
            offset = (offset - 1) // FANOUT  # the level above
            j //= FANOUT
            tree[offset + j] += delta
        root += delta
    tree[0] = root


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


@njit(cache=True, inline="always")
def _minus_child(tree, first, c, r):
    """r less child c of the node whose children start at `first`; children that are not positive are skipped, as in
    the scan. `first` is unsigned (no negative-index wrap to compile): it is >= 1 even below a node without a positive
    child, where the pick is -1 as in the scan, since j >= -offset(level) on every level."""
    w = tree[first + np.uint64(c)]
    return r - (w if w > 0.0 else 0.0)  # r - 0.0 is r, -0.0 included: a max and a subtraction, no blend


@njit(cache=True, inline="always")
def _picked(tree, first, reached, kids):
    """The child a scan of the first `kids` children stops at: the first one whose running remainder goes negative
    (`reached` = children passed), or, when rounding lets u pass them all, the last positive child."""
    if reached < kids:
        return reached
    pick = -1
    for c in range(kids):
        if tree[first + np.uint64(c)] > 0.0:
            pick = c
    return pick


@njit(cache=True, inline="always")
def _scan_level(tree, rem, first, u, kids):
    """One level of `tree_find` for four positions u at the nodes whose children start at first[lane]: returns what
    is left of each u and the child each descends into, from a scan of the first `kids` children."""
    f0, f1, f2, f3 = first
    u0, u1, u2, u3 = u
    rem[0, 0], rem[1, 0], rem[2, 0], rem[3, 0] = u0, u1, u2, u3
    n0 = n1 = n2 = n3 = 0
    for c in range(kids):
        u0 = _minus_child(tree, f0, c, u0)
        u1 = _minus_child(tree, f1, c, u1)
        u2 = _minus_child(tree, f2, c, u2)
        u3 = _minus_child(tree, f3, c, u3)
        rem[0, c + 1], rem[1, c + 1], rem[2, c + 1], rem[3, c + 1] = u0, u1, u2, u3
        n0 += u0 >= 0.0
        n1 += u1 >= 0.0
        n2 += u2 >= 0.0
        n3 += u3 >= 0.0
    return ((rem[0, n0], rem[1, n1], rem[2, n2], rem[3, n3]),
            (_picked(tree, f0, n0, kids), _picked(tree, f1, n1, kids), _picked(tree, f2, n2, kids),
             _picked(tree, f3, n3, kids)))


@njit(cache=True, inline="always")
def _scan_draw(tree, h, u):
    """The leaf of one draw at u in [0, root): at each node, subtract the positive children from u in order until u
    falls below one, and descend into it with what is left of u."""
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
    return j


PREFETCH_AHEAD = 8  # draws: while a group of four scans a level, the nodes of the group two ahead are requested


@njit(cache=True)
def tree_find(tree, h, u, out):
    """out[i] = the leaf at position u[i] in [0, root) of the running sum of the weights: the scan of `_scan_draw`,
    bit for bit, for any u[i] >= 0 (not NaN) and any tree (sums that drifted or were damaged included).

    Speed: four positions walk the tree in lockstep, and each node is scanned without branches: all 16 remainders
    r_{c+1} = r_c - w_c are formed (r_c >= w_c exactly when r_{c+1} >= 0, so the scan stops after the non-negative
    remainders, and u descends as the last of them). A scan that breaks at a random child mispredicts a branch per
    level, and four independent subtraction chains overlap: about half the time of the scan at 10,000 leaves. The
    root's scan ends at its last positive child, since the scan skips the ones after it: with 10,000 leaves only 3
    of its 16 children hold any, so a draw scans 51 children instead of 64. The positions go down the tree a level
    at a time, all of them before the next level, so that the nodes the next groups will scan are known and are
    requested from memory (`prefetch` of every line a node's children can span: two in a tree placed by
    `new_tree`, three in any other) while this group scans: with 10 million leaves,
    where the lower levels are not in any cache, that halves the time of 256 draws (47 to 24 us); with 10,000 it
    changes nothing."""
    m = out.shape[0]
    rem = np.empty((4, FANOUT + 1))  # rem[lane, c] = r_c of the node being scanned
    root_kids = FANOUT  # the root's children up to its last positive one: no scan goes beyond it
    while root_kids > 1 and not tree[root_kids] > 0.0:
        root_kids -= 1
    m4 = m - m % 4
    r = np.empty(m4)  # what is left of each position ...
    j = np.zeros(m4, np.int64)  # ... and the node it has reached, on the current level
    for i in range(m4):
        r[i] = u[i]
    offset, kids = 0, root_kids
    for _ in range(h):
        offset = offset * FANOUT + 1  # the level below
        for i in range(0, m4, 4):
            for k in range(i + PREFETCH_AHEAD, min(i + PREFETCH_AHEAD + 4, m4)):
                first = offset + j[k] * FANOUT  # a node's 16 children span at most three 64-byte lines
                prefetch(tree, first)
                prefetch(tree, first + 8)
                prefetch(tree, first + FANOUT - 1)
            first = (np.uint64(offset + j[i] * FANOUT), np.uint64(offset + j[i + 1] * FANOUT),
                     np.uint64(offset + j[i + 2] * FANOUT), np.uint64(offset + j[i + 3] * FANOUT))
            (r[i], r[i + 1], r[i + 2], r[i + 3]), (c0, c1, c2, c3) = _scan_level(
                tree, rem, first, (r[i], r[i + 1], r[i + 2], r[i + 3]), kids)
            j[i], j[i + 1] = j[i] * FANOUT + c0, j[i + 1] * FANOUT + c1
            j[i + 2], j[i + 3] = j[i + 2] * FANOUT + c2, j[i + 3] * FANOUT + c3
        kids = FANOUT
    for i in range(m4):
        out[i] = j[i]
    for k in range(m4, m):
        out[k] = _scan_draw(tree, h, u[k])


@njit(cache=True, inline="always")
def tree_draws(tree, h, rng, out):
    """Fill `out` with independent leaves, each drawn with probability proportional to its weight (the root must be
    > 0): u_i = U(0, 1) x root in order, then `tree_find`. One compiled call for the batch: a call per draw would
    count references to the tree and the generator each time, which costs about as much as the draw."""
    u = rng.random(out.shape[0])  # the stream of U(0, 1) in order, as m calls of rng.random() would give it
    for i in range(u.shape[0]):
        u[i] *= tree[0]
    tree_find(tree, h, u, out)


def leaves(tree: np.ndarray, h: int, n: int) -> np.ndarray:
    """The first n leaf weights (a view)."""
    start = (FANOUT**h - 1) // (FANOUT - 1)
    return tree[start : start + n]
