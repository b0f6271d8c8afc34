"""One policy step for a real training backend, with no training framework in it.

    step = run_policy_step(policy, state, generate, score, threshold=0.5, held=held)
    # step.rollouts: every rollout the step generated or re-used, in slot order; step.trained: which of them train,
    # in which group, with which weight and baseline; step.held: the rollouts the policy keeps for a later step

A step is: plan a round from the current posterior -> `generate(plan)` its rollouts -> `score(plan, rollouts)`
them -> `observe` -> repeat while the policy asks for more rounds (screening, refills, pre-rollouts) -> the
training batch. A backend supplies only the two callables; the rollouts are opaque to this module (TRL's token ids
and texts, verl's DataProto rows, ...). Slots that re-use rollouts generated earlier (this step's, or held from an
earlier step: Pilot-Commit's pilots) get those rollouts without generating them again. The TRL trainer
(`cures.backends.trl`) runs its steps through this function; so can any other backend.

`TrainingBatch` -> (rollout, group, weight, baseline) is read in one place, `trained_rollouts`, which the simulator's
per-rollout reference also uses.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cures.policies.core import Plan, Policy, PolicyState, TrainingBatch
from cures.posterior import successes_from_rewards

__all__ = ["RECORD_COLUMNS", "Scores", "StepRollouts", "TrainedRollouts", "PolicyStep", "run_policy_step",
           "step_metrics", "step_records", "trained_rollouts"]


@dataclass(frozen=True)
class Scores:
    """What `score(plan, rollouts)` returns: one reward per rollout (NaN: unscorable, a failure for the policy) and,
    optionally, the per-slot score-norm statistics of Eq. 21 (slots x 3: E1||s||^2, E0||s||^2, ||E1 s - E0 s||^2)."""

    rewards: np.ndarray
    score_stats: np.ndarray | None = None


@dataclass
class StepRollouts:
    """Rollouts of one step, one entry per rollout, slots in order (a re-used slot repeats its source's rollouts)."""

    rollouts: list  # the backend's own rollout records
    rewards: np.ndarray  # float64, NaN where unscorable
    slot: np.ndarray  # int64: the step slot each rollout belongs to
    fresh: np.ndarray  # bool: generated in this step (False: re-used from an earlier slot)

    def __len__(self) -> int:
        return len(self.rollouts)

    def piece(self, index: np.ndarray) -> StepRollouts:
        """These rollouts (indices) as a StepRollouts of their own."""
        return StepRollouts([self.rollouts[i] for i in index], self.rewards[index], self.slot[index],
                            self.fresh[index])

    def as_slot(self, slot: int) -> StepRollouts:
        """The same rollouts re-used as slot `slot` of a later position (not generated there)."""
        n = len(self.rollouts)
        return StepRollouts(list(self.rollouts), self.rewards.copy(), np.full(n, slot, np.int64), np.zeros(n, bool))

    @staticmethod
    def join(pieces: Sequence[StepRollouts]) -> StepRollouts:
        if not pieces:
            return StepRollouts([], np.zeros(0), np.zeros(0, np.int64), np.zeros(0, bool))
        return StepRollouts([r for p in pieces for r in p.rollouts], np.concatenate([p.rewards for p in pieces]),
                            np.concatenate([p.slot for p in pieces]), np.concatenate([p.fresh for p in pieces]))

    def zero_variance_fraction(self) -> float:
        """The share of the step's generated slots whose rollouts all got the same reward (no group signal)."""
        slots = np.unique(self.slot[self.fresh])
        if not slots.size:
            return 0.0
        return float(np.mean([np.nanstd(self.rewards[self.slot == k]) == 0 for k in slots]))


@dataclass(frozen=True)
class TrainedRollouts:
    """The rollouts a step trains on: `index` into the step's rollouts (grouped: group 0 first, slots in order inside
    a group), the training `group` of each, and the advantage statistics of each group (`baseline[g]` =
    (successes, rollouts) when its rollouts are > 0, else the group's own trained rollouts)."""

    index: np.ndarray
    group: np.ndarray
    baseline: np.ndarray  # float64[n_groups, 2]

    @property
    def n_groups(self) -> int:
        return int(self.group.max()) + 1 if self.group.size else 0

    def group_sizes(self) -> np.ndarray:
        return np.bincount(self.group, minlength=self.n_groups)

    def weights(self, per_prompt: bool) -> np.ndarray:
        """Per-rollout factor on the advantages. Per prompt (paper Eq. 16's (1/G) sum_g (1/n_g) sum_j, relative to
        the per-rollout mean (1/R) sum_j): c = R / (G n_g), so every group has the same total weight; per rollout:
        1."""
        if not per_prompt or not self.index.size:
            return np.ones(self.index.size)
        sizes = self.group_sizes()
        return self.index.size / (np.count_nonzero(sizes) * sizes[self.group].astype(np.float64))


def trained_rollouts(batch: TrainingBatch, slot_of_rollout: np.ndarray, success: np.ndarray) -> TrainedRollouts:
    """Which rollouts train, in which group: every rollout of a trained slot, except that of a slot whose group keeps
    only part of it, the first-generated `kept_successes` successes and `kept_failures` failures train (PODS,
    Reinforce-Ada). `slot_of_rollout` and `success` (observe's rule) are per rollout, in generation order."""
    slot_of_rollout = np.asarray(slot_of_rollout, np.int64)
    success = np.asarray(success, bool)
    if np.bincount(slot_of_rollout, minlength=batch.n_rollouts.size).tolist() != batch.n_rollouts.tolist():
        raise ValueError("the policy's training batch does not match the rollouts generated for its plans")
    group = batch.group[slot_of_rollout]
    trained = group >= 0
    for j in np.flatnonzero((batch.group >= 0) & (batch.kept_successes + batch.kept_failures < batch.n_rollouts)):
        rows = np.flatnonzero(slot_of_rollout == j)
        wins, losses = rows[success[rows]], rows[~success[rows]]
        trained[rows] = False
        trained[wins[: batch.kept_successes[j]]] = trained[losses[: batch.kept_failures[j]]] = True
    index = np.flatnonzero(trained)
    index = index[np.argsort(group[index], kind="stable")]
    return TrainedRollouts(index, group[index], batch.baseline)


@dataclass
class PolicyStep:
    """Everything one policy step produced."""

    rollouts: StepRollouts
    batch: TrainingBatch
    trained: TrainedRollouts
    held: dict[int, StepRollouts]  # slot id -> rollouts the policy may train on later (keep them, e.g. in checkpoints)
    plans: list[Plan] = field(default_factory=list)
    policy_seconds: float = 0.0  # time inside the policy's plan / observe / training_batch

    @property
    def rollouts_generated(self) -> int:
        return int(self.rollouts.fresh.sum())


Generate = Callable[[Plan], Sequence[Any]]
Score = Callable[[Plan, Sequence[Any]], "Scores | np.ndarray"]


def run_policy_step(policy: Policy, state: PolicyState, generate: Generate, score: Score, *,
                    threshold: float = 0.5, held: dict[int, StepRollouts] | None = None,
                    on_plan: Callable[[Plan], None] | None = None) -> PolicyStep:
    """Run one whole policy step (every round until the policy is done) and return its rollouts and training batch.

    `generate(plan)` returns `plan.total` rollouts (slots in plan order, `plan.n_rollouts[i]` of slot i);
    `score(plan, rollouts)` returns their rewards (`Scores`, or an array of one reward per rollout). A reward above
    `threshold` is a success; an unscorable (NaN) reward counts as a failure. `held` holds the rollouts of the slots
    the policy kept from earlier steps (the previous step's `PolicyStep.held`). `on_plan` sees every plan before it
    is generated (logs). Every process of a distributed run must pass the same rewards, so that its policy state
    stays identical."""
    held = {} if held is None else held
    pieces, by_id, plans = [], {}, []
    first = 0  # the step slot of the round's first slot
    seconds = 0.0
    while True:
        t0 = time.perf_counter()
        plan = policy.plan(state)
        seconds += time.perf_counter() - t0
        plans.append(plan)
        if on_plan is not None:
            on_plan(plan)
        rollouts = list(generate(plan))
        if len(rollouts) != plan.total:
            raise ValueError(f"generate returned {len(rollouts)} rollouts; the plan has {plan.total}")
        scores = score(plan, rollouts)
        scores = scores if isinstance(scores, Scores) else Scores(np.asarray(scores))
        rewards = np.asarray(scores.rewards, np.float64).reshape(-1)
        if rewards.size != plan.total:
            raise ValueError(f"score returned {rewards.size} rewards; the plan has {plan.total} rollouts")
        t0 = time.perf_counter()
        done = policy.observe(state, rewards=np.nan_to_num(rewards, nan=0.0), threshold=threshold,
                              score_stats=scores.score_stats)
        seconds += time.perf_counter() - t0
        generated = StepRollouts(rollouts, rewards, first + plan.rollout_slots(), np.ones(plan.total, bool))
        pieces.append(generated)
        B = state.step
        for k in range(first, first + plan.prompt_ids.size):
            by_id[int(B.slot_id[k])] = generated.piece(np.flatnonzero(generated.slot == k))
        for j in range(first + plan.prompt_ids.size, int(B.vars["n_slots"])):  # slots that re-use rollouts
            source = int(B.source[j])
            found = by_id.get(source, held.get(source))
            if found is None:
                raise RuntimeError(f"the policy re-uses the rollouts of slot {source}, which the caller does not hold")
            pieces.append(found.as_slot(j))
        first = int(B.vars["n_slots"])
        if done:
            break
    step = StepRollouts.join(pieces)
    t0 = time.perf_counter()
    batch = policy.training_batch(state)
    seconds += time.perf_counter() - t0
    success = successes_from_rewards(np.nan_to_num(step.rewards, nan=0.0), threshold).astype(bool)
    trained = trained_rollouts(batch, step.slot, success)
    keep = set(state.held_slot_ids().tolist())
    kept = {i: r for i, r in {**held, **by_id}.items() if i in keep}
    return PolicyStep(step, batch, trained, kept, plans, seconds)


RECORD_COLUMNS = ("step", "round", "slot", "purpose", "prompt_id", "rollouts", "successes", "trained", "group",
                  "reused_from", "tokens", "mean_length", "clipped")


def step_records(step: PolicyStep, lengths: np.ndarray | None = None, clipped: np.ndarray | None = None,
                 threshold: float = 0.5) -> dict[str, np.ndarray]:
    """One row per slot of a finished step (the per-prompt records `cures calibrate` fits and a user audits):
    its step and round, the round's `purpose` ("reused" for a slot training on rollouts generated earlier), the
    prompt, the rollouts generated in it and their successes, how many of its rollouts train and in which group
    (-1: none), the slot id it re-uses (-1: none), and, given per-rollout completion `lengths` (tokens) and
    `clipped` flags (stopped at the length cap), the tokens generated, their mean and the clipped count."""
    batch, rollouts = step.batch, step.rollouts
    n_slots = batch.prompt_ids.size
    slot = rollouts.slot
    fresh = rollouts.fresh
    success = successes_from_rewards(np.nan_to_num(rollouts.rewards, nan=0.0), threshold).astype(bool)
    purposes = {p.round: p.purpose for p in step.plans}
    reused = batch.source >= 0
    lengths = np.zeros(len(rollouts)) if lengths is None else np.asarray(lengths, np.float64)
    clipped = np.zeros(len(rollouts), bool) if clipped is None else np.asarray(clipped, bool)
    generated = np.bincount(slot[fresh], minlength=n_slots)
    tokens = np.bincount(slot[fresh], weights=lengths[fresh], minlength=n_slots)
    trained = np.bincount(slot[step.trained.index], minlength=n_slots)
    return {
        "step": np.full(n_slots, step.plans[0].step if step.plans else -1, np.int64),
        "round": batch.round.astype(np.int64),
        "slot": np.arange(n_slots, dtype=np.int64),
        "purpose": np.array(["reused" if reused[j] else purposes.get(int(batch.round[j]), "train")
                             for j in range(n_slots)], dtype=object),
        "prompt_id": batch.prompt_ids.astype(np.int64),
        "rollouts": generated.astype(np.int64),
        "successes": np.bincount(slot[fresh & success], minlength=n_slots).astype(np.int64),
        "trained": trained.astype(np.int64),
        "group": batch.group.astype(np.int64),
        "reused_from": batch.source.astype(np.int64),
        "tokens": tokens.astype(np.int64),
        "mean_length": np.divide(tokens, generated, out=np.full(n_slots, np.nan), where=generated > 0),
        "clipped": np.bincount(slot[fresh & clipped], minlength=n_slots).astype(np.int64),
    }


def step_metrics(step: PolicyStep, state: PolicyState, records: dict | None = None) -> dict[str, float]:
    """A finished step's tracking metrics under `cures/...` names, the same for every backend: the policy's own group
    statistics (a backend's built-in ones assume equal groups), and, given the step's `records` (`step_records`),
    the rollouts and generated tokens of each round purpose (`cures/rollouts/screen`, `cures/tokens/train`, ...)."""
    batch, trained = step.batch, step.trained
    sizes = trained.group_sizes() if trained.index.size else np.zeros(1)
    metrics = {
        "cures/zero_variance_fraction": step.rollouts.zero_variance_fraction(),  # every generated slot
        "cures/rollouts_generated": float(batch.rollouts_generated),
        "cures/rollouts_trained": float(trained.index.size),
        # NaN rewards (a reward function's None, a failed session): failures for the posterior, counted here
        "cures/unscorable_rollouts": float(np.isnan(step.rollouts.rewards[step.rollouts.fresh]).sum()),
        "cures/rounds": float(batch.round.max() + 1) if batch.round.size else 0.0,
        "cures/rollouts_per_prompt": float(sizes.mean()),  # per trained group
        "cures/rollouts_per_prompt_max": float(sizes.max()),
        "cures/mean_p_hat": float(state.posterior_mean().mean()),
        "cures/rollouts_total": float(state.rollouts_total),
        "cures/policy_seconds": step.policy_seconds,
    }
    ess = state.sampling_ess()
    if ess is not None:
        metrics["cures/sampling_ess"] = ess
    if records is not None:
        for purpose in sorted(set(records["purpose"].tolist()) - {"reused"}):
            rows = records["purpose"] == purpose
            metrics[f"cures/rollouts/{purpose}"] = float(records["rollouts"][rows].sum())
            metrics[f"cures/tokens/{purpose}"] = float(records["tokens"][rows].sum())
    return metrics
