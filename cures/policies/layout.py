"""The memory a compiled policy works on: `State` (kept across steps) and `StepBuffer` (the slots of one step).

Both are NamedTuples of arrays plus `vars`, a NumPy record of named scalars (`S.vars.step`, `B.vars.n_groups`)
that compiled code reads and writes in place. Every policy gets the fields below; a policy adds its own scalars
(`PolicySpec.state_vars`, `step_vars`) and the optional per-prompt arrays it needs (`PolicySpec.arrays`); an array
it does not declare has length 0.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from cures.sumtree import new_tree

STATE_VARS = (
    ("step", np.int64),  # training steps finished
    ("rollouts", np.int64),  # rollouts planned so far, screening and refills included
    ("n_subsets", np.int64),  # T: disjoint subsets of the prompts trained in turn (Algorithm 1, line 1)
    ("subset", np.int64),  # the current subset t (-1 before the first)
    ("subset_step", np.int64),  # steps finished in subset t
    ("need_subset", np.bool_),  # the next plan enters the next subset
    ("queue_len", np.int64),  # prompts in the uniform pass over subset t (State.queue[:queue_len])
    ("cursor", np.int64),  # next position in that pass
    ("epoch", np.int64),  # passes started
    ("tree_height", np.int64),  # levels of the sum tree State.tree (0: no tree)
    ("short_steps", np.int64),  # steps that ended with fewer training groups than prompts_per_step (capped refills)
    ("short_groups", np.int64),  # the groups those steps missed
    ("slots_made", np.int64),  # slots generated so far: the next slot's id (StepBuffer.slot_id)
)

STEP_VARS = (
    ("n_slots", np.int64),  # slots generated so far in this step
    ("round_start", np.int64),  # first slot of the latest round
    ("n_rounds", np.int64),  # rounds planned in this step
    ("n_groups", np.int64),  # training groups formed so far
    ("screening", np.bool_),  # the latest round only informs the policy (pre-rollouts, screens)
    ("awaiting", np.bool_),  # the latest round is planned and not yet observed
    ("done", np.bool_),  # the step is finished; the next plan starts a new one
    ("generated_groups", np.int64),  # groups generated in this step, and of those ...
    ("all_correct", np.int64),  # ... the all-correct ...
    ("all_wrong", np.int64),  # ... and the all-wrong ones
)

OPTIONAL_ARRAYS = {  # per-prompt arrays a policy may declare (PolicySpec.arrays), by how they start
    "sigma": lambda n: np.zeros(n),  # float64[N] allocation weight fixed for the current subset
    "weight": lambda n: np.ones(n),  # float64[N] sampling weight fixed for the current subset
    "n_static": lambda n: np.zeros(n, np.int64),  # int64[N] rollouts fixed for the current subset
    "tree": lambda n: new_tree(n)[0],  # float64[...] 16-ary sum tree of sampling weights (cures.sumtree)
    "streak": lambda n: np.zeros((n, 2), np.int64),  # int64[N, 2] per-prompt outcome streaks
    "last": lambda n: np.zeros((n, 2)),  # float64[N, 2] successes and rollouts of the last observation
    "counts": lambda n: np.zeros((n, 2), np.int64),  # int64[N, 2] successes and failures within the current step
    "latent": lambda n: np.zeros(n),  # float64[N] a per-prompt predictor state (e.g. a logit pass rate)
    "features": lambda n: np.zeros((n, 0)),  # float64[N, d] per-prompt features (e.g. embeddings; PolicySpec.load)
    "held": lambda n: np.full((n, 4), -1, np.int64),  # int64[N, 4] a slot kept for a later step: id (-1: none),
    # successes, rollouts, step it was generated in; the caller keeps the rollouts of these ids (held_slot_ids)
    "flags": lambda n: np.zeros(n, np.uint8),  # uint8[N] per-prompt policy flags
}
EMPTY_ARRAYS = {  # the same arrays at length 0 (undeclared)
    "sigma": np.zeros(0), "weight": np.zeros(0), "n_static": np.zeros(0, np.int64), "tree": np.zeros(0),
    "streak": np.zeros((0, 2), np.int64), "last": np.zeros((0, 2)), "counts": np.zeros((0, 2), np.int64),
    "latent": np.zeros(0), "features": np.zeros((0, 0)), "held": np.zeros((0, 4), np.int64),
    "flags": np.zeros(0, np.uint8),
}


class State(NamedTuple):
    """Everything a policy keeps across steps."""

    alpha: np.ndarray  # float64[N] Beta counts (Eq. 23-24)
    beta: np.ndarray
    alpha0: np.ndarray  # float64[N] prior counts (reset and forgetting target)
    beta0: np.ndarray
    order: np.ndarray  # int64[N] random permutation; subset t is order[subset_bounds(t)]
    queue: np.ndarray  # int64[N] the current uniform pass over the subset
    mark: np.ndarray  # uint8[N] scratch, zero between calls
    sigma: np.ndarray  # optional arrays: see OPTIONAL_ARRAYS
    weight: np.ndarray
    n_static: np.ndarray
    tree: np.ndarray
    streak: np.ndarray
    last: np.ndarray
    counts: np.ndarray
    latent: np.ndarray
    features: np.ndarray
    held: np.ndarray
    flags: np.ndarray
    vars: np.record  # STATE_VARS + the policy's state_vars


class StepBuffer(NamedTuple):
    """The slots generated during one training step (all rounds). Slot j gives n[j] rollouts to prompt[j]; the
    caller fills succ[j] (and optionally score[j]) between plan and observe; group[j] is the training group it
    joined (-1: generated, not trained). A group may train on part of a slot: keep[j] = (successes, failures) of the
    slot it uses, the first-generated of each class (-1: the whole slot); and its advantages may use statistics of
    more rollouts than it trains on: baseline[g] = (successes, rollouts) of that pool (0 rollouts: the trained
    rollouts themselves). A slot may also re-use rollouts generated earlier, in this step or a previous one:
    source[j] is that slot's id (slot_id; -1 for a slot generated now); the caller supplies them."""

    prompt: np.ndarray  # int64[cap]
    n: np.ndarray  # int64[cap]
    succ: np.ndarray  # float64[cap] successes
    score: np.ndarray  # float64[cap, 3] optional E1||s||^2, E0||s||^2, ||E1 s - E0 s||^2 (NaN: unknown)
    group: np.ndarray  # int64[cap]
    round: np.ndarray  # int64[cap] round of the slot within the step
    keep: np.ndarray  # int64[cap, 2] trained successes and failures of the slot (-1: all of them)
    baseline: np.ndarray  # float64[cap, 2] per group: successes and rollouts of its advantage statistics
    slot_id: np.ndarray  # int64[cap] the slot's id, unique over the run (-1 for a slot that re-uses rollouts)
    source: np.ndarray  # int64[cap] the id of the slot whose rollouts this one re-uses (-1: generated now)
    vars: np.record  # STEP_VARS + the policy's step_vars


def new_vars(fields, **values) -> np.record:
    """A zeroed record with these (name, dtype) fields, then `values`; a view of a one-element array, so compiled
    code that writes its fields writes the array."""
    rec = np.zeros(1, np.dtype(list(fields))).view(np.recarray)[0]
    for name, value in values.items():
        setattr(rec, name, value)
    return rec


def vars_array(rec: np.record) -> np.ndarray:
    """A record's one-element array (for saving), a copy."""
    return np.array([rec], dtype=rec.dtype)


def vars_from_array(a: np.ndarray) -> np.record:
    """The writable record of a loaded one-element array."""
    return np.ascontiguousarray(a).copy().view(np.recarray)[0]


def copy_vars(rec: np.record) -> np.record:
    return vars_from_array(vars_array(rec))
