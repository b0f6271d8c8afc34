"""What `CuresGRPOTrainer` costs over TRL's own `GRPOTrainer`, measured side by side.

Each variant trains in its own process (so peak memory is its own): TRL's `GRPOTrainer` with num_generations =
N / m, and `CuresGRPOTrainer` with one or more policies, on the same model (the same random initialisation or
checkpoint), data, seed, rollouts per step N and micro-batch. Both take one optimizer step per N rollouts: TRL with
gradient accumulation over N / micro micro-batches of one generation batch, `cures` with its own micro-batches of
one policy step; both generate the step's rollouts in one call (`generation_chunk_size = N`), and every completion
is `completion` tokens long (`min_new_tokens`; `fixed_length=False` lets them stop at EOS, so that the two trainers'
sampled lengths differ and so does their work). The variants run in
turn, the order reversed every other repeat, and the table gives each one's median step time (the time between
consecutive `on_step_end` callbacks, the first step left out as warm-up), its peak memory (CUDA's
`max_memory_allocated` on a GPU, the process's peak RSS on a CPU) and both as ratios to plain TRL. Policies that
generate more than N rollouts a step (screening or refill rounds: dapo, pilot-commit) show that cost too; the
rollouts column says how many they generated.

    python -m cures.backends.trl.bench overhead --model tiny --policies grpo,cures,dapo,pilot-commit
    python -m cures.backends.trl.bench gpu      # the prepared GPU check: Qwen2.5-1.5B's architecture, bf16
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

CONFIGS = Path(__file__).resolve().parent / "configs"
QWEN25_15B = CONFIGS / "qwen2.5-1.5b.json"
PLAIN = "trl"  # the variant name of TRL's own GRPOTrainer
RESULT = "OVERHEAD-RESULT "


@dataclass(frozen=True)
class Setting:
    """One benchmark setting, shared by every variant: `model` is `tiny`, `smollm2-135m`, a model directory or Hub
    id, or a `config.json` (a randomly initialised model of that architecture, with a synthetic tokenizer)."""

    model: str = "tiny"
    prompts: int = 4  # m
    rollouts: int = 16  # N
    micro: int = 8  # completions per forward/backward
    completion: int = 32  # max new tokens
    steps: int = 5
    seed: int = 0
    bf16: bool = False
    reward: str | None = None  # default: parity for random models, math_answer otherwise
    n_problems: int = 64
    fixed_length: bool = True  # every completion max_completion_length tokens (min_new_tokens): equal work

    def check(self) -> Setting:
        for name in ("prompts", "rollouts", "micro", "completion", "n_problems"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be at least 1; got {getattr(self, name)}")
        if self.steps < 3:
            raise ValueError(f"--steps must be at least 3 (the first is warm-up); got {self.steps}")
        if self.rollouts % self.prompts or self.rollouts // self.prompts < 2:
            raise ValueError(f"--rollouts {self.rollouts} must be a multiple of --prompts {self.prompts}, at least 2 "
                             "each (TRL's groups are equal)")
        if self.rollouts % self.micro:
            raise ValueError(f"--rollouts {self.rollouts} must be a multiple of --micro {self.micro} (TRL accumulates "
                             "whole micro-batches)")
        return self

    @property
    def random_model(self) -> bool:
        return self.model == "tiny" or self.model.endswith(".json")


# ----------------------------------------------------------------------------------------------------------------
# One variant, in its own process
# ----------------------------------------------------------------------------------------------------------------


def build_model(setting: Setting):
    """(model or path, tokenizer or None) for the setting, identical in every variant."""
    from cures.backends.trl.models import random_model_from_config, resolve_model

    if setting.model.endswith(".json"):
        import torch

        return random_model_from_config(setting.model, setting.seed,
                                        dtype=torch.bfloat16 if setting.bf16 else torch.float32)
    return resolve_model(setting.model, setting.seed)


def check_model(model: str) -> None:
    """A model that cannot be loaded fails here, in one line naming --model, before any variant starts."""
    from cures.backends.trl.models import resolve_model

    try:
        if model.endswith(".json"):
            from transformers import AutoConfig

            AutoConfig.from_pretrained(model)
        elif model != "tiny":  # tiny is built in code
            resolve_model(model)
    except (OSError, ValueError) as exc:
        raise ValueError(f"--model {model}: {str(exc).splitlines()[0]}") from None


def _config_fields(setting: Setting, out: str, cuda: bool) -> dict:
    return dict(output_dir=out, per_device_train_batch_size=setting.micro, max_completion_length=setting.completion,
                max_steps=setting.steps, learning_rate=1e-6, logging_steps=1, save_strategy="no", report_to="none",
                seed=setting.seed, bf16=setting.bf16, use_cpu=not cuda, gradient_checkpointing=False,
                disable_tqdm=True, generation_kwargs={"min_new_tokens": setting.completion} if setting.fixed_length
                else None)


def run_variant(variant: str, setting: Setting) -> dict:
    """Train `setting.steps` steps with TRL's GRPOTrainer (`variant == "trl"`) or with CuresGRPOTrainer and the
    policy `variant`; returns step times, peak memory and tokens."""
    import resource
    import tempfile

    import torch
    from transformers import TrainerCallback

    from cures.backends.trl.data import builtin_source, to_prompts
    from cures.backends.trl.rewards import resolve_reward_funcs

    cuda = torch.cuda.is_available()
    reward = setting.reward or ("parity" if setting.random_model else "math_answer")
    data = builtin_source("arith", setting.n_problems, 8, seed=setting.seed, max_level=2)
    train = to_prompts(data["train"], "arith")
    model, tokenizer = build_model(setting)
    ends: list[float] = []

    class Clock(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            if cuda:
                torch.cuda.synchronize()
            ends.append(time.perf_counter())

        def on_step_end(self, args, state, control, **kwargs):
            if cuda:
                torch.cuda.synchronize()
            ends.append(time.perf_counter())

    with tempfile.TemporaryDirectory() as out:
        fields = _config_fields(setting, out, cuda)
        if variant == PLAIN:
            from trl import GRPOConfig, GRPOTrainer

            args = GRPOConfig(**fields, num_generations=setting.rollouts // setting.prompts,
                              gradient_accumulation_steps=setting.rollouts // setting.micro)
            trainer_class = GRPOTrainer
        else:
            from cures.backends.trl.config import CuresGRPOConfig
            from cures.backends.trl.trainer import CuresGRPOTrainer

            args = CuresGRPOConfig(**fields, policy=variant, prompts_per_step=setting.prompts,
                                   rollouts_per_step=setting.rollouts, generation_chunk_size=setting.rollouts)
            trainer_class = CuresGRPOTrainer
        trainer = trainer_class(model=model, reward_funcs=resolve_reward_funcs([reward]), args=args,
                                train_dataset=train, processing_class=tokenizer, callbacks=[Clock()])
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        trainer.train()
    logs = [e for e in trainer.state.log_history if "num_tokens" in e]
    tokens = [float(e["num_tokens"]) for e in logs]
    generated = [float(e["cures/rollouts_generated"]) for e in logs if "cures/rollouts_generated" in e]
    steps = [b - a for a, b in zip(ends, ends[1:], strict=False)]
    return {
        "variant": variant, "step_seconds": steps,
        "peak_mb": (torch.cuda.max_memory_allocated() if cuda else
                    resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024) / 2**20,
        "tokens_per_step": [b - a for a, b in zip([0.0, *tokens], tokens, strict=False)],
        "rollouts_per_step": statistics.mean(generated) if generated else float(setting.rollouts),
        "device": torch.cuda.get_device_name() if cuda else "cpu",
    }


# ----------------------------------------------------------------------------------------------------------------
# Alternating runs and the table
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class Measured:
    variant: str
    runs: list[dict] = field(default_factory=list)

    @property
    def step_seconds(self) -> float:
        """Median over repeats of each run's median step time, warm-up step left out."""
        return statistics.median(statistics.median(r["step_seconds"][1:]) for r in self.runs)

    @property
    def peak_mb(self) -> float:
        return statistics.median(r["peak_mb"] for r in self.runs)

    @property
    def tokens_per_second(self) -> float:
        return statistics.median(sum(r["tokens_per_step"][1:]) / sum(r["step_seconds"][1:]) for r in self.runs)


def child_command(variant: str, setting: Setting) -> list[str]:
    return [sys.executable, "-m", "cures.backends.trl.overhead", "--variant", variant,
            "--setting", json.dumps(asdict(setting))]


def run_child(variant: str, setting: Setting, timeout: float | None = None) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1"),
           "HF_DATASETS_OFFLINE": os.environ.get("HF_DATASETS_OFFLINE", "1"), "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(child_command(variant, setting), env=env, capture_output=True, text=True, timeout=timeout)
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT):
            return json.loads(line[len(RESULT):])
    lines = [line for line in (proc.stderr or proc.stdout or "no output").strip().splitlines() if line.strip()]
    raise RuntimeError(f"variant {variant} failed (exit {proc.returncode}): {lines[-1].strip()}")


def measure(setting: Setting, policies: list[str], repeats: int, log=print) -> list[Measured]:
    """Every variant (plain TRL first, then the policies) `repeats` times, alternating, order reversed every other
    repeat so that no variant always runs first or last."""
    from cures.policies import get_spec

    setting.check()
    if repeats < 1:
        raise ValueError(f"--repeats must be at least 1; got {repeats}")
    for p in policies:
        get_spec(p)  # an unknown policy fails before anything is trained
    check_model(setting.model)
    variants = [PLAIN, *dict.fromkeys(policies)]
    results = {v: Measured(v) for v in variants}
    for r in range(repeats):
        for v in (variants if r % 2 == 0 else variants[::-1]):
            t0 = time.perf_counter()
            run = run_child(v, setting)
            results[v].runs.append(run)
            log(f"repeat {r + 1}/{repeats} {v:>14}: median step {statistics.median(run['step_seconds'][1:]):.3f} s, "
                f"peak {run['peak_mb']:.0f} MB ({time.perf_counter() - t0:.0f} s with start-up)")
    return list(results.values())


def table(measured: list[Measured], setting: Setting) -> str:
    base = measured[0]
    device = base.runs[0]["device"]
    lines = [f"{setting.model} on {device}: {setting.prompts} prompts x {setting.rollouts // setting.prompts} = "
             f"{setting.rollouts} rollouts per step, micro-batch {setting.micro}, {setting.completion} new tokens, "
             f"{setting.steps} steps ({setting.steps - 1} timed), {len(base.runs)} repeats, "
             f"{'bf16' if setting.bf16 else 'fp32'}",
             f"{'trainer':18s} {'policy':>13s} {'step s':>8s} {'x TRL':>6s} {'peak MB':>9s} {'x TRL':>6s} "
             f"{'tokens/s':>9s} {'rollouts/step':>13s}"]
    for m in measured:
        trainer = "GRPOTrainer" if m.variant == PLAIN else "CuresGRPOTrainer"
        policy = "(TRL's)" if m.variant == PLAIN else m.variant
        rollouts = statistics.mean(r["rollouts_per_step"] for r in m.runs)
        lines.append(f"{trainer:18s} {policy:>13s} {m.step_seconds:8.3f} {m.step_seconds / base.step_seconds:6.3f} "
                     f"{m.peak_mb:9.0f} {m.peak_mb / base.peak_mb:6.3f} {m.tokens_per_second:9.0f} {rollouts:13.1f}")
    return "\n".join(lines)


def overhead(setting: Setting, policies: list[str], repeats: int, out: str | None = None) -> list[Measured]:
    measured = measure(setting, policies, repeats, log=lambda s: print(s, file=sys.stderr, flush=True))
    print(table(measured, setting), flush=True)
    if out:
        from cures._io import atomic_write_text

        atomic_write_text(Path(out), json.dumps({"setting": asdict(setting),
                                                 "variants": [asdict(m) for m in measured]}, indent=2) + "\n")
    return measured


GPU_SETTING = Setting(model=str(QWEN25_15B), prompts=8, rollouts=64, micro=16, completion=128, steps=4, bf16=True)


def gpu_check(config: str | None, allow_cpu: bool, repeats: int, policies: list[str]) -> None:
    """The prepared GPU check: a random model with Qwen2.5-1.5B's architecture (or `config`), bf16, transformers
    generation, a few steps of plain TRL and of each policy; prints step time, tokens per second, peak GPU memory
    and the ratios to TRL."""
    import torch

    if not torch.cuda.is_available() and not allow_cpu:
        raise ValueError("no CUDA device: the GPU check needs one (--allow-cpu runs it here, with --config a small "
                         "architecture)")
    setting = GPU_SETTING if config is None else replace(GPU_SETTING, model=config)
    if not torch.cuda.is_available():
        setting = replace(setting, bf16=False, rollouts=8, prompts=4, micro=4, completion=8, steps=3)
    t0 = time.perf_counter()
    overhead(setting, policies, repeats)
    print(f"GPU check finished in {time.perf_counter() - t0:.0f} s")


def main(argv=None) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m cures.backends.trl.overhead",
                                     description="one variant of the overhead benchmark (used by its parent)")
    parser.add_argument("--variant", required=True)
    parser.add_argument("--setting", required=True)
    a = parser.parse_args(argv)
    setting = Setting(**json.loads(a.setting))
    print(RESULT + json.dumps(run_variant(a.variant, setting)), flush=True)


if __name__ == "__main__":
    main()
