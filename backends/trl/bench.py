"""Side-by-side measurements of the TRL backend (run on one machine, in one invocation, so the ratios are fair).

`python -m cures.backends.trl.bench memory`: peak RSS of `cures train` (each run its own process, read with wait4) at a
trained batch of 16 and of 128 rollouts per step with micro-batches of 8, and at 128 in one forward/backward (the
behaviour before micro-batching) for contrast.
`python -m cures.backends.trl.bench eval`: greedy accuracy on N held-out arith problems, one problem at a time (the loop
`cures train` used before) against `CuresGRPOTrainer.evaluate` (batched), on the same model.
`python -m cures.backends.trl.bench launches`: N two-process gloo launches of `cures train` back to back (tiny model,
six steps, checkpoints), counting those that exit 0 without an abort at exit ("terminate called", SIGABRT).
`python -m cures.backends.trl.bench overhead`: `CuresGRPOTrainer` against TRL's own `GRPOTrainer` at the same model,
data, seed and rollouts, alternating; ratios of median step time and of peak memory (`overhead.py`).
`python -m cures.backends.trl.bench gpu`: the prepared GPU check, the same comparison on a random model with
Qwen2.5-1.5B's architecture in bf16.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time


def peak_rss_mb(cmd: list[str], env: dict) -> tuple[float, float, int]:
    """(peak RSS in MB, wall seconds, exit code) of one child process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        sys.stderr.write(proc.stderr.read().decode()[-2000:])
    return usage.ru_maxrss / 1024, time.perf_counter() - t0, proc.returncode


def memory(model: str, completion: int, micro: int, steps: int) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    runs = (("16 rollouts/step", 4, 16, micro), ("128 rollouts/step", 16, 128, micro),
            ("128 rollouts/step, one forward", 16, 128, 128))
    results = {}
    for label, m, rollouts_per_step, per_device in runs:
        with tempfile.TemporaryDirectory() as out:
            cmd = [sys.executable, "-m", "cures", "train", "--model_name_or_path", model, "--dataset_name", "arith",
                   "--policy", "grpo", "--prompts_per_step", str(m), "--rollouts_per_step", str(rollouts_per_step),
                   "--per_device_train_batch_size", str(per_device), "--generation_chunk_size", str(micro),
                   "--max_steps", str(steps), "--max_completion_length", str(completion),
                   "--n_problems", "64", "--save_strategy", "no", "--gradient_checkpointing", "false",
                   "--output_dir", out, "--logging_steps", "1"]
            rss, wall, code = peak_rss_mb(cmd, env)
        results[label] = rss
        print(f"{label:34s} micro-batch {per_device:4d}: peak RSS {rss:8.0f} MB, {wall:6.1f} s, exit {code}",
              flush=True)
    print(f"ratio 128/16 with micro-batch {micro}: {results['128 rollouts/step'] / results['16 rollouts/step']:.3f}")
    print(f"ratio 128 one forward / 128 micro-batched: "
          f"{results['128 rollouts/step, one forward'] / results['128 rollouts/step']:.3f}")


def launches(n: int, policy: str) -> None:
    import shutil
    from pathlib import Path

    launcher = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or shutil.which("accelerate")
    if launcher is None:
        raise SystemExit("accelerate is not installed (pip install -e '.[train]')")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
    clean = 0
    for i in range(1, n + 1):
        with tempfile.TemporaryDirectory() as out:
            cmd = [launcher, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                   "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "cures", "train",
                   "--model_name_or_path", "tiny", "--dataset_name", "arith", "--reward_funcs", "parity",
                   "--max_completion_length", "6", "--gradient_checkpointing", "false", "--logging_steps", "1",
                   "--policy", policy, "--max_steps", "6", "--rollouts_per_step", "16", "--prompts_per_step", "4",
                   "--per_device_train_batch_size", "4", "--n_problems", "12", "--save_steps", "3",
                   "--output_dir", out]
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
            text = proc.stdout + proc.stderr
            aborted = "terminate called" in text or "SIGABRT" in text
            ok = proc.returncode == 0 and not aborted
            clean += ok
            print(f"launch {i:3d}: exit {proc.returncode}, abort at exit: {'yes' if aborted else 'no'}, "
                  f"{time.perf_counter() - t0:5.1f} s", flush=True)
            if not ok:
                sys.stderr.write(text[-3000:])
    print(f"{clean} of {n} launches clean")


def one_at_a_time(model, tokenizer, rows, max_new_tokens: int) -> float:
    """The evaluation loop `cures train` used before: one greedy `generate` per problem."""
    import torch

    from cures.backends.trl.rewards import MathAnswerReward

    reward = MathAnswerReward()
    correct = 0.0
    with torch.no_grad():
        for row in rows:
            enc = tokenizer.apply_chat_template(row["prompt"], add_generation_prompt=True, return_tensors="pt",
                                                return_dict=True)
            ids = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id)
            text = tokenizer.decode(ids[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)
            correct += reward.score(text, row["answer"])
    return correct / len(rows)


def evaluation(model_name: str, n: int, completion: int, batch: int) -> None:
    from cures.backends.trl.config import CuresGRPOConfig
    from cures.backends.trl.data import builtin_source, to_prompts
    from cures.backends.trl.models import resolve_model
    from cures.backends.trl.rewards import MathAnswerReward
    from cures.backends.trl.trainer import CuresGRPOTrainer

    data = builtin_source("arith", 16, n, max_level=2)
    train, held = to_prompts(data["train"], "arith"), to_prompts(data["test"], "arith")
    path, _ = resolve_model(model_name)
    with tempfile.TemporaryDirectory() as out:
        args = CuresGRPOConfig(output_dir=out, prompts_per_step=4, rollouts_per_step=8,
                               max_completion_length=completion, per_device_eval_batch_size=batch, report_to="none",
                               gradient_checkpointing=False)
        trainer = CuresGRPOTrainer(model=path, reward_funcs=MathAnswerReward(), args=args, train_dataset=train)
        model, tok = trainer.model, trainer.processing_class
        model.eval()
        t0 = time.perf_counter()
        slow = one_at_a_time(model, tok, [held[i] for i in range(len(held))], completion)
        t_slow = time.perf_counter() - t0
        t0 = time.perf_counter()
        fast = trainer.evaluate(held)["eval_accuracy"]
        t_fast = time.perf_counter() - t0
    print(f"{n} problems, {completion} new tokens, greedy")
    print(f"one at a time:              {t_slow:7.1f} s, accuracy {slow:.3f}")
    print(f"batched ({batch:3d} per batch):   {t_fast:7.1f} s, accuracy {fast:.3f}")
    print(f"speed-up: {t_slow / t_fast:.2f}x")


class OneLineErrors(argparse.ArgumentParser):
    """Usage errors (an unknown option, a value of the wrong type) as one line naming the option, exit 2."""

    def error(self, message):
        self.exit(2, f"error: {message.replace('argument ', 'option ', 1)} (see {self.prog} --help)\n")


def main(argv=None) -> None:
    parser = OneLineErrors(prog="python -m cures.backends.trl.bench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    mem = sub.add_parser("memory", help="peak RSS at trained batches of 16 and 128")
    mem.add_argument("--model", default="smollm2-135m")
    mem.add_argument("--completion", type=int, default=64)
    mem.add_argument("--micro", type=int, default=8)
    mem.add_argument("--steps", type=int, default=2)
    ev = sub.add_parser("eval", help="batched against one-at-a-time greedy evaluation")
    ev.add_argument("--model", default="smollm2-135m")
    ev.add_argument("--n", type=int, default=64)
    ev.add_argument("--completion", type=int, default=64)
    ev.add_argument("--batch", type=int, default=64)
    la = sub.add_parser("launches", help="two-process launches back to back, counting clean exits")
    la.add_argument("--n", type=int, default=20)
    la.add_argument("--policy", default="cures")
    ov = sub.add_parser("overhead", help="CuresGRPOTrainer against TRL's GRPOTrainer, side by side")
    ov.add_argument("--model", default="tiny", help="tiny, smollm2-135m, a model directory or Hub id, or a "
                    "config.json (random weights)")
    ov.add_argument("--policies", default="grpo,cures,dapo,pilot-commit")
    ov.add_argument("--prompts", type=int, default=4)
    ov.add_argument("--rollouts", type=int, default=16)
    ov.add_argument("--micro", type=int, default=8)
    ov.add_argument("--completion", type=int, default=32)
    ov.add_argument("--steps", type=int, default=6)
    ov.add_argument("--repeats", type=int, default=3)
    ov.add_argument("--bf16", action="store_true")
    ov.add_argument("--out", help="also write the measurements as JSON here")
    gpu = sub.add_parser("gpu", help="the prepared GPU check (random Qwen2.5-1.5B architecture, bf16)")
    gpu.add_argument("--config", help="another architecture's config.json (default: the shipped Qwen2.5-1.5B one)")
    gpu.add_argument("--policies", default="grpo,cures")
    gpu.add_argument("--repeats", type=int, default=1)
    gpu.add_argument("--allow-cpu", action="store_true", help="run without a GPU, shrunk (to test the script)")
    a = parser.parse_args(argv)
    if a.what in ("overhead", "gpu"):
        from cures.backends.trl import overhead as ov_mod

        policies = [p for p in a.policies.split(",") if p]
        try:
            if a.what == "gpu":
                ov_mod.gpu_check(a.config, a.allow_cpu, a.repeats, policies)
            else:
                setting = ov_mod.Setting(model=a.model, prompts=a.prompts, rollouts=a.rollouts, micro=a.micro,
                                         completion=a.completion, steps=a.steps, bf16=a.bf16)
                ov_mod.overhead(setting, policies, a.repeats, a.out)
        except (ValueError, RuntimeError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
        return
    if a.what == "memory":
        memory(a.model, a.completion, a.micro, a.steps)
    elif a.what == "launches":
        launches(a.n, a.policy)
    else:
        evaluation(a.model, a.n, a.completion, a.batch)


if __name__ == "__main__":
    main()
