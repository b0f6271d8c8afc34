"""A cures policy inside verl 0.9.1's V1 trainer (sync mode): `CuresTrainer`, registered as trainer mode `cures`.

Each training step is one `cures.policies.step.run_policy_step`, run inside the replay buffer's `sample()` (so every
round of the step, screening, refills and pilots included, is generated under one weight version, before verl puts
the rollout replicas to sleep):

1. plan a round from the live posterior -> one verl prompt row per slot, with its own `uid` and `__rollout_n__`
   (`mapping.plan_rows`), dataset columns from `train_dataset[prompt_id]` -> `_submit_batch_to_rollout`;
2. wait until every row of the round is terminal in TransferQueue; read each rollout's summed `rm_scores`
   (`mapping.rewards_in_plan_order`; a failed session is an unscorable, failed rollout) -> `policy.observe`;
3. repeat while the policy asks for rounds; then the training batch -> exactly the trained keys
   (`mapping.trained_keys`); every other key of the step is cleared, except the rollouts the policy holds for a
   later step (Pilot-Commit's pilots), which stay in TransferQueue and go into checkpoints;
4. `_compute_advantage`: cures' advantages for groups of any size with pooled baselines and Eq. 16 weights
   (`mapping.key_advantages`), never verl's uid-grouped estimators (a group of one would get its raw reward).

The policy state (and the held rollouts) go into each `global_step_N/cures/` checkpoint folder before verl writes
`latest_checkpointed_iteration.txt`, so a checkpoint that verl resumes from always has them. Per-slot records
(`rollouts.parquet`, as `cures train --backend trl` writes) and `cures/...` tracking metrics (rollouts and tokens by
round purpose) come with every step.

What was checked, and how: `tests/verl_backend/` runs the replay buffer on a real TransferQueue with a fake agent loop,
and the trainer's hooks with verl's own CPU-stub pattern (`PPOTrainer.__new__`). An end-to-end run needs GPUs
(verl's resource pool and its vLLM/SGLang rollout servers) and has not been made here.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import transfer_queue as tq
from omegaconf import DictConfig, OmegaConf
from tensordict import TensorDict
from transfer_queue import KVBatchMeta
from verl.trainer.ppo.v1.replay_buffer import ReplayBuffer
from verl.trainer.ppo.v1.trainer_base import register_trainer
from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync
from verl.utils import tensordict_utils as tu
from verl.utils.dataset.rl_dataset import collate_fn
from verl.workers.utils.padding import response_to_nested

from cures._io import atomic_write
from cures.backends.advantages import ESTIMATORS, WEIGHTINGS
from cures.backends.verl.mapping import (
    PROMPT_ID,
    TrainedKeys,
    check_run_id,
    key_advantages,
    plan_rows,
    rewards_in_plan_order,
    rollout_keys,
    trained_keys,
)
from cures.policies import Policy, PolicyState, make_policy_for_budget
from cures.policies.step import PolicyStep, StepRollouts, run_policy_step, step_metrics, step_records
from cures.records import RECORDS, drop_steps_from, write_step
from cures.renamed import refuse_renamed

logger = logging.getLogger(__name__)

MODE = "cures"  # trainer.v1.trainer_mode
CHECKPOINT_DIR = "cures"  # inside verl's global_step_N folder
STATE_FILE = "policy_state.npz"
HELD_FILE = "held_rollouts.pt"
TERMINAL = ("finished", "failure")

__all__ = ["CuresReplayBuffer", "CuresSettings", "CuresTrainer", "MODE"]


# ----------------------------------------------------------------------------------------------------------------
# Settings: the `cures:` section of verl's config
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CuresSettings:
    """The `cures:` section of a verl config, validated: `policy` and its `params` (`cures policies`), `seed`,
    `success_threshold` (a reward above it is a success for the posterior), `weighting` (`policy`: the policy's own;
    `prompt`: Eq. 16; `rollout`: per rollout), `rollouts_per_step` (rollouts per step; default data.train_batch_size x
    actor_rollout_ref.rollout.n), `uid_prefix` and `poll_seconds` (how often TransferQueue is polled for a round's
    end). The advantage estimator is verl's own `algorithm.adv_estimator` (grpo or rloo) with
    `algorithm.norm_adv_by_std_in_grpo` (std scaling, or none as in Dr. GRPO)."""

    policy: str
    params: dict
    seed: int
    success_threshold: float
    weighting: str
    rollouts_per_step: int
    prompts_per_step: int
    estimator: str
    scale: str
    uid_prefix: str
    poll_seconds: float
    max_response_length: int

    @classmethod
    def from_config(cls, config: DictConfig) -> CuresSettings:
        section = config.get("cures", None)
        if section is None:
            raise ValueError("trainer.v1.trainer_mode=cures needs a `cures:` section (at least cures.policy)")
        c = OmegaConf.to_container(section, resolve=True)
        known = {"policy", "params", "seed", "success_threshold", "weighting", "rollouts_per_step", "uid_prefix",
                 "poll_seconds"}
        refuse_renamed(set(c) - known, prefix="cures.")
        stray = sorted(set(c) - known)
        if stray:
            raise ValueError(f"unknown cures.{stray[0]}; known: {', '.join(sorted(known))}")
        algorithm = config.algorithm
        estimator = str(algorithm.adv_estimator)
        if estimator not in ESTIMATORS:
            raise ValueError(f"algorithm.adv_estimator={estimator} is not supported with cures: its groups are the "
                             f"policy's; use one of {', '.join(ESTIMATORS)}")
        if algorithm.get("use_kl_in_reward", False):
            raise ValueError("algorithm.use_kl_in_reward is not supported with cures (the rewards are outcome "
                             "rewards per rollout); use actor_rollout_ref.actor.use_kl_loss")
        correction = algorithm.get("rollout_correction", None) or {}
        if correction.get("rollout_is") or correction.get("rollout_rs"):
            raise ValueError("algorithm.rollout_correction (rollout_is / rollout_rs) is not supported with cures")
        weighting = c.get("weighting", "policy")
        if weighting not in WEIGHTINGS:
            raise ValueError(f"cures.weighting must be one of {', '.join(WEIGHTINGS)}; got {weighting!r}")
        threshold = float(c.get("success_threshold", 0.5))
        poll = float(c.get("poll_seconds", 0.5))
        if not np.isfinite(threshold) or not np.isfinite(poll) or poll <= 0:
            raise ValueError("cures.success_threshold must be finite and cures.poll_seconds > 0")
        prompts_per_step = int(config.data.train_batch_size)
        rollouts_per_step = c.get("rollouts_per_step", None)
        if rollouts_per_step is None:
            rollouts_per_step = prompts_per_step * int(config.actor_rollout_ref.rollout.n)
        rollouts_per_step = int(rollouts_per_step)
        if "policy" not in c:
            raise ValueError("cures.policy is missing (one of `cures policies`)")
        return cls(policy=str(c["policy"]), params=dict(c.get("params") or {}), seed=int(c.get("seed", 0)),
                   success_threshold=threshold, weighting=weighting, rollouts_per_step=rollouts_per_step,
                   prompts_per_step=prompts_per_step,
                   estimator=estimator, scale="group" if algorithm.get("norm_adv_by_std_in_grpo", True) else "none",
                   uid_prefix=check_run_id(str(c.get("uid_prefix", "cures"))), poll_seconds=poll,
                   max_response_length=int(config.data.get("max_response_length", 0) or 0))

    def make_policy(self) -> Policy:
        return make_policy_for_budget(self.policy, prompts_per_step=self.prompts_per_step,
                                      rollouts_per_step=self.rollouts_per_step, **self.params)

    def per_prompt(self, policy: Policy) -> bool:
        return policy.spec.loss_weighting == "per-prompt" if self.weighting == "policy" else self.weighting == "prompt"


# ----------------------------------------------------------------------------------------------------------------
# The replay buffer: one policy step per sample()
# ----------------------------------------------------------------------------------------------------------------


class CuresReplayBuffer(ReplayBuffer):
    """verl's sync replay buffer whose training `sample()` runs one whole cures policy step (validation keeps verl's
    own sampling). `submit(rows)` registers and dispatches a round's prompt rows (the trainer's
    `_submit_plan_rows`); `bind` gives it the policy, its state and the settings once the dataset is known."""

    partition = "train"

    def __init__(self, submit, poll_seconds: float = 0.5):
        super().__init__(trainer_mode="sync", trainer_config=OmegaConf.create({}), max_off_policy_threshold=None,
                         max_off_policy_strategy="drop", sampler_kwargs=OmegaConf.create({}),
                         poll_interval=poll_seconds)
        self.submit = submit
        self.policy: Policy | None = None
        self.state: PolicyState | None = None
        self.settings: CuresSettings | None = None
        self.held: dict[int, StepRollouts] = {}  # slot id -> rollouts (TransferQueue keys) held for a later step
        self.current: TrainedKeys | None = None  # the training batch of the step being trained
        self.last_step: PolicyStep | None = None
        self.last_records: dict | None = None
        self._uids: list[str] = []  # prompt uids registered during the step

    def bind(self, policy: Policy, state: PolicyState, settings: CuresSettings, held=None) -> None:
        self.policy, self.state, self.settings = policy, state, settings
        self.held = dict(held or {})

    # -- the two callables of run_policy_step --------------------------------------------------------------------

    def generate(self, plan) -> list[str]:
        """Submit one round and wait until each of its rows is terminal; its rollouts are their TransferQueue keys."""
        rows = plan_rows(plan, self.settings.uid_prefix)
        uids = [str(u) for u in rows["uid"]]
        self._uids.extend(uids)
        self.submit(rows)
        self.wait_terminal(uids)
        return rollout_keys(rows)

    def score(self, plan, keys: list[str]) -> np.ndarray:
        """Each rollout's summed `rm_scores`; NaN for a key the agent loop never wrote (a failed session)."""
        written = self._tags()
        present = [k for k in keys if k in written]
        scores = {}
        if present:
            data = tq.kv_batch_get(keys=present, partition_id=self.partition, select_fields=["rm_scores"])
            scores = {k: float(v.sum().item()) for k, v in zip(present, list(data["rm_scores"]), strict=True)}
        return rewards_in_plan_order(keys, scores)

    def wait_terminal(self, uids: list[str]) -> None:
        waiting = set(uids)
        while True:
            items = self._items()
            waiting = {u for u in waiting if items.get(u, {}).get("status") not in TERMINAL}
            if not waiting:
                return
            time.sleep(self.poll_interval)

    def _items(self) -> dict[str, dict]:
        data = tq.kv_list(self.partition) or {}
        return data.get(self.partition, {})

    def _tags(self) -> dict[str, dict]:
        return {k: t for k, t in self._items().items() if not t.get("is_prompt", False)}

    # -- verl's entry point ----------------------------------------------------------------------------------------

    def sample(self, global_steps: int, partition_id: str, batch_size: int) -> tuple[KVBatchMeta, dict]:
        if partition_id != self.partition:
            return super().sample(global_steps, partition_id, batch_size)
        if self.policy is None:
            raise RuntimeError("CuresReplayBuffer.sample before bind(): the trainer binds it once its dataset exists")
        settings = self.settings
        self._uids = []
        before_held = {k for r in self.held.values() for k in r.rollouts}
        step = run_policy_step(self.policy, self.state, self.generate, self.score,
                               threshold=settings.success_threshold, held=self.held)
        tags = self._tags()
        trained = trained_keys(step, settings.per_prompt(self.policy))
        keep = [i for i, k in enumerate(trained.keys) if k in tags]  # a failed session has no trajectory to train
        trained = TrainedKeys([trained.keys[i] for i in keep], trained.group[keep], trained.weight[keep],
                              trained.baseline)
        now_held = {k for r in step.held.values() for k in r.rollouts}
        generated = set(step.rollouts.rollouts) | before_held
        batch_keys = list(trained.keys)
        if not batch_keys:  # nothing trains this step: one generated rollout with advantage 0 (a no-op update)
            batch_keys = [k for k in step.rollouts.rollouts if k in tags and k not in now_held][:1]
            if not batch_keys:
                raise RuntimeError(f"policy step {self.state.steps_done - 1} left no rollout in TransferQueue "
                                   "(every session failed?)")
        clear = sorted((generated - set(batch_keys) - now_held) & set(tags))
        tq.kv_clear(partition_id=self.partition, keys=[*self._uids, *clear])

        lengths = np.array([tags.get(k, {}).get("response_len", 0) for k in step.rollouts.rollouts], np.float64)
        cap = settings.max_response_length
        clipped = lengths >= cap if cap > 0 else np.zeros(lengths.size, bool)
        self.last_records = step_records(step, lengths, clipped, settings.success_threshold)
        self.held, self.current, self.last_step = step.held, trained, step
        metrics = step_metrics(step, self.state, self.last_records)
        return KVBatchMeta(partition_id=self.partition, keys=batch_keys, tags=[tags[k] for k in batch_keys]), metrics

    # -- checkpoints: the held rollouts live in TransferQueue, which verl's sync mode does not save ---------------

    def held_payload(self) -> dict:
        keys = [k for r in self.held.values() for k in r.rollouts]
        tags = self._tags()
        missing = [k for k in keys if k not in tags]
        if missing:
            raise RuntimeError(f"{len(missing)} held rollouts are no longer in TransferQueue (first: {missing[0]})")
        fields = tq.kv_batch_get(keys=keys, partition_id=self.partition) if keys else None
        return {"held": self.held, "keys": keys, "tags": [tags[k] for k in keys], "fields": fields}

    def restore_held(self, payload: dict) -> None:
        self.held = payload["held"]
        if payload["keys"]:
            tq.kv_batch_put(keys=payload["keys"], partition_id=self.partition, fields=payload["fields"],
                            tags=payload["tags"])


# ----------------------------------------------------------------------------------------------------------------
# The trainer
# ----------------------------------------------------------------------------------------------------------------


@register_trainer(MODE)
class CuresTrainer(PPOTrainerSync):
    """verl's sync V1 trainer with prompts, rollouts per prompt, trained rollouts and advantages from a cures policy
    (`trainer.v1.trainer_mode=cures` and a `cures:` config section; see `CuresSettings`)."""

    def __init__(self, config: DictConfig):
        self.cures = CuresSettings.from_config(config)
        super().__init__(config)
        self.trainer_mode = "sync"  # verl's sync code paths: no prompt persistence or re-issue in TransferQueue

    def _build_replay_buffer(self) -> CuresReplayBuffer:  # called by PPOTrainer.__init__, after self.cures is set
        return CuresReplayBuffer(self._submit_plan_rows, poll_seconds=self.cures.poll_seconds)

    def _init_dataloader(self):
        super()._init_dataloader()
        self._bind_policy()
        # verl counts an epoch as len(dataset) // train_batch_size steps; the policy decides what a step draws

    def _bind_policy(self) -> None:
        """A fresh policy state over the training set (a resumed run replaces it in `_load_checkpoint`)."""
        policy = self.cures.make_policy()
        self.replay_buffer.bind(policy, policy.init(len(self.train_dataset), seed=self.cures.seed), self.cures)

    def prepare_step(self) -> dict:
        return {}  # the whole policy step, first round included, runs in CuresReplayBuffer.sample

    def _submit_plan_rows(self, rows: dict[str, np.ndarray]) -> None:
        batch = collate_fn([self.train_dataset[int(i)] for i in rows[PROMPT_ID]])
        batch.update(rows)
        batch = tu.get_tensordict(batch)
        tu.assign_non_tensor_data(batch, "global_steps", self.global_steps)
        self._submit_batch_to_rollout(batch)

    def _compute_advantage(self, batch: KVBatchMeta, metrics: dict) -> KVBatchMeta:
        data = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id,
                               select_fields=["rm_scores", "response_mask"])
        rewards = np.array([float(v.sum().item()) for v in list(data["rm_scores"])], np.float64)
        adv = key_advantages(batch.keys, rewards, self.replay_buffer.current, scale=self.cures.scale,
                             estimator=self.cures.estimator)
        mask = data.to_padded_tensor()["response_mask"]
        scores = adv.unsqueeze(-1).to(torch.float32) * mask.to(torch.float32)
        nested = response_to_nested(scores, data["response_mask"])
        output = TensorDict({"advantages": nested, "returns": nested.clone()}, batch_size=len(batch))
        self._write_records()
        return tq.kv_batch_put(keys=batch.keys, partition_id=batch.partition_id, fields=output)

    # -- records and checkpoints -----------------------------------------------------------------------------------

    @property
    def records_dir(self) -> Path:
        return Path(self.config.trainer.default_local_dir) / RECORDS

    def _write_records(self) -> None:
        buffer = self.replay_buffer
        if buffer.last_step is not None and buffer.last_step.plans:
            write_step(self.records_dir, buffer.last_step.plans[0].step, buffer.last_records)

    def _step_folder(self) -> Path:
        trainer = self.config.trainer
        if trainer.resume_mode == "resume_path":
            return Path(trainer.resume_from_path)
        return Path(trainer.default_local_dir) / f"global_step_{self.global_steps}"

    def _save_checkpoint(self):
        self._save_policy(Path(self.config.trainer.default_local_dir) / f"global_step_{self.global_steps}")
        super()._save_checkpoint()  # writes latest_checkpointed_iteration.txt last

    def _load_checkpoint(self):
        super()._load_checkpoint()
        if self.global_steps > 0:
            self._load_policy(self._step_folder())

    def _save_policy(self, step_folder: Path) -> None:
        """The policy state and its held rollouts (read back from TransferQueue) into `step_folder/cures/`."""
        folder = Path(step_folder) / CHECKPOINT_DIR
        os.makedirs(folder, exist_ok=True)
        buffer = self.replay_buffer
        atomic_write(folder / HELD_FILE, lambda fh: torch.save(buffer.held_payload(), fh))
        buffer.state.save(folder / STATE_FILE)

    def _load_policy(self, step_folder: Path) -> None:
        """The policy state of a checkpoint, its held rollouts put back into TransferQueue, and the records of later
        steps dropped (they belong to the run that went on past this checkpoint)."""
        folder = Path(step_folder) / CHECKPOINT_DIR
        path = folder / STATE_FILE
        if not path.is_file():
            raise ValueError(f"{path}: this verl checkpoint has no cures policy state (was it written by the cures "
                             "trainer?)")
        buffer = self.replay_buffer
        state = PolicyState.load(path)
        buffer.bind(buffer.policy, state, self.cures)
        buffer.restore_held(torch.load(folder / HELD_FILE, weights_only=False))  # written by _save_policy
        drop_steps_from(self.records_dir, state.steps_done)
