"""`cures train --backend trl`: build the model, data, reward and policy, train, evaluate, write metrics."""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from transformers import TrainerCallback

PROMPT_SUFFIX = " Give the final answer as \\boxed{answer}."


@dataclass
class TrainConfig:
    model: str = "tiny"  # "tiny" (random, for tests), "smollm2-135m" or a local Hugging Face model directory
    dataset: str = "arith"
    policy: str = "cures"
    max_steps: int = 10
    batch_size: int = 8  # prompts per step
    budget: int = 32  # rollouts per step (= TRL's generation batch)
    output_dir: str = "train-out"
    resume: bool = False
    n_problems: int = 512
    eval_size: int = 32
    max_completion_length: int = 64
    learning_rate: float = 1e-5
    question_column: str = "question"
    answer_column: str = "answer"
    seed: int = 0
    save_steps: int = 5
    reward: str = "math"  # "math" (math-verify) or "parity" (a random-model test signal)
    arith_max_level: int = 5  # arith difficulty levels 1..this
    eval_steps: int = 0  # greedy held-out accuracy every this many steps (0: only before and after training)
    estimator: str = "grpo"  # "grpo" or "rloo"
    scale_rewards: str = "group"  # TRL's: "group" (GRPO), "none" (Dr. GRPO) or "batch"
    weighting: str = "policy"  # "policy", "prompt" (Eq. 16) or "rollout"
    score_norms: bool = False  # measure per-response score norms on screening rounds (Eq. 21)
    vllm: str = "none"  # "none", "colocate" or "server" (GPU only; the vllm extra)
    policy_params: dict = field(default_factory=dict)


def _load_model(name: str, seed: int):
    if name == "tiny":
        from backends.trl.models import tiny_model, tiny_tokenizer

        tok = tiny_tokenizer()
        return tiny_model(tok, seed), tok
    if name == "smollm2-135m":
        from backends.trl.models import smollm2_dir

        name = smollm2_dir()
    path = Path(name)
    if not path.is_dir():
        raise ValueError(f"model {name!r}: use 'tiny', 'smollm2-135m' or a local Hugging Face model directory")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return AutoModelForCausalLM.from_pretrained(path), tok


def _check_vllm(cuda: bool, model) -> None:
    if not cuda:
        raise ValueError("--vllm needs a CUDA GPU; leave it out to generate with transformers")
    if not Path(str(getattr(model, "name_or_path", ""))).is_dir():
        raise ValueError("--vllm loads the model from disk: give a local model directory or smollm2-135m")
    try:
        import vllm  # noqa: F401
    except ImportError:
        raise ValueError("--vllm needs the vllm extra: pip install 'cures[vllm]'") from None


def parity_reward(completions, **kwargs) -> list[float]:
    """Test signal for random models: the parity of the completion's first character."""
    texts = [c if isinstance(c, str) else str(c[-1].get("content", "")) if c else "" for c in completions]
    return [float(ord(t[0]) % 2) if t else 0.0 for t in texts]


def greedy_accuracy(model, tokenizer, rows, max_new_tokens: int) -> float:
    """Greedy held-out accuracy under the math-verify reward."""
    import torch

    from backends.trl.rewards import MathAnswerReward

    reward = MathAnswerReward()
    model.eval()
    correct = 0.0
    with torch.no_grad():
        for row in rows:
            enc = tokenizer.apply_chat_template(row["prompt"], add_generation_prompt=True, return_tensors="pt",
                                                return_dict=True).to(model.device)
            ids = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id)
            text = tokenizer.decode(ids[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)
            correct += reward.score(text, row["answer"])
    model.train()
    return correct / max(len(rows), 1)


class HeldOutEval(TrainerCallback):
    """Greedy held-out accuracy (`greedy_accuracy`) every `every` optimizer steps, on the main process, logged as
    `heldout_accuracy`; evaluation time is kept out of the policy's share of training time."""

    def __init__(self, trainer, tokenizer, rows, max_new_tokens: int, every: int):
        self.trainer, self.tokenizer, self.rows, self.max_new_tokens, self.every = (trainer, tokenizer, rows,
                                                                                  max_new_tokens, every)
        self.history: list[dict] = []
        self.seconds = 0.0

    def accuracy(self, model) -> float:
        t0 = time.perf_counter()
        acc = greedy_accuracy(model, self.tokenizer, self.rows, self.max_new_tokens)
        self.seconds += time.perf_counter() - t0
        return acc

    def on_step_end(self, args, state, control, **kwargs):
        if self.every and state.global_step % self.every == 0 and state.is_world_process_zero:
            acc = self.accuracy(self.trainer.model)
            self.history.append({"step": state.global_step, "heldout_accuracy": acc})
            state.log_history.append({"step": state.global_step, "heldout_accuracy": acc})


def train(cfg: TrainConfig) -> dict:
    """Train with TRL; writes metrics.jsonl and summary.json into cfg.output_dir and returns the summary."""
    import torch
    from trl import GRPOConfig

    from backends.trl.advantages import ESTIMATORS, SCALES, WEIGHTINGS
    from backends.trl.data import load_problems
    from backends.trl.rewards import MathAnswerReward
    from backends.trl.trainer import CuresGRPOTrainer, resume_point
    from cures.policies import make_policy_for_budget

    choices = {"vllm": ("none", "colocate", "server"), "estimator": ESTIMATORS, "scale_rewards": SCALES,
               "weighting": WEIGHTINGS}
    for name, allowed in choices.items():
        if getattr(cfg, name) not in allowed:
            raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {getattr(cfg, name)!r}")
    if cfg.eval_steps < 0:
        raise ValueError(f"eval_steps must be >= 0; got {cfg.eval_steps}")
    policy = make_policy_for_budget(cfg.policy, cfg.batch_size, cfg.budget, **cfg.policy_params)
    out = Path(cfg.output_dir)
    problems = load_problems(cfg.dataset, cfg.question_column, cfg.answer_column, n=cfg.n_problems + cfg.eval_size,
                             seed=cfg.seed, levels=tuple(range(1, cfg.arith_max_level + 1)))
    if len(problems) <= cfg.eval_size:
        raise ValueError(f"dataset {cfg.dataset} has {len(problems)} rows; need more than eval_size={cfg.eval_size}")
    problems = problems.map(lambda r: {"prompt": [{"role": "user", "content": r["question"] + PROMPT_SUFFIX}]})
    held_out = [problems[i] for i in range(len(problems) - cfg.eval_size, len(problems))]
    train_rows = problems.select(range(len(problems) - cfg.eval_size))
    train_rows = train_rows.remove_columns("prompt_id").add_column("prompt_id", list(range(len(train_rows))))

    state = policy.init(len(train_rows), seed=cfg.seed)
    checkpoint = None
    if cfg.resume:
        found = resume_point(out)
        if found is None:
            raise ValueError(f"--resume: no checkpoint with a policy state in {out}")
        checkpoint, state = found
    model, tok = _load_model(cfg.model, cfg.seed)
    cuda = torch.cuda.is_available()
    world = int(os.environ.get("WORLD_SIZE", "1"))  # set by accelerate launch / torchrun
    if cfg.budget % world:
        raise ValueError(f"budget {cfg.budget} must be divisible by the {world} processes")
    use_vllm = cfg.vllm != "none"
    if use_vllm:
        _check_vllm(cuda, model)
    args = GRPOConfig(
        output_dir=str(out), per_device_train_batch_size=cfg.budget // world, num_generations=2,
        max_completion_length=cfg.max_completion_length, use_cpu=not cuda,
        bf16=cuda and torch.cuda.is_bf16_supported(), fp16=False, gradient_checkpointing=False, report_to="none",
        save_strategy="steps", save_steps=cfg.save_steps, logging_steps=1, max_steps=cfg.max_steps,
        learning_rate=cfg.learning_rate, dataloader_num_workers=0, seed=cfg.seed, scale_rewards=cfg.scale_rewards,
        use_vllm=use_vllm, vllm_mode=cfg.vllm if use_vllm else "colocate",
    )
    reward = MathAnswerReward() if cfg.reward == "math" else parity_reward
    trainer = CuresGRPOTrainer(model=model, processing_class=tok, reward_funcs=reward, args=args,
                               train_dataset=train_rows, policy=policy, policy_state=state, weighting=cfg.weighting,
                               estimator=cfg.estimator, score_norms=cfg.score_norms)
    main = trainer.accelerator.is_main_process
    evals = HeldOutEval(trainer, tok, held_out, cfg.max_completion_length, cfg.eval_steps)
    trainer.add_callback(evals)
    before = evals.accuracy(model) if main else None
    t0, eval_seconds = time.perf_counter(), evals.seconds
    trainer.train(resume_from_checkpoint=checkpoint)
    wall = time.perf_counter() - t0 - (evals.seconds - eval_seconds)  # periodic evaluations left out
    if not main:
        return {}
    after = evals.accuracy(trainer.model)
    with (out / "metrics.jsonl").open("w") as fh:
        for entry in trainer.state.log_history:
            fh.write(json.dumps(entry) + "\n")
    summary = {
        "policy": cfg.policy, "model": cfg.model, "dataset": cfg.dataset, "steps": trainer.state.global_step,
        "rollouts_total": trainer.policy_state.rollouts_total, "heldout_accuracy_before": before,
        "heldout_accuracy_after": after, "heldout_accuracy_during": evals.history, "train_wall_seconds": wall,
        "policy_seconds": trainer.policy_seconds, "score_norm_seconds": trainer.score_norm_seconds,
        "policy_share_of_train_time": trainer.policy_seconds / wall if wall > 0 else None,
        "device": "cuda" if cuda else "cpu", "processes": world, "config": asdict(cfg),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
