"""The shared Numba building blocks of every policy.

A policy is two compiled functions over the same four arguments:

    plan(P, S, B, rng)      write the next generation round into B (which prompts, how many rollouts each)
    observe(P, S, B, rng)   read the successes of that round from B, update S, return True when the step is done

P is the policy's own parameter NamedTuple, S its `State`, B the `StepBuffer` of the current training step
(`cures.policies.layout`), and rng a `numpy.random.Generator`. One slot is one (prompt, n rollouts) pair of a round;
a prompt drawn twice gets two slots. The blocks below take the arrays and scalars they need, never P, so that one
compiled copy serves every policy.

Short blocks, blocks that only call others, and small blocks that take the whole state S are `inline="always"`
(inlined in Numba's IR): a compiled function of their own would be optimised and emitted again together with
everything they call, which is most of a policy's compile time (`cures.policies.dispatch`), and one taking S also
gets a Python wrapper that unpacks its twenty arrays. Inlining everything is no better: Numba's typing of one very large
function grows faster than its size (the whole CurES plan inlined took 35 s instead of 10 s).
"""

from __future__ import annotations

import numpy as np

from cures._jit import njit
from cures.posterior import posterior_mean, update_counts
from cures.sumtree import FANOUT, tree_draws, tree_rebuild, tree_set
from cures.theory import allocate_into, sampling_weight, sigma2_nb

# ----------------------------------------------------------------------------------------------------------------
# Step buffer
# ----------------------------------------------------------------------------------------------------------------


@njit(cache=True, inline="always")
def _begin_round(B, screening):
    if B.vars.done:  # the previous step is finished: this round starts a new one
        for g in range(min(B.vars.n_groups, B.baseline.shape[0])):
            B.baseline[g, 0] = 0.0
            B.baseline[g, 1] = 0.0
        B.vars.n_slots = 0
        B.vars.n_rounds = 0
        B.vars.n_groups = 0
        B.vars.done = False
        B.vars.generated_groups = 0
        B.vars.all_correct = 0
        B.vars.all_wrong = 0
    B.vars.round_start = B.vars.n_slots
    B.vars.screening = screening


@njit(cache=True, inline="always")
def begin_training_round(B):
    """Open a round of candidates for training (a finished step is cleared first)."""
    _begin_round(B, False)


@njit(cache=True, inline="always")
def begin_screening_round(B):
    """Open a round whose rollouts only inform the policy (a finished step is cleared first)."""
    _begin_round(B, True)


@njit(cache=True, inline="always")
def _append_slot(B, prompt, n, successes, group, rnd, source):
    """Write slot n_slots (no score, whole slot kept, no id yet) and count it."""
    j = B.vars.n_slots
    if j >= B.prompt.shape[0]:
        raise IndexError("step buffer full: the policy planned more slots than its capacity")
    B.prompt[j] = prompt
    B.n[j] = n
    B.succ[j] = successes
    for c in range(3):
        B.score[j, c] = np.nan
    B.group[j] = group
    B.round[j] = rnd
    B.keep[j, 0] = -1
    B.keep[j, 1] = -1
    B.slot_id[j] = -1  # a generated slot's id comes from end_plan
    B.source[j] = source
    B.vars.n_slots = j + 1


@njit(cache=True, inline="always")
def add_slot(B, prompt, n):
    """Append (prompt, n) to the open round; n <= 0 adds nothing."""
    if n > 0:
        _append_slot(B, prompt, n, 0.0, -1, B.vars.n_rounds, -1)


@njit(cache=True, inline="always")
def add_carried_slot(B, prompt, n, successes, source, group):
    """Append a slot that re-uses the n rollouts (with these successes) of the earlier slot `source` (an id), in
    training group `group`; nothing is generated or counted for it."""
    _append_slot(B, prompt, n, successes, group, B.vars.n_rounds - 1, source)


@njit(cache=True, inline="always")
def end_plan(S, B):
    """Close planning of the open round and count its rollouts."""
    B.vars.n_rounds += 1
    B.vars.awaiting = True
    for j in range(B.vars.round_start, B.vars.n_slots):
        S.vars.rollouts += B.n[j]
        B.slot_id[j] = S.vars.slots_made
        S.vars.slots_made += 1


@njit(cache=True, inline="always")
def keep_part(B, j, successes, failures):
    """Train on only `successes` correct and `failures` wrong rollouts of slot j (the first-generated of each)."""
    B.keep[j, 0] = successes
    B.keep[j, 1] = failures


@njit(cache=True, inline="always")
def kept(B, j):
    """(successes, rollouts) of slot j that its training group uses."""
    if B.keep[j, 0] < 0:
        return B.succ[j], B.n[j]
    return float(B.keep[j, 0]), B.keep[j, 0] + B.keep[j, 1]


@njit(cache=True, inline="always")
def set_baseline(B, g, successes, rollouts):
    """Group g's advantages take their statistics from `successes` of `rollouts` (e.g. every rollout of its prompt
    in this step) instead of from the rollouts it trains on."""
    B.baseline[g, 0] = successes
    B.baseline[g, 1] = rollouts


@njit(cache=True, inline="always")
def round_slots(B):
    """The slots [lo, hi) of the latest round."""
    return B.vars.round_start, B.vars.n_slots


@njit(cache=True, inline="always")
def train_on_round(B):
    """Make every slot of the latest round its own training group."""
    lo, hi = round_slots(B)
    g = B.vars.n_groups
    for j in range(lo, hi):
        B.group[j] = g
        g += 1
    B.vars.n_groups = g


@njit(cache=True, inline="always")
def finish_step(S, B):
    B.vars.done = True
    S.vars.step += 1
    S.vars.subset_step += 1


@njit(cache=True, inline="always")
def record_shortfall(S, B, prompts_per_step):
    """Count a step that ends with fewer training groups than `prompts_per_step` (DAPO-style caps)."""
    missing = prompts_per_step - B.vars.n_groups
    if missing > 0:
        S.vars.short_steps += 1
        S.vars.short_groups += missing


@njit(cache=True, inline="always")
def is_mixed(B, j):
    """The slot's rewards are not all equal: its group has a non-zero GRPO advantage."""
    return 0.0 < B.succ[j] < B.n[j]


@njit(cache=True)
def keep_mixed_groups(B, prompts_per_step):
    """DAPO's filter on the latest round: mixed slots become training groups, in generation order, until the step
    holds `prompts_per_step` groups; all-equal and surplus slots stay untrained. Also counts the zero-variance
    groups."""
    lo, hi = round_slots(B)
    for j in range(lo, hi):
        B.vars.generated_groups += 1
        if is_mixed(B, j):
            if B.vars.n_groups < prompts_per_step:
                B.group[j] = B.vars.n_groups
                B.vars.n_groups += 1
        elif B.succ[j] > 0:
            B.vars.all_correct += 1
        else:
            B.vars.all_wrong += 1


@njit(cache=True, inline="always")
def update_posterior_from_round(S, B, decay):
    """Eq. 23-24 for every slot of the latest round (successes out of n), with forgetting `decay`."""
    lo, hi = round_slots(B)
    update_counts(S.alpha, S.beta, S.alpha0, S.beta0, B.prompt[lo:hi], B.succ[lo:hi],
                  B.n[lo:hi].astype(np.float64), decay, S.mark)


@njit(cache=True, inline="always")
def complete_single_round_step(S, B, decay):
    """The usual end of a one-round step: Eq. 23-24 from the round, every slot its own group, the step done."""
    update_posterior_from_round(S, B, decay)
    train_on_round(B)
    finish_step(S, B)
    return True


# ----------------------------------------------------------------------------------------------------------------
# Subsets (Algorithm 1, line 1) and uniform epoch-wise sampling
# ----------------------------------------------------------------------------------------------------------------


@njit(cache=True, inline="always")
def subset_bounds(S, t):
    """Subset t of T covers order[lo:hi]; sizes differ by at most one."""
    n = S.order.shape[0]
    T = S.vars.n_subsets
    return (t * n) // T, ((t + 1) * n) // T


@njit(cache=True, inline="always")
def current_subset(S):
    return subset_bounds(S, S.vars.subset)


@njit(cache=True, inline="always")
def enter_next_subset(S, reset):
    """Move to the next subset (cycling), reset its posterior to the prior if `reset`, refill the uniform queue;
    returns its bounds in `order`."""
    first = S.vars.subset < 0
    t = (S.vars.subset + 1) % S.vars.n_subsets
    S.vars.subset = t
    S.vars.subset_step = 0
    lo, hi = subset_bounds(S, t)
    if reset and not first:  # the first subset keeps any counts the state was initialised with
        for x in S.order[lo:hi]:
            S.alpha[x] = S.alpha0[x]
            S.beta[x] = S.beta0[x]
    S.vars.queue_len = hi - lo
    for i in range(hi - lo):  # element loops here and below: cheaper to compile than slice assignment
        S.queue[i] = S.order[lo + i]
    S.vars.cursor = hi - lo  # forces a shuffle at the first uniform draw
    S.vars.need_subset = False
    return lo, hi


@njit(cache=True, inline="always")
def shuffle(a, rng):
    """Fisher-Yates shuffle in place (cheaper to compile than Generator.shuffle)."""
    for i in range(a.shape[0] - 1, 0, -1):
        j = int(rng.random() * (i + 1))
        a[i], a[j] = a[j], a[i]


@njit(cache=True, inline="always")
def screen_subset(S, B, lo, hi, n):
    """A screening round: n rollouts for every prompt order[lo:hi] of the subset (counted, informs the policy)."""
    begin_screening_round(B)
    for x in S.order[lo:hi]:
        add_slot(B, x, n)
    end_plan(S, B)


@njit(cache=True, inline="always")
def ensure_subset(S):
    """Enter the first subset before the first plan."""
    if S.vars.need_subset:
        enter_next_subset(S, False)


@njit(cache=True, inline="always")
def draw_uniform(S, m, rng, out):
    """m distinct prompts from the current subset, epoch-wise shuffled like TRL's RepeatSampler.

    Each pass is one random permutation cut into chunks of m; an incomplete last chunk is dropped.
    """
    L = S.vars.queue_len
    if S.vars.cursor + m > L:
        shuffle(S.queue[:L], rng)
        S.vars.cursor = 0
        S.vars.epoch += 1
    c = S.vars.cursor
    for i in range(m):
        out[i] = S.queue[c + i]
    S.vars.cursor = c + m


@njit(cache=True, inline="always")
def uniform_round(S, B, rng, k, n):
    """A training round of the next k prompts of the epoch-wise shuffled pass, n rollouts each."""
    batch = uniform_batch(S, k, rng)
    begin_training_round(B)
    for x in batch:
        add_slot(B, x, n)
    end_plan(S, B)


@njit(cache=True, inline="always")
def uniform_batch(S, k, rng):
    """k prompts from the epoch-wise shuffled pass over the current subset (entered first if need be)."""
    ensure_subset(S)
    batch = np.empty(k, np.int64)
    draw_uniform(S, k, rng, batch)
    return batch


# ----------------------------------------------------------------------------------------------------------------
# Eq. 14 sampling weights in a sum tree (cures.sumtree): O(log N) draws and updates
# ----------------------------------------------------------------------------------------------------------------


@njit(cache=True, inline="always")
def rho_weight(S, x, tau):
    """Eq. 14 weight of prompt x from its posterior mean."""
    return sampling_weight(posterior_mean(S.alpha, S.beta, x), tau)


@njit(cache=True, inline="always")
def fill_rho_tree(S, lo, hi, tau):
    """Weights of the prompts order[lo:hi] by Eq. 14; every other prompt gets weight 0."""
    h = S.vars.tree_height
    leaf0 = (FANOUT**h - 1) // (FANOUT - 1)
    if S.tree.shape[0] < leaf0 + S.order.shape[0]:
        raise ValueError("the policy samples from a sum tree it does not declare (PolicySpec.arrays)")
    S.tree[:] = 0.0
    for x in S.order[lo:hi]:
        S.tree[leaf0 + x] = rho_weight(S, x, tau)
    tree_rebuild(S.tree, h)


@njit(cache=True, inline="always")
def rho_draws(S, rng, out):
    """Fill `out` with prompts drawn i.i.d. with probability proportional to their Eq. 14 weights."""
    tree_draws(S.tree, S.vars.tree_height, rng, out)


@njit(cache=True, inline="always")
def rho_update(S, ids, tau):
    """Line 15 of Algorithm 1 for the prompts `ids`: their Eq. 14 weights from their new posterior means."""
    weights = np.empty(ids.shape[0])
    for i in range(ids.shape[0]):
        weights[i] = rho_weight(S, ids[i], tau)
    tree_set(S.tree, S.vars.tree_height, ids, weights)


# ----------------------------------------------------------------------------------------------------------------
# Allocation helpers
# ----------------------------------------------------------------------------------------------------------------


@njit(cache=True, inline="always")
def sigma_from_counts(p, g2_correct, g2_wrong, gap2):
    """Eq. 21 at pass rate p, with measured score statistics when all are finite and unit norms otherwise."""
    if np.isfinite(g2_correct) and np.isfinite(g2_wrong) and np.isfinite(gap2):
        return np.sqrt(sigma2_nb(p, g2_correct, g2_wrong, gap2))
    return np.sqrt(sigma2_nb(p, 1.0, 1.0, 0.0))


@njit(cache=True, inline="always")
def posterior_sigmas(S, ids, out):
    """out[i] = sqrt(p_hat (1 - p_hat)) of prompt ids[i]: Eq. 21 with equal score norms at the posterior mean."""
    alpha, beta = S.alpha, S.beta
    for i in range(ids.shape[0]):
        p = posterior_mean(alpha, beta, ids[i])
        out[i] = np.sqrt(p * (1.0 - p))


@njit(cache=True)
def stable_argsort(x):
    """`np.argsort(x, kind="mergesort")` of a float64 vector (ties keep their order), one kernel for every policy.
    Numba compiles a sort into each function that calls np.argsort itself (about 1 s each on 2 cores, measured);
    a call to this kernel loads its machine code from the cache, compiled once by the first policy that sorts."""
    return np.argsort(x, kind="mergesort")


@njit(cache=True)
def largest_remainder(weights, total, out):
    """Integers proportional to `weights` summing exactly to `total` (floors, then +1 by largest remainder);
    all-zero weights give zeros."""
    wsum = weights.sum()
    out[:] = 0
    if wsum <= 0.0:
        return
    exact = total * weights / wsum
    for i in range(weights.shape[0]):
        out[i] = int(np.floor(exact[i]))
    rest = total - out.sum()
    order = stable_argsort(-(exact - out))
    for r in range(rest):
        out[order[r]] += 1


@njit(cache=True, inline="always")
def allocate_or_uniform(weights, budget, n_min, n_max, out):
    """Eq. 20 in integers (`allocate_into`); all-zero weights (every prompt believed solved or hopeless) fall back
    to equal weights, so the budget is still spent."""
    for w in weights:
        if w > 0.0:
            return allocate_into(weights, budget, n_min, n_max, out)
    return allocate_into(np.ones(weights.shape[0]), budget, n_min, n_max, out)
