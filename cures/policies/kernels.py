"""Array layouts and shared Numba building blocks of every policy.

A policy is two compiled functions over the same four arguments:

    plan(P, S, B, rng)      write the next generation round into B (which prompts, how many rollouts each)
    observe(P, S, B, rng)   read the successes of that round from B, update S, return True when the step is done

P (`Params`) holds the parameters, S (`State`) the persistent state, B (`StepBuffer`) the slots generated during
the current training step, and rng is a `numpy.random.Generator`. One slot is one (prompt, n rollouts) pair of a
round; a prompt drawn twice gets two slots. When a step is done, `B.group[j]` says which training group slot j
belongs to (-1: generated but not trained, e.g. screening rollouts or a filtered group). Callers fill `B.succ`
(and optionally `B.score`) for the slots `B.reg[ROUND_START]:B.reg[N_SLOTS]` between plan and observe.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from cures.posterior import posterior_mean, update_counts
from cures.sumtree import FANOUT, tree_draw, tree_rebuild, tree_set
from cures.theory import allocate_into, sampling_weight_nb, sigma2_nb

# Policy kinds (dispatch codes for compiled callers).
GRPO, CURES, CURES_RELEASED, DAPO, GVM, SPEED, MOPPS, GRESO, KNAPSACK = range(9)
# Switch values inside Params.
SAMPLE_UNIFORM, SAMPLE_RHO = 0, 1
ALLOC_FIXED, ALLOC_SIGMA = 0, 1
SIGMA_POSTERIOR, SIGMA_PRE_ROLLOUT = 0, 1
# Round purposes.
TRAIN, SCREEN = 0, 1
# State registers (S.ireg).
STEP, SUBSET, SUBSET_STEP, CURSOR, QUEUE_LEN, PHASE, EPOCH, ROLLOUTS, N_SUBSETS, TREE_HEIGHT = range(10)
SHORT_STEPS, SHORT_GROUPS = 10, 11  # steps that trained fewer groups than asked, and the groups missing
N_IREG = 16
# Float registers (S.freg).
Q_EASY, Q_HARD, ZERO_VAR = 0, 1, 2
N_FREG = 8
NEED_SUBSET, TRAINING = 0, 1  # values of S.ireg[PHASE]
# Step-buffer registers (B.reg).
N_SLOTS, ROUND_START, N_ROUNDS, DONE, N_GROUPS, PURPOSE, AWAITING = range(7)
ZV_EASY, ZV_HARD, GEN_GROUPS = 7, 8, 9  # this step's all-correct, all-wrong and generated groups
NEXT, SCREENS = 10, 11  # what a multi-round policy does next (policy-defined code), screening rounds so far
N_BREG = 12


class Params(NamedTuple):
    """Every kernel parameter of every policy (a policy reads the fields it documents)."""

    kind: int = GRPO
    batch_size: int = 64  # m: prompts per training step
    budget: int = 512  # N: rollouts per training step
    n_min: int = 2  # smallest group a prompt with positive weight gets
    n_max: int = 0  # largest group (0: no limit)
    prior_alpha: float = 1.0
    prior_beta: float = 1.0
    decay: float = 1.0  # posterior forgetting factor
    tau: float = 0.1  # Eq. 14 temperature
    sampling: int = SAMPLE_RHO
    allocation: int = ALLOC_SIGMA
    sigma_source: int = SIGMA_POSTERIOR
    n_pre: int = 0  # N': pre-rollouts per prompt at the start of each subset (0: none)
    subsets: int = 1  # T: disjoint subsets trained in turn
    steps_per_subset: int = 0  # M (0: never leave the subset)
    reset: bool = True  # reset the posterior when a subset starts
    replacement: bool = True
    shards: int = 8
    budget_coef: int = 8
    rollout_multiplier: int = 1
    temperature_scale: float = 100.0
    align_to: int = 1
    # peers
    n: int = 8  # fixed rollouts per prompt
    gen_batch_size: int = 192  # prompts per generation round (DAPO, SPEED)
    max_gen_batches: int = 10  # generation rounds per step before training on what there is
    gvm_a: float = 1e-3
    gvm_b: float = 2.0
    avg_rollouts: int = 8  # GVM: mean stage-2 rollouts per prompt of a subset
    n_continue: int = 20  # SPEED: rollouts added to a screened-mixed prompt
    ts_ratio: int = 16  # MoPPS: candidates per selected prompt
    target: float = 0.5  # MoPPS target success rate; GRESO target zero-variance ratio
    q_init: float = 0.5  # GRESO
    q_step: float = 0.01
    q_min: float = 0.05
    q_max: float = 0.95
    easy_threshold: float = 0.98
    hard_threshold: float = 0.11
    min_keep: float = 0.01
    gen_growth: float = 1.25
    min_observations: int = 8  # Knapsack: fewer observed rollouts -> default n


class State(NamedTuple):
    """Persistent policy state; arrays a policy does not use have length 0."""

    alpha: np.ndarray  # float64[N] Beta counts
    beta: np.ndarray
    alpha0: np.ndarray  # float64[N] prior counts (reset and forgetting target)
    beta0: np.ndarray
    sigma: np.ndarray  # float64[N] allocation weight fixed for the current subset
    weight: np.ndarray  # float64[N] sampling weight fixed for the current subset
    n_static: np.ndarray  # int64[N] rollouts fixed for the current subset
    order: np.ndarray  # int64[N] random permutation; subset t is order[bounds(t)]
    queue: np.ndarray  # int64[N] shuffled prompts of the current subset (uniform sampling)
    tree: np.ndarray  # float64[...] 16-ary sum tree of sampling weights (cures.sumtree), height ireg[TREE_HEIGHT]
    streak: np.ndarray  # int64[N, 2] consecutive all-correct / all-wrong observations (GRESO)
    last: np.ndarray  # float64[N, 2] successes and rollouts of the prompt's last observation (Knapsack)
    mark: np.ndarray  # uint8[N] scratch, zero between calls
    ireg: np.ndarray  # int64[N_IREG] counters
    freg: np.ndarray  # float64[N_FREG] scalar state


class StepBuffer(NamedTuple):
    """The slots generated during one training step (all rounds)."""

    prompt: np.ndarray  # int64[cap]
    n: np.ndarray  # int64[cap]
    succ: np.ndarray  # float64[cap] successes, filled by the caller
    score: np.ndarray  # float64[cap, 3] optional E1||s||^2, E0||s||^2, ||E1 s - E0 s||^2 (NaN: unknown)
    group: np.ndarray  # int64[cap] training group of the slot, -1 if not trained
    round: np.ndarray  # int64[cap] round of the slot within the step
    reg: np.ndarray  # int64[N_BREG]


# ----------------------------------------------------------------------------------------------------------------
# Step buffer
# ----------------------------------------------------------------------------------------------------------------


@njit(cache=True, inline="always")
def begin_round(B, purpose):
    """Open a new round; a finished step is cleared first."""
    if B.reg[DONE] == 1:
        B.reg[:] = 0
    B.reg[ROUND_START] = B.reg[N_SLOTS]
    B.reg[PURPOSE] = purpose


@njit(cache=True, inline="always")
def add_slot(B, prompt, n):
    """Append (prompt, n) to the open round; n <= 0 adds nothing."""
    if n <= 0:
        return
    j = B.reg[N_SLOTS]
    if j >= B.prompt.shape[0]:
        raise IndexError("step buffer full: the policy planned more slots than its capacity")
    B.prompt[j] = prompt
    B.n[j] = n
    B.succ[j] = 0.0
    for c in range(3):
        B.score[j, c] = np.nan
    B.group[j] = -1
    B.round[j] = B.reg[N_ROUNDS]
    B.reg[N_SLOTS] = j + 1


@njit(cache=True, inline="always")
def end_plan(S, B):
    """Close planning of the open round and count its rollouts."""
    B.reg[N_ROUNDS] += 1
    B.reg[AWAITING] = 1
    for j in range(B.reg[ROUND_START], B.reg[N_SLOTS]):
        S.ireg[ROLLOUTS] += B.n[j]


@njit(cache=True, inline="always")
def round_slots(B):
    return B.reg[ROUND_START], B.reg[N_SLOTS]


@njit(cache=True, inline="always")
def train_on_round(B):
    """Make every slot of the last round its own training group."""
    lo, hi = round_slots(B)
    g = B.reg[N_GROUPS]
    for j in range(lo, hi):
        B.group[j] = g
        g += 1
    B.reg[N_GROUPS] = g


@njit(cache=True, inline="always")
def finish_step(S, B):
    B.reg[DONE] = 1
    S.ireg[STEP] += 1
    S.ireg[SUBSET_STEP] += 1


@njit(cache=True, inline="always")
def record_shortfall(P, S, B):
    """Count a step that ends with fewer training groups than `batch_size` (DAPO-style caps)."""
    missing = P.batch_size - B.reg[N_GROUPS]
    if missing > 0:
        S.ireg[SHORT_STEPS] += 1
        S.ireg[SHORT_GROUPS] += missing


@njit(cache=True, inline="always")
def is_mixed(B, j):
    """The slot's rewards are not all equal: its group has a non-zero GRPO advantage."""
    return 0.0 < B.succ[j] < B.n[j]


@njit(cache=True)
def keep_mixed_groups(P, B):
    """DAPO's filter on the last round: mixed slots become training groups, in generation order, until the step
    holds `batch_size` groups; all-equal and surplus slots stay untrained. Also counts the zero-variance groups."""
    lo, hi = round_slots(B)
    for j in range(lo, hi):
        B.reg[GEN_GROUPS] += 1
        if is_mixed(B, j):
            if B.reg[N_GROUPS] < P.batch_size:
                B.group[j] = B.reg[N_GROUPS]
                B.reg[N_GROUPS] += 1
        elif B.succ[j] > 0:
            B.reg[ZV_EASY] += 1
        else:
            B.reg[ZV_HARD] += 1


@njit(cache=True, inline="always")
def update_posterior_from_round(P, S, B):
    """Eq. 23-24 for every slot of the last round (successes out of n)."""
    lo, hi = round_slots(B)
    update_counts(S.alpha, S.beta, S.alpha0, S.beta0, B.prompt[lo:hi], B.succ[lo:hi],
                  B.n[lo:hi].astype(np.float64), P.decay, S.mark)


@njit(cache=True)
def complete_single_round_step(P, S, B):
    """The usual end of a one-round step: Eq. 23-24 from the round, every slot its own group, the step done."""
    update_posterior_from_round(P, S, B)
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
    T = S.ireg[N_SUBSETS]
    return (t * n) // T, ((t + 1) * n) // T


@njit(cache=True)
def enter_next_subset(P, S, rng):
    """Move to the next subset (cycling), optionally reset its posterior to the prior, refill the uniform queue."""
    first = S.ireg[SUBSET] < 0
    t = (S.ireg[SUBSET] + 1) % S.ireg[N_SUBSETS]
    S.ireg[SUBSET] = t
    S.ireg[SUBSET_STEP] = 0
    lo, hi = subset_bounds(S, t)
    if P.reset and not first:  # the first subset keeps any counts the state was initialised with
        for x in S.order[lo:hi]:
            S.alpha[x] = S.alpha0[x]
            S.beta[x] = S.beta0[x]
    S.ireg[QUEUE_LEN] = hi - lo
    for i in range(hi - lo):  # element loops here and below: cheaper to compile than slice assignment
        S.queue[i] = S.order[lo + i]
    S.ireg[CURSOR] = hi - lo  # forces a shuffle at the first uniform draw
    S.ireg[PHASE] = TRAINING
    return lo, hi


@njit(cache=True)
def shuffle(a, rng):
    """Fisher-Yates shuffle in place (cheaper to compile than Generator.shuffle)."""
    for i in range(a.shape[0] - 1, 0, -1):
        j = int(rng.random() * (i + 1))
        a[i], a[j] = a[j], a[i]


@njit(cache=True)
def screen_subset(S, B, lo, hi, n):
    """A screening round: n rollouts for every prompt order[lo:hi] of the subset (counted, informs the policy)."""
    begin_round(B, SCREEN)
    for x in S.order[lo:hi]:
        add_slot(B, x, n)
    end_plan(S, B)


@njit(cache=True)
def ensure_subset(P, S, rng):
    """Enter the first subset before the first plan."""
    if S.ireg[PHASE] == NEED_SUBSET:
        enter_next_subset(P, S, rng)


@njit(cache=True)
def open_uniform_round(P, S, B, rng, k, purpose):
    """Open a round and return k prompts from the epoch-wise shuffled pass over the current subset."""
    ensure_subset(P, S, rng)
    begin_round(B, purpose)
    batch = np.empty(k, np.int64)
    draw_uniform(S, k, rng, batch)
    return batch


@njit(cache=True)
def draw_uniform(S, m, rng, out):
    """m distinct prompts from the current subset, epoch-wise shuffled like TRL's RepeatSampler.

    Each pass is one random permutation cut into chunks of m; an incomplete last chunk is dropped.
    """
    L = S.ireg[QUEUE_LEN]
    if S.ireg[CURSOR] + m > L:
        shuffle(S.queue[:L], rng)
        S.ireg[CURSOR] = 0
        S.ireg[EPOCH] += 1
    c = S.ireg[CURSOR]
    for i in range(m):
        out[i] = S.queue[c + i]
    S.ireg[CURSOR] = c + m


# ----------------------------------------------------------------------------------------------------------------
# Eq. 14 sampling weights in a sum tree (cures.sumtree): O(log N) draws and updates
# ----------------------------------------------------------------------------------------------------------------


@njit(cache=True, inline="always")
def rho_weight(P, S, x):
    """Eq. 14 weight of prompt x from its posterior mean."""
    return sampling_weight_nb(posterior_mean(S.alpha, S.beta, x), P.tau)


@njit(cache=True)
def fill_rho_tree(P, S, lo, hi):
    """Weights of the prompts order[lo:hi] by Eq. 14; every other prompt gets weight 0."""
    h = S.ireg[TREE_HEIGHT]
    leaf0 = (FANOUT**h - 1) // (FANOUT - 1)
    S.tree[:] = 0.0
    for x in S.order[lo:hi]:
        S.tree[leaf0 + x] = rho_weight(P, S, x)
    tree_rebuild(S.tree, h)


@njit(cache=True, inline="always")
def rho_draw(S, rng):
    return tree_draw(S.tree, S.ireg[TREE_HEIGHT], rng)


@njit(cache=True, inline="always")
def rho_update(P, S, x):
    """Line 15 of Algorithm 1 for one prompt: its Eq. 14 weight from its new posterior mean."""
    tree_set(S.tree, S.ireg[TREE_HEIGHT], x, rho_weight(P, S, x))


# ----------------------------------------------------------------------------------------------------------------
# Allocation helpers
# ----------------------------------------------------------------------------------------------------------------


@njit(cache=True, inline="always")
def sigma_from_counts(p, g2_correct, g2_wrong, gap2):
    """Eq. 21 at pass rate p, with measured score statistics when all are finite and unit norms otherwise."""
    if np.isfinite(g2_correct) and np.isfinite(g2_wrong) and np.isfinite(gap2):
        return np.sqrt(sigma2_nb(p, g2_correct, g2_wrong, gap2))
    return np.sqrt(sigma2_nb(p, 1.0, 1.0, 0.0))


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
    order = np.argsort(-(exact - out), kind="mergesort")
    for r in range(rest):
        out[order[r]] += 1


@njit(cache=True)
def allocate_or_uniform(weights, budget, n_min, n_max, out):
    """Eq. 20 in integers (`allocate_into`); all-zero weights (every prompt believed solved or hopeless) fall back
    to equal weights, so the budget is still spent."""
    for w in weights:
        if w > 0.0:
            return allocate_into(weights, budget, n_min, n_max, out)
    return allocate_into(np.ones(weights.shape[0]), budget, n_min, n_max, out)
