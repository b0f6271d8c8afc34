"""A GRPOTrainer whose prompts and rollouts per prompt come from a `cures.policies` policy, planned at generation time.

TRL's dataloader is kept only as a clock. Every generation round, `_generate_and_score_completions` asks the policy for
a plan from the current posterior (so no round is planned stale), repeats prompt i n_i times in plan order (rank r
takes rows [r L, (r + 1) L), as TRL slices), lets TRL generate and score, then replaces the advantages with per-slot
ones (groups of unequal size, keyed by the slot, since a prompt can be drawn twice) and reports the gathered rewards to
the policy, identically on every process. The overridden private methods are those of trl 1.16.0 (`compat`).

Not yet supported: policies whose step has screening or refill rounds, or whose training round does not have exactly
the generation batch's rollouts; they are refused with a clear error.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import numpy as np
import torch
from accelerate.utils import gather_object
from trl import GRPOTrainer

from backends.trl.advantages import prompt_weights, slot_advantages
from backends.trl.compat import check_trl_version
from cures.policies import Policy, PolicyState

SINGLE_ROUND = {"grpo", "cures", "cures-sampling", "cures-allocation", "mopps", "knapsack"}
STATE_FILE = "policy_state.npz"


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


class CuresGRPOTrainer(GRPOTrainer):
    """GRPOTrainer with the policy's plan deciding which prompts are generated and how many rollouts each gets.

    `policy` and `policy_state` come from `cures.policies`; the training dataset needs a `prompt_id` column equal to
    the row number (the policy's prompt ids). `weighting="prompt"` folds the paper's per-prompt mean (Eq. 16) into the
    advantages, `"rollout"` keeps TRL's weighting, `"policy"` uses the policy's own.
    """

    def __init__(self, *args, policy: Policy, policy_state: PolicyState, weighting: str = "policy", **kwargs):
        check_trl_version()
        if policy.name not in SINGLE_ROUND:
            raise ValueError(f"the TRL backend does not run {policy.name!r} yet (screening or refill rounds); "
                             f"supported: {', '.join(sorted(SINGLE_ROUND))}")
        if weighting not in ("policy", "prompt", "rollout"):
            raise ValueError(f"weighting must be policy, prompt or rollout; got {weighting!r}")
        super().__init__(*args, **kwargs)
        self.policy = policy
        self.policy_state = policy_state
        per_prompt = policy.spec.loss_weighting == "per-prompt" if weighting == "policy" else weighting == "prompt"
        self.per_prompt_weighting = per_prompt
        self._gathered = None
        self.policy_seconds = 0.0  # time spent inside the policy's plan/observe
        rank = self.accelerator.process_index
        self.plan_log = Path(self.args.output_dir) / f"plans.rank{rank}.jsonl"  # every rank's plans, for audits

    # -- TRL hooks (trl 1.16.0) ----------------------------------------------------------------------------------
    def _save_checkpoint(self, model, trial):
        """TRL's checkpoint, then the policy state beside it (written atomically; every process holds the same)."""
        super()._save_checkpoint(model, trial)
        if self.args.should_save:
            folder = os.path.join(self._get_output_dir(trial=trial), f"checkpoint-{self.state.global_step}")
            self.policy_state.save(os.path.join(folder, STATE_FILE))

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        matrix = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        if self.model.training and inputs and "_slot" in inputs[0]:
            self._gathered = (matrix, torch.tensor(gather_object([row["_slot"] for row in inputs])))
        return matrix

    def _generate_and_score_completions(self, inputs):
        if not self.model.training:
            return super()._generate_and_score_completions(inputs)
        local = len(inputs)
        rank, world = self.accelerator.process_index, self.accelerator.num_processes
        t0 = time.perf_counter()
        plan = self.policy.plan(self.policy_state)
        self.policy_seconds += time.perf_counter() - t0
        self.plan_log.parent.mkdir(parents=True, exist_ok=True)
        with self.plan_log.open("a") as fh:
            fh.write(json.dumps({"step": plan.step, "round": plan.round, "prompt_ids": plan.prompt_ids.tolist(),
                                 "n_rollouts": plan.n_rollouts.tolist()}) + "\n")
        if plan.purpose != "train" or plan.total != local * world:
            raise ValueError(f"policy {self.policy.name!r} planned {plan.total} rollouts ({plan.purpose}); the "
                             f"generation batch holds {local * world}: set the policy's budget to it")
        rows = [dict(self.train_dataset[int(x)], _slot=k) for k, x in enumerate(plan.prompt_ids)
                for _ in range(int(plan.n_rollouts[k]))]
        out = super()._generate_and_score_completions(rows[rank * local : (rank + 1) * local])

        matrix, slots = self._gathered
        self._gathered = None
        rewards = (matrix * self.reward_weights.to(matrix.device).unsqueeze(0)).nansum(dim=1).float().cpu()
        rewards[torch.isnan(matrix).all(dim=1).cpu()] = float("nan")
        adv = slot_advantages(rewards, slots, scale=self.args.scale_rewards)
        if self.per_prompt_weighting:
            adv = adv * prompt_weights(slots)
        out["advantages"] = adv[rank * local : (rank + 1) * local].to(out["advantages"].device)
        # every process applies the same update from the same gathered rewards (unscorable rollouts count as failures)
        t0 = time.perf_counter()
        self.policy.observe(self.policy_state, rewards=torch.nan_to_num(rewards, nan=0.0).numpy())
        self.policy_seconds += time.perf_counter() - t0
        self._log_policy_metrics(plan, rewards, slots)
        return out

    def _log_policy_metrics(self, plan, rewards: torch.Tensor, slots: torch.Tensor) -> None:
        """TRL's group metrics assume equal groups; these are per slot."""
        r = rewards.numpy()
        s = slots.numpy()
        zero = [np.nanstd(r[s == k]) == 0 for k in range(plan.prompt_ids.size)]
        metrics = self._metrics["train"]
        metrics["cures/zero_variance_fraction"].append(float(np.mean(zero)))
        metrics["cures/rollouts_per_prompt"].append(float(plan.n_rollouts.mean()))
        metrics["cures/rollouts_per_prompt_max"].append(float(plan.n_rollouts.max()))
        metrics["cures/mean_p_hat"].append(float(self.policy_state.posterior_mean().mean()))
        metrics["cures/rollouts_total"].append(float(self.policy_state.rollouts_total))
