"""`CuresGRPOConfig`: TRL's `GRPOConfig` plus the policy that picks prompts and rollouts per prompt.

Every GRPOConfig field keeps TRL's meaning, with three exceptions that follow from variable group sizes:
- `num_generations` no longer fixes a group size (the policy does); it only sets the default
  `rollouts_per_step = prompts_per_step x num_generations`. TRL's internal group size is replaced by a dummy.
- `num_generations_eval` is the k of the sampled `avg@k` evaluation (unset: no sampled evaluation).
- `per_device_train_batch_size` bounds the completions per forward/backward; a policy step's trained batch of any size
  is processed in micro-batches of at most this many rows that accumulate into one optimizer step.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from trl import GRPOConfig

from cures.backends.advantages import ESTIMATORS, SCALES, WEIGHTINGS
from cures.backends.trl.microbatch import LOSS_TYPES
from cures.renamed import refuse_renamed


def _choice(name: str, value, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(str, allowed))}; got {value!r}")


@dataclass
class CuresGRPOConfig(GRPOConfig):
    """GRPOConfig with a `cures` policy: `policy` (a name of `cures policies`), `policy_params` (its own parameters),
    `prompts_per_step` (m) and `rollouts_per_step` (the budget N); see the module docstring for the fields whose
    meaning changes."""

    policy: str = field(default="cures", metadata={"help": "Prompt and rollout policy (see `cures policies`)."})
    policy_params: dict | str | None = field(
        default=None,
        metadata={"help": "The policy's own parameters, a mapping (YAML) or a JSON object string, e.g. "
                  "'{\"tau\": 0.2}'."},
    )
    prompts_per_step: int = field(default=8, metadata={"help": "Prompts per policy step (m)."})
    rollouts_per_step: int | None = field(
        default=None,
        metadata={"help": "Rollouts per policy step (the budget N; fixed-n policies get n = N / m, PODS generates 4n "
                  "and trains n, Pilot-Commit splits n into pilot and commit). Default: prompts_per_step x "
                  "num_generations."},
    )
    estimator: str = field(default="grpo", metadata={"help": "Advantage estimator: grpo (with scale_rewards) or "
                                                     "rloo."})
    weighting: str = field(
        default="policy",
        metadata={"help": "Prompt weighting in the loss: policy (the policy's own), prompt (Eq. 16's per-prompt "
                  "mean) or rollout (TRL's)."},
    )
    score_norms: bool = field(
        default=False,
        metadata={"help": "Measure per-response score norms on screening rounds for Eq. 21 (one backward pass "
                  "per response; not with LoRA or sharded parameters)."},
    )
    success_threshold: float = field(
        default=0.5, metadata={"help": "A combined reward above this counts as a success for the posterior and "
                               "for evaluation accuracy."},
    )
    reward_timeout: float | None = field(
        default=None,
        metadata={"help": "Seconds one scoring call of the reward functions may take (a batch of completions) before "
                  "the step stops with an error naming the function running then (None: no limit; main process "
                  "thread, POSIX only)."},
    )
    generation_chunk_size: int | None = field(
        default=None,
        metadata={"help": "Completions generated per process per call. Default: per_device_train_batch_size x "
                  "steps_per_generation with transformers generation, a whole round with vLLM."},
    )
    eval_greedy: bool = field(
        default=True, metadata={"help": "Evaluate greedy accuracy (one completion per problem, temperature 0)."},
    )

    def __post_init__(self):
        import math

        if isinstance(self.policy_params, str):
            try:
                self.policy_params = json.loads(self.policy_params)
            except json.JSONDecodeError as exc:
                raise ValueError(f"policy_params must be a JSON object; got {self.policy_params!r} ({exc.msg})"
                                 ) from None
        self.policy_params = dict(self.policy_params or {})
        if not all(isinstance(k, str) for k in self.policy_params):
            raise ValueError(f"policy_params keys must be parameter names; got {self.policy_params!r}")
        refuse_renamed(self.policy_params, "policy_params: ", moved=True)
        for key in ("rollouts_per_step", "prompts_per_step"):
            if key in self.policy_params:
                raise ValueError(f"policy_params may not set {key!r}: use rollouts_per_step / prompts_per_step")
        _choice("estimator", self.estimator, ESTIMATORS)
        _choice("loss_type", self.loss_type, LOSS_TYPES)
        self.scale_rewards = {True: "group", False: "none"}.get(self.scale_rewards, self.scale_rewards)
        _choice("scale_rewards", self.scale_rewards, SCALES)
        _choice("weighting", self.weighting, WEIGHTINGS)
        if not (isinstance(self.success_threshold, int | float) and math.isfinite(self.success_threshold)):
            raise ValueError(f"success_threshold must be a finite number; got {self.success_threshold!r}")
        if self.reward_timeout is not None and not (isinstance(self.reward_timeout, int | float)
                                                    and math.isfinite(self.reward_timeout) and self.reward_timeout > 0):
            raise ValueError(f"reward_timeout must be a positive number of seconds; got {self.reward_timeout!r}")
        if self.max_steps == 0 or self.max_steps < -1:
            raise ValueError(f"max_steps must be at least 1 (or -1: train num_train_epochs passes over the prompts);"
                             f" got {self.max_steps}")
        if self.max_steps == -1 and not self.num_train_epochs > 0:
            raise ValueError(f"num_train_epochs must be positive when max_steps is not set; got "
                             f"{self.num_train_epochs}")
        if self.prompts_per_step < 1:
            raise ValueError(f"prompts_per_step must be at least 1; got {self.prompts_per_step}")
        if self.num_generations is None or self.num_generations < 1:
            raise ValueError(f"num_generations must be at least 1; got {self.num_generations}")
        if self.rollouts_per_step is None:
            self.rollouts_per_step = self.prompts_per_step * self.num_generations
        if self.rollouts_per_step < 1:
            raise ValueError(f"rollouts_per_step must be at least 1; got {self.rollouts_per_step}")
        if self.generation_chunk_size is not None and self.generation_chunk_size < 1:
            raise ValueError(f"generation_chunk_size must be at least 1; got {self.generation_chunk_size}")
        if self.num_generations_eval is not None and self.num_generations_eval < 1:
            raise ValueError(f"num_generations_eval (avg@k) must be at least 1; got {self.num_generations_eval}")
        if self.per_device_train_batch_size < 1:
            raise ValueError(f"per_device_train_batch_size must be at least 1; got {self.per_device_train_batch_size}")
        self.build_policy()  # an unknown policy or parameter fails here, before any model is loaded
        if self.bf16 is None and not _cuda_bf16():
            self.bf16 = False  # TRL's default (bf16 unless fp16) cannot run on a CPU or an older GPU
        if not _has_accelerator():
            self.use_cpu = True  # so that several processes on a CPU-only machine form a gloo group
        self.avg_k = self.num_generations_eval  # sampled evaluation; TRL's own eval sampler is not used
        user_generations = self.num_generations
        self.num_generations = self.num_generations_eval = _dummy_group_size(self)
        super().__post_init__()
        self.num_generations_requested = user_generations

    def build_policy(self):
        """The policy this config names, with its parameters and the step's prompt and rollout budget."""
        from cures.policies import make_policy_for_budget

        try:
            return make_policy_for_budget(self.policy, self.prompts_per_step, self.rollouts_per_step,
                                          **self.policy_params)
        except TypeError as exc:  # a parameter the policy does not take
            raise ValueError(f"policy {self.policy!r}: {exc}") from None


def _cuda_bf16() -> bool:
    import torch

    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def _has_accelerator() -> bool:
    import torch

    xpu = getattr(torch, "xpu", None)
    return (torch.cuda.is_available() or torch.backends.mps.is_available()
            or bool(xpu is not None and xpu.is_available()))


def _dummy_group_size(cfg) -> int:
    """TRL insists on equal groups of `num_generations` (>= 2) dividing its generation batch; groups here come from
    the policy, so the smallest divisor >= 2 of that batch keeps TRL's checks and padding as small as possible."""
    if cfg.generation_batch_size is not None:
        batch = cfg.generation_batch_size
    else:
        world = _world_size()
        batch = cfg.per_device_train_batch_size * world * (cfg.steps_per_generation or cfg.gradient_accumulation_steps)
    for d in range(2, batch + 1):
        if batch % d == 0:
            return d
    raise ValueError(f"the generation batch (per_device_train_batch_size x processes x steps_per_generation = "
                     f"{batch}) must be at least 2")


def _world_size() -> int:
    import os

    return int(os.environ.get("WORLD_SIZE", "1"))  # set by accelerate launch / torchrun before the config is built
