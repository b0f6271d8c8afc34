"""One cures policy step in verl 0.9.1 V1 terms, as pure functions (no verl import).

verl's sync V1 trainer submits prompt rows to its agent loop, which runs `row["__rollout_n__"]` sessions per row
(`AgentLoopWorkerTQ._run_prompt`, `verl/trainer/ppo/v1/agent_loop_tq.py`) and writes each session's trajectory to
TransferQueue under the key `{uid}_{session}_{turn}`; a trajectory's reward is the sum of its `rm_scores`. The
mapping (`../shared/docs/verl-notes.md` §2):

- slot -> row: one verl prompt row per cures slot, with its own `uid` (a prompt drawn twice in a step is two rows,
  as the TRL backend keys by slot), `cures_prompt_id` (verl's own `index` defaults to 0) and `__rollout_n__`;
- a round's rollouts -> keys `{uid}_{s}_0` for s < n, slots in plan order: the order `run_policy_step` expects;
- rewards -> one per rollout, in that order (NaN where a key has no score: unscorable, a failure for the policy);
- training batch -> trained keys with cures' group ids, weights and baselines. verl's own estimators group by `uid`,
  which is wrong for policies whose groups span slots (SPEED, Reinforce-Ada, Pilot-Commit) or train part of a slot
  (PODS), and give a group of one its raw reward as advantage: a verl trainer must use these groups.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from cures.policies.core import Plan
from cures.policies.step import PolicyStep

ROLLOUT_N = "__rollout_n__"  # the per-prompt session count verl's agent loop pops from a row
PROMPT_ID = "cures_prompt_id"

__all__ = ["PROMPT_ID", "ROLLOUT_N", "TrainedKeys", "check_run_id", "key_advantages", "plan_rows",
           "rewards_in_plan_order", "rollout_keys", "slot_uids", "trained_keys"]


def check_run_id(run: str) -> str:
    """A uid prefix verl can parse back: its replay buffer takes a key's uid as `key.split("_")[0]`."""
    if not run or "_" in run:
        raise ValueError(f"the uid prefix must be non-empty and hold no '_' (verl splits keys on it); got {run!r}")
    return run


def slot_uids(plan: Plan, run: str = "cures") -> list[str]:
    """One uid per slot of a round, unique over a run (step, round, slot): TransferQueue keeps keys until they are
    cleared, and a held slot's rollouts (Pilot-Commit) stay there across steps under their first uid."""
    check_run_id(run)
    return [f"{run}-{plan.step}-{plan.round}-{k}" for k in range(plan.prompt_ids.size)]


def plan_rows(plan: Plan, run: str = "cures") -> dict[str, np.ndarray]:
    """The non-tensor columns of a round's prompt rows (the caller adds the dataset's own columns for
    `cures_prompt_id`): `uid`, `cures_prompt_id`, `__rollout_n__` (int64, >= 1: a slot always generates)."""
    return {"uid": np.array(slot_uids(plan, run), dtype=object),
            PROMPT_ID: plan.prompt_ids.astype(np.int64),
            ROLLOUT_N: plan.n_rollouts.astype(np.int64)}


def rollout_keys(rows: Mapping[str, np.ndarray]) -> list[str]:
    """The TransferQueue key of every rollout of these rows, slots in order: `{uid}_{session}_0` (single-turn)."""
    return [f"{uid}_{s}_0" for uid, n in zip(rows["uid"], rows[ROLLOUT_N], strict=True) for s in range(int(n))]


def rewards_in_plan_order(keys: Sequence[str], scores: Mapping[str, float]) -> np.ndarray:
    """One reward per key (the trajectory's summed `rm_scores`), NaN where the key has no score (a failed session)."""
    return np.array([scores.get(k, np.nan) for k in keys], np.float64)


@dataclass(frozen=True)
class TrainedKeys:
    """What verl trains on: `keys` (group 0 first), cures' `group` of each, the per-rollout `weight` (Eq. 16 when
    per prompt) and each group's `baseline` (successes, rollouts; (0, 0): the group's own rollouts)."""

    keys: list[str]
    group: np.ndarray
    weight: np.ndarray
    baseline: np.ndarray

    def untrained(self, generated: Sequence[str]) -> list[str]:
        """Keys generated in the step that do not train (to clear from TransferQueue, unless held)."""
        chosen = set(self.keys)
        return [k for k in generated if k not in chosen]


def trained_keys(step: PolicyStep, per_prompt: bool = False) -> TrainedKeys:
    """The trained rollouts of a step whose rollout records are TransferQueue keys (`generate` returned
    `rollout_keys`): a re-used slot's rollouts are the keys they were first written under."""
    index = step.trained.index
    return TrainedKeys([step.rollouts.rollouts[i] for i in index], step.trained.group.copy(),
                       step.trained.weights(per_prompt), step.trained.baseline.copy())


def key_advantages(keys: Sequence[str], rewards, trained: TrainedKeys, scale: str = "group", estimator: str = "grpo"):
    """One advantage per key of the batch verl trains on (any order, padding rows included): cures' group
    advantages (`cures.backends.advantages.slot_advantages`, with each group's pooled baseline) times the per-rollout
    weight, 0 for a key outside the policy's training batch (verl's `pad...` rows). `rewards` holds each key's
    summed `rm_scores`, in the order of `keys`."""
    import torch

    from cures.backends.advantages import slot_advantages

    position = {k: i for i, k in enumerate(trained.keys)}
    rows = [j for j, k in enumerate(keys) if k in position]
    at = np.array([position[keys[j]] for j in rows], np.int64)
    out = torch.zeros(len(keys), dtype=torch.float32)
    if not rows:
        return out
    r = torch.as_tensor(np.asarray(rewards, np.float64)[rows])
    adv = slot_advantages(r, torch.as_tensor(trained.group[at]), scale=scale, estimator=estimator,
                          baseline=torch.as_tensor(trained.baseline))
    out[rows] = (adv * torch.as_tensor(trained.weight[at])).to(torch.float32)
    return out
