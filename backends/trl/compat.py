"""The one place that knows which TRL this backend was written against, and how it re-enters TRL's private code.

`CuresGRPOTrainer` calls back into `GRPOTrainer` in two ways, each a context manager here:
- `ReEntry.replaying(rollouts, reward_matrix)`: TRL's `_generate_and_score_completions` runs on rollouts the policy
  step already generated; while it does, the trainer's `_generate` returns them (as TRL's tuple, built by name from
  `GenerateOutput`) and `_calculate_rewards` returns the rewards they were scored with.
- `ReEntry.micro_batches(trainer, k)`: one TRL training piece runs as k gradient-accumulation micro-steps; TRL's
  accumulation count and `steps_per_generation` (its loss normaliser) are scaled by k while they run, and
  `ReEntry.loss_scaled(factor)` multiplies each micro-batch's loss (`microbatch.loss_multipliers`).
The trainer's overrides only read `ReEntry`'s state; nothing else sets it.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, NamedTuple

TRL_VERSION = "1.16.0"


def check_trl_version() -> None:
    """The backend overrides private GRPOTrainer methods of exactly this TRL release."""
    import trl

    if trl.__version__ != TRL_VERSION:
        raise ValueError(f"cures' TRL backend needs trl=={TRL_VERSION} (it overrides private GRPOTrainer methods); "
                         f"found trl {trl.__version__}: pip install 'cures[train]'")


class GenerateOutput(NamedTuple):
    """What trl 1.16's `GRPOTrainer._generate(prompts)` returns, by name (TRL unpacks it by position)."""

    prompt_ids: list
    completion_ids: list
    tool_mask: list | None
    completions: list
    logprobs: list | None
    extra_fields: dict
    images: list | None
    tool_images: list | None


def replayed_output(rollouts: list) -> GenerateOutput:
    """`GenerateOutput` for rollouts generated earlier (`.prompt_ids`, `.completion_ids`, `.completion`,
    `.logprobs`): sampling log-probs only when every rollout has them; no tools, no images (TRL then keeps the
    dataset's)."""
    logprobs = [r.logprobs for r in rollouts]
    return GenerateOutput([r.prompt_ids for r in rollouts], [r.completion_ids for r in rollouts], None,
                          [r.completion for r in rollouts], None if any(lp is None for lp in logprobs) else logprobs,
                          {}, None, [])


@dataclass
class ReEntry:
    """What the trainer's TRL overrides need to know while TRL's own code runs inside the trainer's."""

    replay: tuple[list, Any] | None = None  # (this process's rollouts, the gathered reward matrix)
    in_micro_batch: bool = False  # a prepared micro-batch is going through Trainer.training_step
    loss_multiplier: float = 1.0

    @contextlib.contextmanager
    def replaying(self, rollouts: list, reward_matrix):
        self.replay = (rollouts, reward_matrix)
        try:
            yield
        finally:
            self.replay = None

    @contextlib.contextmanager
    def micro_batches(self, trainer, k: int):
        """TRL's accumulation count and steps_per_generation scaled by k (restored after), micro-batch mode on."""
        ga, spg = trainer.current_gradient_accumulation_steps, trainer.args.steps_per_generation
        trainer.current_gradient_accumulation_steps, trainer.args.steps_per_generation = ga * k, spg * k
        self.in_micro_batch = True
        try:
            yield
        finally:
            self.in_micro_batch, self.loss_multiplier = False, 1.0
            trainer.current_gradient_accumulation_steps, trainer.args.steps_per_generation = ga, spg

    @contextlib.contextmanager
    def loss_scaled(self, factor: float):
        self.loss_multiplier = factor
        try:
            yield
        finally:
            self.loss_multiplier = 1.0
