"""The rules, written plainly: what the compiled fast paths compute, in the form a reader checks against the paper.

Each function here is the reference its fast path is tested against, result for result, by hypothesis properties
(`tests/test_theory.py`, `tests/test_sumtree.py`); none of them is on a hot path.

- `greedy_allocation`: Eq. 20, the integer allocation min sum_i w_i^2 / n_i subject to sum_i n_i = N,
  n_min <= n_i <= n_max, by the greedy rule (the objective is separable and convex, so giving every next rollout
  to the prompt whose objective falls most is optimal). Fast path: `cures.theory.allocate_into` (a threshold from
  the continuous optimum grants most rollouts at once, a selection or a heap places the rest).
- `tree_descent`: one draw from Eq. 14's sampling distribution through a sum tree: descend from the root, at each
  node subtracting the children's sums from u until it falls below one. Fast path: `cures.sumtree.tree_find`
  (four positions walk the tree in lockstep with a branch-free scan).
- `inverse_cdf_draw`: what a draw is on exact sums: the first prompt whose running sum of weights exceeds u.
"""

from __future__ import annotations

import heapq

import numpy as np

from cures.sumtree import FANOUT


def greedy_allocation(weights, budget: int, n_min: int = 1, n_max: int | None = None) -> np.ndarray:
    """Eq. 20 by the greedy rule: start every positive weight at n_min (zero weights get 0), then give one rollout
    at a time to the prompt with the largest marginal gain w^2 / n - w^2 / (n + 1) = w^2 / (n (n + 1)), ties to the
    lower index, until the budget is spent or every prompt is at n_max."""
    w = np.asarray(weights, dtype=np.float64)
    n = np.where(w > 0, n_min, 0).astype(np.int64)
    heap = [(-gain(x, n_min), i) for i, x in enumerate(w) if x > 0 and (n_max is None or n_min < n_max)]
    heapq.heapify(heap)
    left = budget - int(n.sum())
    while left > 0 and heap:
        _, i = heapq.heappop(heap)
        n[i] += 1
        left -= 1
        if n_max is None or n[i] < n_max:
            heapq.heappush(heap, (-gain(w[i], n[i]), i))
    return n


def gain(w: float, n: int) -> float:
    """The fall of w^2 / n when n grows by one: w^2 / (n (n + 1))."""
    return w * w / (n * (n + 1.0))


def tree_descent(tree: np.ndarray, h: int, u: float) -> int:
    """The leaf a position u in [0, root) reaches: at each level subtract the positive children from u in order
    until u falls below one and descend into it; when rounding lets u pass them all, descend into the last positive
    child (`cures.sumtree` lays the tree out level by level, FANOUT children per node)."""
    j, offset = 0, 0
    for _ in range(h):
        offset = offset * FANOUT + 1
        first = offset + j * FANOUT
        pick = -1
        for c in range(FANOUT):
            w = tree[first + c]
            if w > 0.0:
                pick = c
                if u < w:
                    break
                u -= w
        j = j * FANOUT + pick
    return j


def inverse_cdf_draw(weights, u: float) -> int:
    """The prompt a position u in [0, sum w) selects with probability proportional to w: the first whose running
    sum of the (non-negative) weights exceeds u."""
    return int(np.searchsorted(np.cumsum(np.maximum(np.asarray(weights, float), 0.0)), u, side="right"))
