"""`pilot-commit`: Pilot-Commit (arXiv 2605.26606; databricks/pilot-commit@6def20e, recipe/pc/).

Each round (`RayPCTrainer.fit`, pc_ray_trainer.py):

1. Commit: k = min(prompts_per_step - committed, |buffer|) prompts leave the survivor buffer (uniformly at random, or
   by largest pilot std sqrt(p(1-p)) then newest, `max_variance`) and get n_commit fresh rollouts each. A committed
   prompt trains as one group: its n_pilot pilot rollouts, generated in an earlier round or step and kept since,
   plus the n_commit new ones (`PolicyState.held_slot_ids` tells the trainer which pilots to keep).
2. Pilot: the next gen_batch_size prompts of the epoch-wise shuffled pass get n_pilot rollouts each. A pilot with
   p_lower <= s/n_pilot <= 1 - p_upper enters the buffer (replacing an older pilot of the same prompt); one with
   s/n_pilot >= p_solve is excluded from later epochs. Too hard and too easy pilots are dropped (the prompt
   returns next epoch).
3. Rounds repeat until prompts_per_step prompts are committed or max_gen_batches rounds were made (the code raises
   there; this policy trains on what it has and records the shortfall). At the end of step t, buffered pilots with
   t - t_added > max_off_steps are dropped; at the end of an epoch the buffer is cleared and the exclusions apply.

Every generated rollout counts (pilots included, also those never committed). Defaults are the README's key values
and the 1.5B script (p_lower 0.125, p_upper 0.25, p_solve 1.0, max_off_steps 4, gen_batch_size 3 x prompts_per_step),
with the yaml's pilot of 8 and a commit of 24 (the scripts' 25 % pilot share); buffer sampling is the yaml's
`random`. Two simplifications: the GPU-divisibility trim of k is omitted, and a step in progress at the end of an
epoch is not dropped.
"""

import numpy as np

from cures._jit import njit
from cures.policies.kernels import (
    add_carried_slot,
    add_slot,
    begin_training_round,
    draw_uniform,
    end_plan,
    ensure_subset,
    finish_step,
    record_shortfall,
    round_slots,
    shuffle,
    stable_argsort,
    update_posterior_from_round,
)
from cures.policies.spec import (
    Param,
    PolicySpec,
    choice,
    default_gen_batch,
    gen_batch_param,
    integer,
    kernel_record,
    real,
    register,
    reporting_prior,
)

SLOT, SUCC, ROLLOUTS, ADDED = 0, 1, 2, 3  # columns of State.held (one buffered pilot per prompt)
TO_EXCLUDE, EXCLUDED = 1, 2  # State.flags


PARAMS = (
    Param("prompts_per_step", 64, "prompts committed (trained) per step (train_batch_size; the scripts' 128)",
          integer(1)),
    Param("n_pilot", 8, "pilot rollouts per prompt (exploration.n; the 1.5B script's 32)", integer(2)),
    Param("n_commit", 24, "commit rollouts per survivor (rollout.n; the 1.5B script's 96)", integer(1)),
    gen_batch_param(3, "prompts piloted per round (the scripts' 384 / 128)"),
    Param("p_lower", 0.125, "defer a pilot whose pass rate is below this", real(0.0, 1.0)),
    Param("p_upper", 0.25, "skip a pilot whose pass rate is above 1 - this", real(0.0, 1.0)),
    Param("p_solve", 1.0, "exclude a prompt whose pilot pass rate reaches this (None: never)",
          real(0.0, 1.0, optional=True)),
    Param("max_off_steps", 4, "steps a buffered pilot may wait before it is flushed", integer(0)),
    Param("buffer_sampling", "random", "which survivors are committed first: random or max_variance",
          choice("random", "max_variance")),
    Param("max_gen_batches", 10, "rounds per step before training on what there is", integer(1)),
    reporting_prior(),
)
Params = kernel_record(__name__, PARAMS, derived=("max_variance",), consumed=("buffer_sampling",), decay=1.0)


STEP_VARS = (("commits", np.int64),)  # commit slots at the start of the latest round


@njit(cache=True)
def buffered(S):
    """The prompts in the buffer, by prompt id."""
    return np.flatnonzero(S.held[:, SLOT] >= 0)


@njit(cache=True)
def choose_commits(P, S, k, rng):
    """k buffered prompts: the top k by (pilot std, step added) descending, or k uniformly without replacement."""
    pool = buffered(S)
    if k >= pool.shape[0]:
        return pool
    if P.max_variance:
        key = np.empty(pool.shape[0])
        for i in range(pool.shape[0]):
            p = S.held[pool[i], SUCC] / S.held[pool[i], ROLLOUTS]
            key[i] = -(np.sqrt(p * (1.0 - p)) * 1e9 + S.held[pool[i], ADDED])
        return pool[stable_argsort(key)[:k]]
    shuffle(pool, rng)
    return pool[:k]


@njit(cache=True)
def end_epoch(S):
    """The buffer is cleared and prompts marked solved leave the pass over the data."""
    S.held[:, SLOT] = -1
    kept = 0
    for i in range(S.vars.queue_len):
        x = S.queue[i]
        if S.flags[x] & TO_EXCLUDE:
            S.flags[x] = EXCLUDED
        else:
            S.queue[kept] = x
            kept += 1
    S.vars.queue_len = kept
    S.vars.cursor = kept  # the next draw reshuffles


@njit(cache=True)
def plan(P, S, B, rng):
    ensure_subset(S)
    if S.vars.cursor + P.gen_batch_size > S.vars.queue_len:  # the pass is used up
        end_epoch(S)
    committed = 0 if B.vars.done else B.vars.n_groups
    begin_training_round(B)
    commits = choose_commits(P, S, P.prompts_per_step - committed, rng)
    for x in commits:  # 1: commit rollouts for buffered survivors
        add_slot(B, x, P.n_commit)
    B.vars.commits = commits.shape[0]
    m = min(P.gen_batch_size, S.vars.queue_len)
    pilots = np.empty(m, np.int64)
    draw_uniform(S, m, rng, pilots)
    for x in pilots:  # 2: pilots of the next prompts
        add_slot(B, x, P.n_pilot)
    end_plan(S, B)


@njit(cache=True)
def observe(P, S, B, rng):
    lo, hi = round_slots(B)
    update_posterior_from_round(S, B, P.decay)
    for j in range(lo, lo + B.vars.commits):  # a commit trains with its pilot
        x, g = B.prompt[j], B.vars.n_groups
        B.group[j] = g
        add_carried_slot(B, x, S.held[x, ROLLOUTS], S.held[x, SUCC], S.held[x, SLOT], g)
        S.held[x, SLOT] = -1
        B.vars.n_groups = g + 1
    for j in range(lo + B.vars.commits, hi):  # the pilot decision
        x, mean = B.prompt[j], B.succ[j] / B.n[j]
        if mean >= P.p_solve:
            S.flags[x] = S.flags[x] | TO_EXCLUDE
        if P.p_lower <= mean <= 1.0 - P.p_upper:
            S.held[x, SLOT], S.held[x, SUCC], S.held[x, ROLLOUTS] = B.slot_id[j], int(B.succ[j]), B.n[j]
            S.held[x, ADDED] = S.vars.step
    if B.vars.n_groups < P.prompts_per_step and B.vars.n_rounds < P.max_gen_batches:
        return False
    for x in buffered(S):  # step end: stale pilots are flushed
        if S.vars.step - S.held[x, ADDED] > P.max_off_steps:
            S.held[x, SLOT] = -1
    record_shortfall(S, B, P.prompts_per_step)
    finish_step(S, B)
    return True


def _capacity(P, subset_size):
    """Each committed prompt takes a commit slot and its pilot's; pilots come gen_batch_size a round."""
    return 2 * P.prompts_per_step + P.gen_batch_size * P.max_gen_batches


def _resolve(v, n_prompts):
    v = default_gen_batch(3)(v, n_prompts)
    v["max_variance"] = v.pop("buffer_sampling") == "max_variance"
    v["p_solve"] = 2.0 if v["p_solve"] is None else v["p_solve"]  # above any pass rate: never exclude
    return v


def _check(v, n_prompts):
    if v["p_lower"] > 1.0 - v["p_upper"]:
        raise ValueError(f"p_lower {v['p_lower']} is above 1 - p_upper = {1 - v['p_upper']}: no pilot could survive")


def _group_size_params(n):
    """GRPO's n per prompt split as the authors' pXcY runs: a 25 % pilot and the rest committed."""
    pilot = max(2, n // 4)
    return {"n_pilot": pilot, "n_commit": max(1, n - pilot)}


SPEC = register(PolicySpec(
    name="pilot-commit",
    summary="Pilot-Commit: n_pilot rollouts per new prompt, commit n_commit more to mid-rate survivors (kept pilots).",
    params=PARAMS,
    kernel_params=Params,
    plan=plan,
    observe=observe,
    capacity=_capacity,
    arrays=("held", "flags"),
    step_vars=STEP_VARS,
    loss_weighting="per-rollout",
    resolve=_resolve,
    check=_check,
    group_size_params=_group_size_params,
    doc=__doc__,
))
