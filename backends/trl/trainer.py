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
`_generate_single_turn`, `_prepare_inputs`, `_get_train_sampler`, `_save_checkpoint`) and `training_step` are those of
trl 1.16.0 and transformers 5.24.0, checked by `compat.check_trl_version`; how they re-enter TRL's own code is in
`compat.ReEntry`. The policy step itself (plan, generate, score, observe, training batch) is the framework-free
`cures.policies.step.run_policy_step`: this module only supplies TRL's generation and scoring to it.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import gc
import json
import logging
import os
import pickle
import re
import signal
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from accelerate.utils import DistributedType, gather_object
from torch.utils.data import IterableDataset, Sampler
from transformers import Trainer, TrainerCallback
from transformers.trainer_utils import rotate_checkpoints
from trl import GRPOTrainer

from cures._io import atomic_write, run_lock
from cures.backends.advantages import slot_advantages
from cures.backends.trl.compat import GenerateOutput, ReEntry, check_trl_version, replayed_output
from cures.backends.trl.config import CuresGRPOConfig
from cures.backends.trl.microbatch import LOSS_TYPES, REAL, loss_multipliers, micro_batches
from cures.backends.trl.score_norms import response_score_norms, slot_score_stats
from cures.policies import Plan, Policy, PolicyState
from cures.policies.step import PolicyStep, Scores, StepRollouts, run_policy_step, step_metrics, step_records
from cures.posterior import successes_from_rewards
from cures.records import RECORDS, drop_steps_from, write_step

STATE_FILE = "policy_state.npz"
HELD_FILE = "held_rollouts.pt"  # rollouts of the slots the policy holds for later steps (Pilot-Commit's pilots)
logger = logging.getLogger(__name__)


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
    """One generated completion: its dataset row, what TRL's `_generate` returned for it (token ids, decoded text,
    sampling log-probs) and, once scored, its reward per reward function (NaN where a function gave none)."""

    row: dict
    prompt_ids: list
    completion_ids: list
    completion: object
    logprobs: list | None
    reward_row: torch.Tensor | None = None


class RewardFunctionError(ValueError):
    """A reward function failed on a batch: it raised, or returned an infinite reward."""

    @classmethod
    def raised(cls, exc: BaseException, funcs, names, prompts) -> RewardFunctionError:
        """The error for `exc`, naming the reward function it came from (found in its traceback) and the batch."""
        codes = {_code_of(f): n for f, n in zip(funcs, names, strict=True)}
        name = next((codes[frame.f_code] for frame, _ in traceback.walk_tb(exc.__traceback__)
                     if frame.f_code in codes), None)
        who = f"reward function {name!r}" if name else "a reward function"
        reason = (str(exc).splitlines() or [""])[0] or type(exc).__name__
        what = reason if isinstance(exc, RewardTimeout) else f"raised {type(exc).__name__} ({reason})"
        return cls(f"{who} {what} on a batch of {len(prompts)} completions, the first for prompt "
                   f"{_short(prompts[0]) if prompts else '(none)'}")

    @classmethod
    def check_finite(cls, matrix: torch.Tensor, names, prompts, local: slice) -> None:
        """Raise if any reward is +-inf, naming the function and, when it is this process's row, the prompt."""
        bad = torch.isinf(matrix)
        if not bad.any():
            return
        row, col = (int(i) for i in torch.nonzero(bad)[0])
        value = float(matrix[row, col])
        where = (f"the completion of prompt {_short(prompts[row - local.start])}" if local.start <= row < local.stop
                 else f"row {row} of the gathered batch")
        raise cls(f"reward function {names[col]!r} returned {value} for {where}; a reward must be a finite number, "
                  "or None for an unscorable completion")


class RewardTimeout(Exception):
    """A scoring call ran past `reward_timeout`."""


@contextlib.contextmanager
def _time_limit(seconds: float | None):
    """Raise RewardTimeout in this (main) thread once `seconds` have passed (SIGALRM); no limit for None, off the
    main thread, or where there is no SIGALRM."""
    if seconds is None or threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGALRM"):
        yield
        return

    def expire(signum, frame):
        raise RewardTimeout(f"took longer than reward_timeout={seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _code_of(func):
    """The code object a call of this reward function runs (a function, a bound method, a partial, or an object
    with __call__)."""
    func = getattr(func, "func", func)  # functools.partial
    func = getattr(func, "__func__", func)  # bound method
    call = vars(type(func)).get("__call__")  # a callable object's method
    return getattr(func, "__code__", None) or getattr(call, "__code__", None)


def _short(prompt, width: int = 80) -> str:
    text = prompt[-1].get("content", "") if isinstance(prompt, list) and prompt and isinstance(prompt[-1], dict) \
        else str(prompt)
    text = " ".join(str(text).split())
    return repr(text if len(text) <= width else text[: width - 3] + "...")


def reward_matrix(rollouts: list, n_funcs: int) -> torch.Tensor:
    """(rollouts, reward functions) of scored rollouts."""
    return torch.stack([r.reward_row for r in rollouts]) if rollouts else torch.zeros(0, n_funcs)


class PolicyClock(Sampler):
    """TRL's dataloader only keeps time here (the policy picks the prompts at generation time): row indices, cycled,
    `length` of them per epoch, whatever the dataset's size."""

    def __init__(self, n_rows: int, length: int):
        self.n_rows, self.length = n_rows, length

    def __iter__(self):
        return (i % self.n_rows for i in range(self.length))

    def __len__(self) -> int:
        return self.length


PREEMPTED_EXIT = 75  # EX_TEMPFAIL: a preempted run, to be resumed (`--resume_from_checkpoint true`)


class Preemption(TrainerCallback):
    """SIGTERM (what SLURM and Kubernetes send before they kill) during training: the step in progress finishes,
    then a checkpoint is written (model, optimizer, scheduler, RNG, policy state, held rollouts) and training stops;
    `trainer.preempted` says so. Every process of a multi-process run stops at the same step (the flag is
    gathered). A second SIGTERM takes the default action at once."""

    def __init__(self, trainer):
        self.trainer = trainer

    def on_step_end(self, args, state, control, **kwargs):
        flag = torch.tensor([1.0 if self.trainer._sigterm else 0.0], device=self.trainer.accelerator.device)
        if self.trainer.accelerator.num_processes > 1:
            flag = self.trainer.accelerator.gather(flag)
        if bool(flag.max() > 0):
            self.trainer.preempted = True
            control.should_save = True
            control.should_training_stop = True
        return control


class CuresGRPOTrainer(GRPOTrainer):
    """A drop-in `GRPOTrainer` whose prompts, and rollouts per prompt, come from a `cures` policy.

    `args` is a `CuresGRPOConfig`; the policy and its state are built from it (`policy=` and `policy_state=` accept
    ready ones). Reward functions have TRL's signature; the training dataset is map-style with a `prompt` column
    (conversational or plain), one policy prompt id per row. Per policy step: every round is planned from the current
    posterior, generated with TRL's generation (transformers or vLLM), scored with TRL's reward code and observed by
    the policy identically on every process; the rollouts the step trains on are handed back to TRL's scoring path
    (no second generation) with advantages per training group of any size (`estimator`, `scale_rewards`,
    `weighting`), then trained in micro-batches of at most `per_device_train_batch_size` rows (`microbatch.py`).
    The policy state is saved in every checkpoint and restored by `train(resume_from_checkpoint=...)`.
    """

    def __init__(self, model, reward_funcs, args: CuresGRPOConfig | None = None, train_dataset=None,
                 eval_dataset=None, processing_class=None, reward_processing_classes=None, callbacks=None,
                 optimizers=(None, None), peft_config=None, policy: Policy | None = None,
                 policy_state: PolicyState | None = None, **kwargs):
        check_trl_version()
        if args is None:
            name = model if isinstance(model, str) else model.config._name_or_path
            args = CuresGRPOConfig(f"{name.split('/')[-1]}-CuresGRPO")
        if not isinstance(args, CuresGRPOConfig):
            raise ValueError("CuresGRPOTrainer needs args=CuresGRPOConfig(...) (a GRPOConfig with the policy's "
                             f"settings); got {type(args).__name__}")
        n_rows = _check_train_dataset(train_dataset, args.prompts_per_step)
        policy = policy if policy is not None else args.build_policy()
        state = policy_state if policy_state is not None else policy.init(n_rows, seed=args.seed)
        _check_state_fits(state, policy, n_rows, "policy_state")
        self.policy, self.policy_state = policy, state
        super().__init__(model=model, reward_funcs=reward_funcs, args=args, train_dataset=train_dataset,
                         eval_dataset=eval_dataset, processing_class=processing_class,
                         reward_processing_classes=reward_processing_classes, callbacks=callbacks,
                         optimizers=optimizers, peft_config=peft_config, **kwargs)
        if self.tools or self.rollout_func is not None or self.environment_factories is not None:
            raise ValueError("CuresGRPOTrainer does not support tools, environments or a custom rollout_func")
        if self.multi_objective_aggregation != "sum_then_normalize":
            raise ValueError("CuresGRPOTrainer needs multi_objective_aggregation='sum_then_normalize'")
        if self.loss_type not in LOSS_TYPES:
            raise ValueError(f"loss_type {self.loss_type!r} is not supported; use one of {', '.join(LOSS_TYPES)}")
        if args.score_norms:
            _check_score_norms_supported(self)
        weighting = args.weighting
        self.per_prompt_weighting = (policy.spec.loss_weighting == "per-prompt" if weighting == "policy"
                                     else weighting == "prompt")
        self.estimator = args.estimator
        self.score_norms = args.score_norms
        self._trl = ReEntry()  # how the overrides below behave while TRL's own code runs inside this trainer's
        self._held = {}  # slot id -> StepRollouts of the slots the policy holds for a later step
        self.policy_seconds = 0.0  # time spent inside the policy's plan/observe/training_batch
        self.score_norm_seconds = 0.0  # time spent measuring score norms (score_norms=True)
        self.eval_seconds = 0.0  # time spent in evaluate()
        rank = self.accelerator.process_index
        self.plan_log = Path(self.args.output_dir) / f"plans.rank{rank}.jsonl"  # every rank's plans, for audits
        self.records_dir = Path(self.args.output_dir) / RECORDS  # one row per slot of every step (cures.records)
        self._sigterm = False  # set by SIGTERM while train() runs (`Preemption`)
        self.preempted = False  # training stopped early on SIGTERM, with a checkpoint
        self.add_callback(Preemption(self))

    # -- training loop hooks (trl 1.16.0 / transformers 5.24.0) ---------------------------------------------------
    def _get_train_sampler(self, dataset=None):
        """One epoch = ceil(rows / prompts_per_step) policy steps; each takes steps_per_generation x num_iterations
        dataloader batches of generation_batch_size indices (TRL's clock)."""
        n = len(dataset if dataset is not None else self.train_dataset)
        steps = -(-n // self.args.prompts_per_step)
        per_step = self.args.steps_per_generation * self.num_iterations * self.args.generation_batch_size
        return PolicyClock(n, steps * per_step)

    def train(self, resume_from_checkpoint=None, trial=None, ignore_keys_for_eval=None, **kwargs):
        """TRL's training; `resume_from_checkpoint` (True: the newest checkpoint of output_dir holding a policy
        state, or a checkpoint path) also restores the policy state saved there."""
        if resume_from_checkpoint is not None and resume_from_checkpoint is not False:
            if resume_from_checkpoint is True or str(resume_from_checkpoint).lower() == "true":
                found = resume_point(self.args.output_dir)
                if found is None:
                    raise ValueError(f"resume_from_checkpoint: no checkpoint with a policy state in "
                                     f"{self.args.output_dir}")
                resume_from_checkpoint, state = found
            else:
                path = Path(resume_from_checkpoint) / STATE_FILE
                if not path.is_file():
                    raise ValueError(f"resume_from_checkpoint: {resume_from_checkpoint} holds no policy state "
                                     f"({STATE_FILE})")
                state = PolicyState.load(path)
            _check_state_fits(state, self.policy, len(self.train_dataset), f"checkpoint {resume_from_checkpoint}")
            self.policy_state = state
            self._held = _load_held(Path(resume_from_checkpoint), state)
        lock = run_lock(self.args.output_dir) if self.accelerator.is_main_process else contextlib.nullcontext()
        with lock, self._on_sigterm():  # one run per output_dir (a second is refused, naming the first)
            if self.accelerator.is_main_process:  # the records continue from the policy state, not past it
                drop_steps_from(self.records_dir, self.policy_state.steps_done)
            return super().train(resume_from_checkpoint=resume_from_checkpoint, trial=trial,
                                 ignore_keys_for_eval=ignore_keys_for_eval, **kwargs)

    @contextlib.contextmanager
    def _on_sigterm(self):
        """While training: the first SIGTERM asks `Preemption` to checkpoint and stop after this step; a second one
        gets the handler that was there before (by default: terminate)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = signal.getsignal(signal.SIGTERM)

        def handler(signum, frame):
            logger.warning("SIGTERM: finishing this step, then writing a checkpoint and stopping (a second SIGTERM "
                           "stops at once)")
            self._sigterm = True
            signal.signal(signal.SIGTERM, previous)

        signal.signal(signal.SIGTERM, handler)
        try:
            yield
        finally:
            signal.signal(signal.SIGTERM, previous)

    def end(self):
        """TRL's end (trackers finished, process group destroyed), after every process has dropped its DDP wrapper
        while the group is still alive: a gloo group destroyed under a live DDP reducer hangs or aborts
        ("terminate called without an active exception") when the reducer is freed at exit."""
        if self.accelerator.num_processes > 1:
            from torch.nn.parallel import DistributedDataParallel

            self.accelerator.wait_for_everyone()
            self.model_wrapped = self.model
            self.accelerator._models = [self.accelerator.unwrap_model(m) for m in self.accelerator._models]
            left = live_instances(DistributedDataParallel)
            if left:
                logger.warning(f"{left} DistributedDataParallel wrapper(s) still referenced at the end of training")
            self.accelerator.wait_for_everyone()
        super().end()

    def _save_checkpoint(self, model, trial):
        """TRL's checkpoint, then the policy state beside it (written atomically; every process holds the same),
        then TRL's rotation of old checkpoints. The policy state marks a checkpoint complete (`resume_point`), so
        the rotation (`save_total_limit`), which TRL runs at the end of its own checkpoint, is held back until the
        new one is complete: a run killed while writing it still has the previous complete checkpoint."""
        limit = self.args.save_total_limit
        self.args.save_total_limit = None
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self.args.save_total_limit = limit
        if self.args.should_save:
            run_dir = self._get_output_dir(trial=trial)
            folder = os.path.join(run_dir, f"checkpoint-{self.state.global_step}")
            if self._held:  # before the policy state
                atomic_write(os.path.join(folder, HELD_FILE), lambda fh: torch.save(self._held, fh))
            self.policy_state.save(os.path.join(folder, STATE_FILE))
            rotate_checkpoints(output_dir=run_dir, save_total_limit=limit,
                               best_model_checkpoint=self.state.best_model_checkpoint, use_mtime=True)

    def training_step(self, model, inputs, num_items_in_batch):
        """TRL's training step, with the piece TRL serves cut into micro-batches of at most
        `per_device_train_batch_size` rows, each one more gradient-accumulation micro-step (`microbatch.py`)."""
        t0 = time.perf_counter()
        model.train()  # as Trainer.training_step does, before generation: a loaded model starts in eval mode
        if hasattr(self.optimizer, "train") and callable(self.optimizer.train):
            self.optimizer.train()
        piece = self._prepare_inputs(inputs)  # generates a policy step when TRL's schedule says so
        pieces = micro_batches(piece, self.args.per_device_train_batch_size)
        factors = loss_multipliers(self.loss_type, pieces)
        k, sync = len(pieces), self.accelerator.sync_gradients
        deepspeed = self.accelerator.distributed_type == DistributedType.DEEPSPEED
        total = None
        try:
            with self._trl.micro_batches(self, k):
                for i, (micro, factor) in enumerate(zip(pieces, factors, strict=True)):
                    last = i == k - 1
                    self.accelerator.gradient_state._set_sync_gradients(sync and last)
                    context = contextlib.nullcontext() if last or deepspeed else self.accelerator.no_sync(model)
                    with context, self._trl.loss_scaled(factor):
                        loss = Trainer.training_step(self, model, micro, num_items_in_batch)
                    total = loss if total is None else total + loss
        finally:
            self.accelerator.gradient_state._set_sync_gradients(sync)
        self._step += 1  # GRPOTrainer.training_step's bookkeeping, once per TRL micro-step
        self._current_train_step_time += time.perf_counter() - t0
        if self._step % self.current_gradient_accumulation_steps == 0:
            self._metrics["train"]["step_time"].append(self._current_train_step_time)
            self._current_train_step_time = 0.0
        return total

    def _prepare_inputs(self, generation_batch):
        if self._trl.in_micro_batch:  # an already prepared micro-batch
            return generation_batch
        return super()._prepare_inputs(generation_batch)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        return loss * self._trl.loss_multiplier if self._trl.in_micro_batch else loss

    # -- generation and scoring hooks ---------------------------------------------------------------------------
    def _generate(self, prompts):
        """TRL's generation, or, while a finished step is being scored, the rollouts that step already generated."""
        if self._trl.replay is None:
            return super()._generate(prompts)
        return replayed_output(self._trl.replay[0])

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        """TRL's rewards (gathered over processes); replayed rollouts keep the rewards they were scored with. A
        reward function that raises, or returns an infinite reward (which would pass as a success and turn the
        advantages into NaN), stops the step with a `RewardFunctionError` naming it and the prompt; None and NaN
        stay unscorable, as in TRL (`cures/unscorable_rollouts` counts them)."""
        if self._trl.replay is not None:
            return self._trl.replay[1].to(self.accelerator.device)
        try:
            with _time_limit(self.args.reward_timeout):
                matrix = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        except Exception as exc:
            if isinstance(exc, RewardFunctionError):
                raise
            raise RewardFunctionError.raised(exc, self.reward_funcs, self.reward_func_names, prompts) from exc
        rank = self.accelerator.process_index
        local = slice(rank * len(prompts), (rank + 1) * len(prompts))
        RewardFunctionError.check_finite(matrix, self.reward_func_names, prompts, local)
        return matrix

    def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
        """vLLM server mode sends one request per `num_generations` consecutive rows; rows here are already repeated
        n_i times, so every row asks for one completion (colocate mode and HF generate work per row anyway)."""
        if self.use_vllm and self.vllm_mode == "server":
            num_generations = 1
        return super()._generate_single_turn(prompt_ids, images, multimodal_fields, num_generations, has_tool_images)

    def _generate_and_score_completions(self, inputs):
        if not self.model.training:
            return super()._generate_and_score_completions(inputs)
        step = self._run_policy_step(chunk=self._generation_chunk(len(inputs)))
        rollouts, trained = step.rollouts, step.trained
        if not len(rollouts):
            raise RuntimeError(f"the policy generated no rollouts in step {self.policy_state.steps_done - 1}: every "
                               "prompt it may draw is excluded or skipped, so there is nothing left to train on")
        index = trained.index
        rank, world = self.accelerator.process_index, self.accelerator.num_processes
        # TRL needs the same row count on every process, a multiple of its (dummy) group size, and local rows that
        # split evenly into its steps_per_generation pieces: pad with masked copies that carry no loss
        quantum = self.num_generations * world * self.args.steps_per_generation
        size = -(-max(index.size, 1) // quantum) * quantum
        padded = np.resize(index if index.size else np.arange(len(rollouts)), size)  # cycles through the rows
        local = padded.size // world
        mine = [rollouts.rollouts[i] for i in padded[rank * local : (rank + 1) * local]]
        matrix = reward_matrix([rollouts.rollouts[i] for i in padded], len(self.reward_funcs))
        with self._trl.replaying(mine, matrix):
            out = super()._generate_and_score_completions([r.row for r in mine])

        adv = torch.zeros(padded.size)
        if index.size:
            rewards = torch.as_tensor(rollouts.rewards[index], dtype=torch.float32)
            adv[: index.size] = slot_advantages(rewards, torch.as_tensor(trained.group), scale=self.args.scale_rewards,
                                                estimator=self.estimator, baseline=trained.baseline)
            adv[: index.size] *= torch.as_tensor(trained.weights(self.per_prompt_weighting), dtype=torch.float32)
        out["advantages"] = adv[rank * local : (rank + 1) * local].to(out["advantages"].device)
        real = torch.arange(rank * local, (rank + 1) * local) < index.size
        out[REAL] = real.to(out["completion_mask"].device)
        if padded.size > index.size:  # the same on every process: the gather below is collective
            out["completion_mask"][~out[REAL]] = 0
            out["num_items_in_batch"] = self.accelerator.gather(out["completion_mask"].sum()).sum()
        self._replace_trl_group_metrics(rollouts, padded.size, adv, index)
        self._log_step_metrics(step)
        self._write_records(step)
        return out

    def _generation_chunk(self, rows: int) -> int | None:
        """Rows per process per generation call: the config's, else the whole round with vLLM, else TRL's local
        generation batch."""
        if self.args.generation_chunk_size is not None:
            return self.args.generation_chunk_size
        return None if self.use_vllm else rows

    # -- evaluation ------------------------------------------------------------------------------------------------
    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict:
        """Accuracy on the evaluation set: greedy (`eval_greedy`, one completion per problem) and sampled avg@k
        (k = `num_generations_eval`, at the training temperature), generated in batches of
        `per_device_eval_batch_size` per process with TRL's generation (vLLM when on). A completion is correct when
        its combined reward exceeds `success_threshold`. Logged through the trainer, so every tracker gets it."""
        dataset = eval_dataset if eval_dataset is not None else self.eval_dataset
        if dataset is None:
            raise ValueError("evaluation needs an eval_dataset")
        if isinstance(dataset, dict):
            metrics = {}
            for name, part in dataset.items():
                metrics.update(self.evaluate(part, ignore_keys, f"{metric_key_prefix}_{name}"))
            return metrics
        t0 = time.perf_counter()
        rows = [dataset[i] for i in range(len(dataset))]
        metrics = {}
        was_training = self.model.training
        self.model.eval()
        try:
            if self.args.eval_greedy:
                with self._greedy_generation():
                    metrics[f"{metric_key_prefix}_accuracy"] = self._accuracy(rows, 1)
            if self.args.avg_k:
                k = self.args.avg_k
                metrics[f"{metric_key_prefix}_avg_at_{k}"] = self._accuracy(rows, k)
            seconds = time.perf_counter() - t0
            metrics[f"{metric_key_prefix}_runtime"] = seconds
            metrics[f"{metric_key_prefix}_samples"] = float(len(rows))
            self.log(dict(metrics))  # in eval mode: TRL's eval metrics (completion lengths) get the eval_ prefix
        finally:
            if was_training:
                self.model.train()
        self.eval_seconds += seconds
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics

    def _accuracy(self, rows: list, k: int) -> float:
        """Mean over problems of the fraction of k completions whose combined reward exceeds the success threshold."""
        _, correct = self.sample_and_score(rows, k)
        return float(np.mean(correct)) if correct.size else float("nan")

    def sample_and_score(self, rows: list, k: int, chunk: int | None = None) -> tuple[list, np.ndarray]:
        """k completions of every row (rows in order, each repeated k times), generated with TRL's generation at the
        current sampling settings and scored with the reward functions: (rollouts, successes), a success being a
        combined reward above `success_threshold` (unscorable: a failure). Generation runs in pieces of `chunk`
        rows per process (default: `per_device_eval_batch_size`; vLLM: all at once). Used by evaluation and by
        `cures profile`."""
        repeated = [dict(row) for row in rows for _ in range(k)]
        if chunk is None:
            chunk = None if self.use_vllm else self.args.per_device_eval_batch_size
        rollouts = self._generate_rows(repeated, chunk)
        self._score_rollouts(rollouts, chunk, measure_norms=False)
        matrix = reward_matrix(rollouts, len(self.reward_funcs))
        rewards = torch.nan_to_num(_combined_rewards(matrix, self.reward_weights), nan=0.0).numpy()
        return rollouts, successes_from_rewards(rewards, self.args.success_threshold).astype(bool)

    def completion_lengths(self, rollouts: list) -> tuple[np.ndarray, np.ndarray]:
        """(tokens, clipped) per rollout: the completion's length and whether it stopped at `max_completion_length`
        without an end-of-sequence token."""
        eos = set(getattr(self, "eos_token_ids", None) or [])
        ids = [list(r.completion_ids) for r in rollouts]
        lengths = np.array([len(c) for c in ids], np.int64)
        clipped = np.array([len(c) >= self.max_completion_length and (not c or c[-1] not in eos) for c in ids], bool)
        return lengths, clipped

    @contextlib.contextmanager
    def _greedy_generation(self):
        """Temperature 0 for transformers generation and for vLLM, restored afterwards."""
        config, kwargs = self.generation_config, getattr(self, "generation_kwargs", None)
        vllm = getattr(self, "vllm_generation", None) if self.use_vllm else None
        sampling = {"do_sample": False, "temperature": None, "top_p": None, "top_k": None, "min_p": None}
        try:
            if config is not None:
                self.generation_config = copy.deepcopy(config)
                self.generation_config.update(**sampling)
            if kwargs is not None:
                self.generation_kwargs = {**kwargs, **sampling}
            if vllm is not None:
                temperature, vllm.temperature = vllm.temperature, 0.0
            yield
        finally:
            self.generation_config = config
            if kwargs is not None:
                self.generation_kwargs = kwargs
            if vllm is not None:
                vllm.temperature = temperature

    # -- one policy step ---------------------------------------------------------------------------------------
    def _run_policy_step(self, chunk: int | None) -> PolicyStep:
        """One policy step (`cures.policies.step.run_policy_step`) with TRL's generation and scoring; generation
        runs in pieces of at most `chunk` rows per process (None: a whole round at once). The rollouts of the slots
        the policy holds for later steps are kept (and saved in checkpoints)."""
        step = run_policy_step(self.policy, self.policy_state, functools.partial(self._generate_plan, chunk=chunk),
                               functools.partial(self._score_plan, chunk=chunk), threshold=self.args.success_threshold,
                               held=self._held, on_plan=self._log_plan)
        self.policy_seconds += step.policy_seconds
        self._held = step.held
        return step

    def _plan_rows(self, plan: Plan) -> list:
        return [dict(self.train_dataset[int(x)]) for x, n in zip(plan.prompt_ids, plan.n_rollouts, strict=True)
                for _ in range(int(n))]

    def _generate_plan(self, plan: Plan, chunk: int | None) -> list:
        return self._generate_rows(self._plan_rows(plan), chunk)

    def _score_plan(self, plan: Plan, rollouts: list, chunk: int | None) -> Scores:
        """Rewards of one round (TRL's reward code, combined with its weights; NaN where unscorable) and, for a
        screening round with `score_norms`, the per-slot statistics of Eq. 21."""
        norms = self._score_rollouts(rollouts, chunk, measure_norms=plan.purpose == "screen" and self.score_norms)
        rewards = _combined_rewards(reward_matrix(rollouts, len(self.reward_funcs)), self.reward_weights).numpy()
        stats = None
        if norms is not None:
            correct = successes_from_rewards(np.nan_to_num(rewards, nan=0.0), self.args.success_threshold)
            stats = slot_score_stats(norms, correct.astype(bool), plan.rollout_slots(), plan.prompt_ids.size)
        return Scores(rewards.astype(np.float64), stats)

    def _shares(self, n_rows: int, chunk: int | None):
        """(start, stop, this process's positions) of every generation piece: `chunk` rows per process at a time
        (None: all at once), equal shares per process (the last may repeat the piece's last row; dropped after)."""
        world, rank = self.accelerator.num_processes, self.accelerator.process_index
        chunk = chunk or max(1, -(-n_rows // world))
        for start in range(0, n_rows, chunk * world):
            stop = min(start + chunk * world, n_rows)
            size = -(-(stop - start) // world)
            yield start, stop, [min(start + i, stop - 1) for i in range(rank * size, (rank + 1) * size)]

    def _generate_rows(self, rows: list, chunk: int | None) -> list:
        """Every process generates its share of `rows` with TRL's `_generate`; all processes return all rollouts
        (gathered, in row order)."""
        rollouts = []
        for start, stop, mine in self._shares(len(rows), chunk):
            local_rows = [rows[i] for i in mine]
            out = GenerateOutput(*self._generate([row["prompt"] for row in local_rows]))
            logprobs = out.logprobs or [None] * len(local_rows)
            local = [Rollout(row, *fields) for row, *fields in zip(local_rows, out.prompt_ids, out.completion_ids,
                                                                    out.completions, logprobs, strict=True)]
            rollouts += gather_object(local)[: stop - start]
        return rollouts

    def _score_rollouts(self, rollouts: list, chunk: int | None, measure_norms: bool) -> np.ndarray | None:
        """TRL's rewards of `rollouts` (each process scores its share; gathered) stored in each rollout's
        `reward_row`, and, if asked, the per-rollout score norms."""
        norms = []
        for start, stop, mine in self._shares(len(rollouts), chunk):
            local = [rollouts[i] for i in mine]
            prompts = [r.row["prompt"] for r in local]
            matrix = self._calculate_rewards([r.row for r in local], prompts, [r.completion for r in local],
                                             [r.completion_ids for r in local]).float().cpu()[: stop - start]
            for r, values in zip(rollouts[start:stop], matrix, strict=True):
                r.reward_row = values
            if measure_norms:
                t0 = time.perf_counter()
                model = self.accelerator.unwrap_model(self.model)
                norms += gather_object(response_score_norms(model, local))[: stop - start]
                self.score_norm_seconds += time.perf_counter() - t0
        return np.asarray(norms) if measure_norms else None

    # -- logs ----------------------------------------------------------------------------------------------------
    def _log_plan(self, plan) -> None:
        self.plan_log.parent.mkdir(parents=True, exist_ok=True)
        with self.plan_log.open("a") as fh:
            fh.write(json.dumps({"step": plan.step, "round": plan.round, "purpose": plan.purpose,
                                 "prompt_ids": plan.prompt_ids.tolist(), "n_rollouts": plan.n_rollouts.tolist()})
                     + "\n")

    def _replace_trl_group_metrics(self, step: StepRollouts, replayed: int, advantages: torch.Tensor,
                                   index: np.ndarray) -> None:
        """TRL computed `reward`, `reward_std`, `frac_reward_zero_std`, `rewards/<f>/mean|std` and the completions
        table over the replayed rows (padded copies, in dummy groups of its fixed size): replace them with the values
        over every rollout the step generated, each counted once."""
        from trl.trainer.utils import nanstd

        metrics = self._metrics["train"]
        per_func = [f"rewards/{name}/{stat}" for name in self.reward_func_names for stat in ("mean", "std")]
        for name in ["reward", "reward_std", "frac_reward_zero_std", *per_func]:
            if metrics.get(name):
                metrics[name].pop()
        fresh = torch.as_tensor(step.fresh)
        rewards = torch.as_tensor(step.rewards, dtype=torch.float32)
        matrix = reward_matrix(step.rollouts, len(self.reward_funcs))
        metrics["reward"].append(torch.nanmean(rewards[fresh]).item())
        metrics["reward_std"].append(nanstd(rewards[fresh]).item())
        metrics["frac_reward_zero_std"].append(step.zero_variance_fraction())
        for i, name in enumerate(self.reward_func_names):
            metrics[f"rewards/{name}/mean"].append(torch.nanmean(matrix[fresh, i]).item())
            metrics[f"rewards/{name}/std"].append(nanstd(matrix[fresh, i]).item())

        logs = self._logs
        for column in (logs["prompt"], logs["completion"], logs["advantages"], *logs["rewards"].values()):
            for _ in range(min(replayed, len(column))):
                column.pop()
        adv = np.zeros(len(step))
        adv[index] = advantages[: index.size].numpy()
        logs["prompt"].extend(r.row["prompt"] for r in step.rollouts)
        logs["completion"].extend(r.completion for r in step.rollouts)
        logs["advantages"].extend(adv.tolist())
        for i, name in enumerate(self.reward_func_names):
            logs["rewards"][name].extend(matrix[:, i].tolist())

    def _write_records(self, step: PolicyStep) -> None:
        """The step's per-slot records (`cures.records`), with each completion's length in tokens and whether it
        stopped at `max_completion_length` without an end-of-sequence token."""
        if not self.accelerator.is_main_process or not step.plans:
            return
        lengths, clipped = self.completion_lengths(step.rollouts.rollouts)
        records = step_records(step, lengths, clipped, self.args.success_threshold)
        write_step(self.records_dir, step.plans[0].step, records)

    def _log_step_metrics(self, step: PolicyStep) -> None:
        """TRL's group metrics assume equal groups of its dummy size; these are the policy's (`step_metrics`)."""
        for name, value in step_metrics(step, self.policy_state).items():
            if name != "cures/policy_seconds":
                self._metrics["train"][name].append(value)


def live_instances(cls) -> int:
    """How many objects the garbage collector tracks of type `cls` (after a collection). type(o), not isinstance:
    gc also tracks dead weak proxies, and isinstance on one raises ReferenceError."""
    gc.collect()
    return sum(issubclass(type(o), cls) for o in gc.get_objects())


def _combined_rewards(matrix: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """TRL's weighted NaN-aware sum over reward functions; NaN where every function gave None (unscorable)."""
    rewards = (matrix.float().cpu() * weights.float().cpu().unsqueeze(0)).nansum(dim=1)
    rewards[torch.isnan(matrix).all(dim=1).cpu()] = float("nan")
    return rewards


def _load_held(folder: Path, state: PolicyState) -> dict:
    """The held rollouts saved in a checkpoint, checked against the slots the restored policy state holds."""
    want = set(state.held_slot_ids().tolist())
    if not want:
        return {}
    path = folder / HELD_FILE
    try:
        held = torch.load(path, weights_only=False)  # written by this trainer (_save_checkpoint)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError, AttributeError, ImportError) as exc:
        raise ValueError(f"{path}: the policy holds {len(want)} slots for later steps but their rollouts cannot be "
                         f"read ({exc})") from None
    if not isinstance(held, dict) or not want <= set(held) or not all(isinstance(held[i], StepRollouts) for i in want):
        raise ValueError(f"{path} lacks rollouts of slots the policy state holds")
    return {i: held[i] for i in want}


def _check_train_dataset(dataset, prompts_per_step: int) -> int:
    """The training set's row count, after checking that the policy can index it and that one step fits."""
    if dataset is None:
        raise ValueError("CuresGRPOTrainer needs a train_dataset")
    if isinstance(dataset, IterableDataset) or not hasattr(dataset, "__len__"):
        raise ValueError("CuresGRPOTrainer needs a map-style train_dataset (the policy picks prompts by row); load "
                         "it without streaming")
    columns = getattr(dataset, "column_names", None)
    if columns is not None and "prompt" not in columns:
        raise ValueError(f"train_dataset has no 'prompt' column; columns: {', '.join(columns)}")
    n = len(dataset)
    if n < prompts_per_step:
        raise ValueError(f"train_dataset has {n} rows, fewer than prompts_per_step={prompts_per_step}: one policy "
                         "step needs at least that many prompts")
    return n


def _check_state_fits(state: PolicyState, policy: Policy, n_rows: int, what: str) -> None:
    if state.n_prompts != n_rows:
        raise ValueError(f"{what} covers {state.n_prompts} prompts but train_dataset has {n_rows} rows")
    if state.policy != policy.name or state.params != policy.params:
        raise ValueError(f"{what} belongs to {state.policy!r} with parameters {state.params}, not to {policy!r}")


def _check_score_norms_supported(trainer) -> None:
    """Score norms are gradients over the full input-embedding matrix, so it must be trainable and unsharded."""
    if trainer.is_fsdp_enabled:
        raise ValueError("score_norms needs the full embedding matrix on every process; FSDP shards it: turn "
                         "score_norms off")
    plugin = getattr(trainer.accelerator.state, "deepspeed_plugin", None)
    if trainer.is_deepspeed_enabled and plugin is not None and plugin.zero_stage == 3:
        raise ValueError("score_norms needs the full embedding matrix on every process; DeepSpeed ZeRO-3 shards it: "
                         "use ZeRO-2 or turn score_norms off")
    weight = trainer.accelerator.unwrap_model(trainer.model).get_input_embeddings().weight
    if not weight.requires_grad:
        raise ValueError("score_norms measures gradients over the input-embedding matrix, which is frozen here "
                         "(LoRA/PEFT): turn score_norms off")
