"""A GRPOTrainer whose prompts and rollouts per prompt come from a `cures.policies` policy, planned at generation time.

TRL's dataloader is kept only as a clock. When TRL asks for a generation batch, `_generate_and_score_completions`
runs one whole policy step: it asks the policy for a plan from the current posterior (so no round is planned stale),
generates every planned rollout with TRL's own generation code (`_generate`: HF `generate` or vLLM), scores it with
TRL's reward code and reports the gathered rewards to the policy, identically on every process; a policy with
screening or refill rounds (cures-paper, dapo, speed, gvm, greso, cures-released) simply gets several rounds. The
rollouts the finished step trains on (`Policy.training_batch`) are then handed back to TRL's scoring path as if just
generated (no second generation), and the advantages are replaced by per-group ones (groups of unequal size, keyed by
the policy's training group, since a prompt can be drawn twice).

The overridden private methods (`_generate`, `_calculate_rewards`, `_generate_and_score_completions`,
`_generate_single_turn`, `_save_checkpoint`) are those of trl 1.16.0, checked by `compat.check_trl_version`.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from accelerate.utils import gather_object
from trl import GRPOTrainer

from backends.trl.advantages import ESTIMATORS, WEIGHTINGS, prompt_weights, slot_advantages
from backends.trl.compat import check_trl_version
from backends.trl.score_norms import response_score_norms, slot_score_stats
from cures.policies import Policy, PolicyState, TrainingBatch
from cures.posterior import successes_from_rewards

STATE_FILE = "policy_state.npz"
SUCCESS_THRESHOLD = 0.5  # a reward above this is a success for the posterior (math-verify gives 0 or 1)


def resume_point(output_dir) -> tuple[str, PolicyState] | None:
    """The newest checkpoint of `output_dir` that holds both TRL's state and the policy's, with that policy state.

    A checkpoint written up to the model but killed before the policy state is skipped, so a resumed run always
    continues from a consistent pair."""
    found = []
    for path in Path(output_dir).glob("checkpoint-*"):
        match = re.fullmatch(r"checkpoint-(\d+)", path.name)
        if match and (path / STATE_FILE).is_file() and (path / "trainer_state.json").is_file():
            found.append((int(match.group(1)), path))
    if not found:
        return None
    _, path = max(found)
    return str(path), PolicyState.load(path / STATE_FILE)


@dataclass
class Rollout:
    """One generated completion, as TRL's `_generate` returned it (token ids, decoded text, sampling log-probs)."""

    prompt_ids: list
    completion_ids: list
    completion: object
    logprobs: list | None


@dataclass
class StepRollouts:
    """Everything one policy step generated, in plan order over all rounds (one entry per rollout)."""

    rows: list  # dataset rows, with `_slot` (the slot in the step) added
    rollouts: list  # Rollout
    reward_matrix: torch.Tensor  # (rollouts, reward functions), NaN where a function gave no reward
    rewards: torch.Tensor  # the matrix combined with TRL's reward weights, NaN where unscorable
    slot: np.ndarray  # the step slot of every rollout


class CuresGRPOTrainer(GRPOTrainer):
    """GRPOTrainer with the policy's plan deciding which prompts are generated and how many rollouts each gets.

    `policy` and `policy_state` come from `cures.policies`; the training dataset needs a `prompt_id` column equal to
    the row number (the policy's prompt ids). `weighting="prompt"` folds the paper's per-prompt mean (Eq. 16) into the
    advantages, `"rollout"` keeps TRL's weighting, `"policy"` uses the policy's own. `estimator` is "grpo" (with
    TRL's `scale_rewards`: group = GRPO, none = Dr. GRPO, batch) or "rloo". `score_norms=True` measures per-response
    score norms on screening rounds for Eq. 21 (`score_norms.py`; one backward pass per response).
    """

    def __init__(self, *args, policy: Policy, policy_state: PolicyState, weighting: str = "policy",
                 estimator: str = "grpo", score_norms: bool = False, **kwargs):
        check_trl_version()
        if weighting not in WEIGHTINGS:
            raise ValueError(f"weighting must be one of {', '.join(WEIGHTINGS)}; got {weighting!r}")
        if estimator not in ESTIMATORS:
            raise ValueError(f"estimator must be one of {', '.join(ESTIMATORS)}; got {estimator!r}")
        super().__init__(*args, **kwargs)
        if self.tools or self.rollout_func is not None or self.environment_factories is not None:
            raise ValueError("CuresGRPOTrainer does not support tools, environments or a custom rollout_func")
        if self.multi_objective_aggregation != "sum_then_normalize":
            raise ValueError("CuresGRPOTrainer needs multi_objective_aggregation='sum_then_normalize'")
        self.policy = policy
        self.policy_state = policy_state
        per_prompt = policy.spec.loss_weighting == "per-prompt" if weighting == "policy" else weighting == "prompt"
        self.per_prompt_weighting = per_prompt
        self.estimator = estimator
        self.score_norms = score_norms
        self._replay = None  # (this rank's Rollouts, the gathered reward matrix) while TRL scores a finished step
        self.policy_seconds = 0.0  # time spent inside the policy's plan/observe/training_batch
        self.score_norm_seconds = 0.0  # time spent measuring score norms (score_norms=True)
        rank = self.accelerator.process_index
        self.plan_log = Path(self.args.output_dir) / f"plans.rank{rank}.jsonl"  # every rank's plans, for audits

    # -- TRL hooks (trl 1.16.0) ----------------------------------------------------------------------------------
    def _save_checkpoint(self, model, trial):
        """TRL's checkpoint, then the policy state beside it (written atomically; every process holds the same)."""
        super()._save_checkpoint(model, trial)
        if self.args.should_save:
            folder = os.path.join(self._get_output_dir(trial=trial), f"checkpoint-{self.state.global_step}")
            self.policy_state.save(os.path.join(folder, STATE_FILE))

    def _generate(self, prompts):
        """TRL's generation, or, while a finished step is being scored, the rollouts that step already generated."""
        if self._replay is None:
            return super()._generate(prompts)
        rollouts, _ = self._replay
        logprobs = [r.logprobs for r in rollouts]
        return ([r.prompt_ids for r in rollouts], [r.completion_ids for r in rollouts], None,
                [r.completion for r in rollouts], None if any(lp is None for lp in logprobs) else logprobs, {}, None,
                [])

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        """TRL's rewards (gathered over processes); replayed rollouts keep the rewards they were scored with."""
        if self._replay is not None:
            return self._replay[1].to(self.accelerator.device)
        return super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)

    def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
        """vLLM server mode sends one request per `num_generations` consecutive rows; rows here are already repeated
        n_i times, so every row asks for one completion (colocate mode and HF generate work per row anyway)."""
        if self.use_vllm and self.vllm_mode == "server":
            num_generations = 1
        return super()._generate_single_turn(prompt_ids, images, multimodal_fields, num_generations, has_tool_images)

    def _generate_and_score_completions(self, inputs):
        if not self.model.training:
            return super()._generate_and_score_completions(inputs)
        step = self._run_policy_step(chunk=len(inputs))
        t0 = time.perf_counter()
        batch = self.policy.training_batch(self.policy_state)
        self.policy_seconds += time.perf_counter() - t0
        index, groups = _trained_rollouts(batch, step.slot)
        rank, world = self.accelerator.process_index, self.accelerator.num_processes
        # TRL needs the same row count on every process, a multiple of its (dummy) group size, and local rows that
        # split evenly into its steps_per_generation pieces: pad with masked copies that carry no loss
        quantum = self.num_generations * world * self.args.steps_per_generation
        size = -(-max(index.size, 1) // quantum) * quantum
        padded = np.resize(index if index.size else np.arange(len(step.rows)), size)  # cycles through the rows
        local = padded.size // world
        mine = padded[rank * local : (rank + 1) * local]
        self._replay = ([step.rollouts[i] for i in mine], step.reward_matrix[padded])
        try:
            out = super()._generate_and_score_completions([step.rows[i] for i in mine])
        finally:
            self._replay = None

        rewards = step.rewards[index]
        keys = torch.as_tensor(groups)
        adv = torch.zeros(padded.size)
        if index.size:
            adv[: index.size] = slot_advantages(rewards, keys, scale=self.args.scale_rewards,
                                                estimator=self.estimator)
            if self.per_prompt_weighting:
                adv[: index.size] *= prompt_weights(keys)
        out["advantages"] = adv[rank * local : (rank + 1) * local].to(out["advantages"].device)
        if padded.size > index.size:  # the same on every process: the gather below is collective
            filler = torch.arange(rank * local, (rank + 1) * local) >= index.size
            out["completion_mask"][filler.to(out["completion_mask"].device)] = 0
            out["num_items_in_batch"] = self.accelerator.gather(out["completion_mask"].sum()).sum()
        self._log_step_metrics(step, batch, index, keys)
        return out

    # -- one policy step ---------------------------------------------------------------------------------------
    def _run_policy_step(self, chunk: int) -> StepRollouts:
        """Plan, generate, score and observe rounds until the policy's step is done; generation runs in pieces of
        at most `chunk` rows per process."""
        rows, rollouts, matrices, combined, slots = [], [], [], [], []
        first_slot = 0
        while True:
            t0 = time.perf_counter()
            plan = self.policy.plan(self.policy_state)
            self.policy_seconds += time.perf_counter() - t0
            self._log_plan(plan)
            round_rows = [dict(self.train_dataset[int(x)], _slot=first_slot + k)
                          for k, x in enumerate(plan.prompt_ids) for _ in range(int(plan.n_rollouts[k]))]
            round_rollouts, matrix, norms = self._generate_round(round_rows, chunk, plan.purpose == "screen")
            rewards = _combined_rewards(matrix, self.reward_weights)
            scored = torch.nan_to_num(rewards, nan=0.0).numpy()  # unscorable rollouts count as failures
            stats = None
            if norms is not None:
                correct = successes_from_rewards(scored, SUCCESS_THRESHOLD).astype(bool)  # observe's own rule
                stats = slot_score_stats(norms, correct, plan.rollout_slots(), plan.prompt_ids.size)
            t0 = time.perf_counter()
            done = self.policy.observe(self.policy_state, rewards=scored, threshold=SUCCESS_THRESHOLD,
                                       score_stats=stats)
            self.policy_seconds += time.perf_counter() - t0
            rows += round_rows
            rollouts += round_rollouts
            matrices.append(matrix)
            combined.append(rewards)
            slots.append(first_slot + plan.rollout_slots())
            first_slot += plan.prompt_ids.size
            if done:
                return StepRollouts(rows, rollouts, torch.cat(matrices), torch.cat(combined), np.concatenate(slots))

    def _generate_round(self, rows: list, chunk: int, measure_norms: bool):
        """Generate and score `rows` on all processes, `chunk` rows per process at a time; every process returns all
        rollouts (gathered, in row order), the gathered reward matrix and, if asked, the per-rollout score norms."""
        world, rank = self.accelerator.num_processes, self.accelerator.process_index
        rollouts, matrices, norms = [], [], []
        for start in range(0, len(rows), chunk * world):
            piece = rows[start : start + chunk * world]
            size = -(-len(piece) // world)  # equal shares: the last process may get copies, dropped below
            padded = piece + [piece[-1]] * (size * world - len(piece))
            mine = padded[rank * size : (rank + 1) * size]
            prompts = [row["prompt"] for row in mine]
            prompt_ids, completion_ids, _, completions, logprobs, _, _, _ = self._generate(prompts)
            local = [Rollout(*fields) for fields in zip(prompt_ids, completion_ids, completions,
                                                        logprobs or [None] * len(mine), strict=True)]
            matrix = self._calculate_rewards(mine, prompts, completions, completion_ids)
            rollouts += gather_object(local)[: len(piece)]
            matrices.append(matrix.float().cpu()[: len(piece)])
            if measure_norms and self.score_norms:
                t0 = time.perf_counter()
                model = self.accelerator.unwrap_model(self.model)
                norms += gather_object(response_score_norms(model, local))[: len(piece)]
                self.score_norm_seconds += time.perf_counter() - t0
        matrix = torch.cat(matrices) if matrices else torch.zeros(0, len(self.reward_funcs))
        return rollouts, matrix, np.asarray(norms) if measure_norms and self.score_norms else None

    # -- logs ----------------------------------------------------------------------------------------------------
    def _log_plan(self, plan) -> None:
        self.plan_log.parent.mkdir(parents=True, exist_ok=True)
        with self.plan_log.open("a") as fh:
            fh.write(json.dumps({"step": plan.step, "round": plan.round, "purpose": plan.purpose,
                                 "prompt_ids": plan.prompt_ids.tolist(), "n_rollouts": plan.n_rollouts.tolist()})
                     + "\n")

    def _log_step_metrics(self, step: StepRollouts, batch: TrainingBatch, index: np.ndarray,
                          groups: torch.Tensor) -> None:
        """TRL's group metrics assume equal groups of its dummy size; these are the policy's."""
        rewards = step.rewards.numpy()
        zero = [np.nanstd(rewards[step.slot == k]) == 0 for k in range(batch.prompt_ids.size)]
        sizes = np.bincount(groups.numpy()) if index.size else np.zeros(1)
        metrics = self._metrics["train"]
        metrics["cures/zero_variance_fraction"].append(float(np.mean(zero)))  # over every generated slot
        metrics["cures/rollouts_generated"].append(float(len(step.rows)))
        metrics["cures/rollouts_trained"].append(float(index.size))
        metrics["cures/rounds"].append(float(batch.round.max() + 1))
        metrics["cures/rollouts_per_prompt"].append(float(sizes.mean()))  # per trained group
        metrics["cures/rollouts_per_prompt_max"].append(float(sizes.max()))
        metrics["cures/mean_p_hat"].append(float(self.policy_state.posterior_mean().mean()))
        metrics["cures/rollouts_total"].append(float(self.policy_state.rollouts_total))
        ess = self.policy_state.sampling_ess()
        if ess is not None:
            metrics["cures/sampling_ess"].append(ess)


def _combined_rewards(matrix: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """TRL's weighted NaN-aware sum over reward functions; NaN where every function gave None (unscorable)."""
    rewards = (matrix.float().cpu() * weights.float().cpu().unsqueeze(0)).nansum(dim=1)
    rewards[torch.isnan(matrix).all(dim=1).cpu()] = float("nan")
    return rewards


def _trained_rollouts(batch: TrainingBatch, slot_of_rollout: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the rollouts the step trains on, grouped (group 0 first, slots in order inside a group), and the
    training group of each."""
    if np.bincount(slot_of_rollout, minlength=batch.n_rollouts.size).tolist() != batch.n_rollouts.tolist():
        raise RuntimeError("the policy's training batch does not match the rollouts generated for its plans")
    group = batch.group[slot_of_rollout]
    index = np.flatnonzero(group >= 0)
    index = index[np.argsort(group[index], kind="stable")]
    return index, group[index]
