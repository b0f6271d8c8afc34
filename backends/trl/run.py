"""`cures train`: `trl grpo`'s command line (a YAML recipe and any field as a flag) with a `cures` policy.

Parsed by TRL's `TrlParser` over `CuresScriptArguments` (data, rewards, evaluation set), `CuresGRPOConfig` (every
GRPOConfig field plus the policy), `ModelConfig` (dtype, attention, LoRA) and `DatasetMixtureConfig`. A recipe that
works with `trl grpo` works here once `policy:` is added. Writes `metrics.jsonl` and `summary.json` into output_dir.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from trl import DatasetMixtureConfig, ModelConfig, TrlParser
from trl.scripts.grpo import GRPOScriptArguments

from cures._io import check_output_dir
from cures.backends.trl.config import CuresGRPOConfig
from cures.backends.trl.data import BUILTIN, PROMPT_SUFFIX


@dataclass
class CuresScriptArguments(GRPOScriptArguments):
    """`trl grpo`'s script arguments (dataset_name, dataset_config, splits, reward_funcs, reward model) plus the
    question/answer columns, a system prompt, the built-in generators' sizes and the evaluation set."""

    backend: str = field(
        default="trl", metadata={"help": "Training backend: trl (these options) or verl (verl 0.9.1 in its own "
                                 "environment, pip install 'cures[verl]'; it takes --config FILE and Hydra overrides "
                                 "key=value, see the README's 'Training with verl').", "choices": ["trl"]})
    question_column: str | None = field(
        default=None, metadata={"help": "Column with the problem text (default: prompt as is, else question or "
                                "problem)."})
    answer_column: str | None = field(
        default=None, metadata={"help": "Column with the gold answer for the math reward (default: answer or "
                                "solution; #### and \\boxed{} answers are extracted)."})
    system_prompt: str | None = field(default=None, metadata={"help": "System message put before every question."})
    prompt_suffix: str = field(default=PROMPT_SUFFIX, metadata={"help": "Text appended to every question."})
    n_problems: int = field(default=512, metadata={"help": "Training problems of a built-in generator (arith, "
                                                   "gsm-symbolic)."})
    n_eval_problems: int = field(default=64, metadata={"help": "Test problems of a built-in generator."})
    arith_max_level: int = field(default=5, metadata={"help": "arith difficulty levels 1..this."})
    eval_dataset_name: str | None = field(
        default=None, metadata={"help": "A separate evaluation set (path or Hub id, e.g. a MATH500 file); default: "
                                "the dataset's test split."})
    eval_holdout_size: int = field(
        default=0, metadata={"help": "Hold out this many training rows for evaluation instead (0: off)."})

    def __post_init__(self):
        for name in ("n_problems", "n_eval_problems", "arith_max_level", "eval_holdout_size"):
            low = 1 if name in ("n_problems", "arith_max_level") else 0
            if getattr(self, name) < low:
                raise ValueError(f"{name} must be at least {low}; got {getattr(self, name)}")


class CuresParser(TrlParser):
    """TrlParser whose errors are exceptions (one line each) instead of a usage dump and exit."""

    def error(self, message):
        raise ValueError(message.replace("argument ", "option ", 1))


def make_parser(extra: tuple = (), prog: str = "cures train") -> CuresParser:
    return CuresParser((CuresScriptArguments, CuresGRPOConfig, ModelConfig, DatasetMixtureConfig, *extra), prog=prog)


def parse_args(argv: list[str], extra: tuple = (), prog: str = "cures train"):
    """(script args, config, model args, mixture args, *extra) from `--config recipe.yaml` and flags; flags win over
    the recipe. Unknown keys, bad types and bad values raise a one-line ValueError naming them."""
    argv = list(argv)
    tokens: list[str] = []
    if "--config" in argv:
        i = argv.index("--config")
        if i + 1 >= len(argv):
            raise ValueError("--config needs a YAML file")
        path = argv[i + 1]
        del argv[i : i + 2]
        tokens = _recipe_tokens(path)
    parser = make_parser(extra, prog)
    try:
        *parsed, rest = parser.parse_args_into_dataclasses(args=tokens + argv, return_remaining_strings=True)
    except TypeError as exc:
        raise ValueError(str(exc)) from None
    if rest:
        unknown = [t for t in rest if t.startswith("-")] or rest
        raise ValueError(f"unknown option{'s' if len(unknown) > 1 else ''}: {' '.join(unknown)} (see {prog} "
                         "--help)")
    return tuple(parsed)


def _recipe_tokens(path: str) -> list[str]:
    """A YAML recipe as command-line tokens, so that its values are type-checked like flags; its `env:` mapping
    sets environment variables (as TrlParser does)."""
    import yaml

    try:
        with open(path) as fh:
            recipe = yaml.safe_load(fh)
    except OSError as exc:
        raise ValueError(f"--config {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"--config {path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if recipe is None:
        return []
    if not isinstance(recipe, dict):
        raise ValueError(f"--config {path} must be a YAML mapping of option: value")
    env = recipe.pop("env", {}) or {}
    if not isinstance(env, dict):
        raise ValueError(f"--config {path}: env must be a mapping")
    for key, value in env.items():
        os.environ[str(key)] = str(value)
    tokens = []
    for key, value in recipe.items():
        if value is None:
            continue
        tokens.append(f"--{key}")
        if isinstance(value, bool):
            tokens.append(str(value).lower())
        elif isinstance(value, dict):
            tokens.append(json.dumps(value))
        elif isinstance(value, list):
            tokens += [json.dumps(v) if isinstance(v, dict | list) else str(v) for v in value]
        else:
            tokens.append(str(value))
    return tokens


def build_datasets(script: CuresScriptArguments, args: CuresGRPOConfig, mixture: DatasetMixtureConfig):
    """(train, eval or None) in TRL's prompt format."""
    from cures.backends.trl.data import load_source, split, to_prompts

    seed = args.data_seed if args.data_seed is not None else args.seed  # TrainingArguments' data_seed, as HF's
    sizes = dict(n_train=script.n_problems, n_test=script.n_eval_problems, seed=seed,  # samplers use it
                 max_level=script.arith_max_level)
    columns = dict(question_column=script.question_column, answer_column=script.answer_column,
                   system_prompt=script.system_prompt, prompt_suffix=script.prompt_suffix)
    if script.dataset_streaming:
        raise ValueError("dataset_streaming is not supported: the policy picks prompts by row, so the training set "
                         "must be map-style")
    if mixture.datasets:
        from trl import get_dataset

        data, source = get_dataset(mixture), "mixture"
    elif script.dataset_name:
        data, source = load_source(script.dataset_name, script.dataset_config, **sizes), script.dataset_name
    else:
        raise ValueError(f"dataset_name is required: {', '.join(BUILTIN)}, a .jsonl/.parquet file, a local dataset "
                         "directory or a Hub dataset id")
    train = to_prompts(split(data, script.dataset_train_split, source), source, **columns)
    if args.eval_strategy == "no" and not args.eval_on_start:
        return train, None
    if script.eval_dataset_name:
        held = load_source(script.eval_dataset_name, **sizes)
        part = held[script.dataset_test_split if script.dataset_test_split in held else next(iter(held))]
        found = {k: (v if k not in ("question_column", "answer_column") or v in part.column_names else None)
                 for k, v in columns.items()}  # columns the eval set lacks are found automatically there
        return train, to_prompts(part, script.eval_dataset_name, **found)
    if script.eval_holdout_size:
        if script.eval_holdout_size >= len(train):
            raise ValueError(f"eval_holdout_size={script.eval_holdout_size} leaves no training rows of {len(train)}")
        cut = len(train) - script.eval_holdout_size
        held, train = train.select(range(cut, len(train))), train.select(range(cut))
        train = train.remove_columns("prompt_id").add_column("prompt_id", list(range(cut)))
        return train, held
    if script.dataset_test_split in data:
        return train, to_prompts(data[script.dataset_test_split], source, **columns)
    raise ValueError(f"evaluation is on (eval_strategy={args.eval_strategy}) but dataset {source} has no "
                     f"{script.dataset_test_split!r} split: set eval_dataset_name or eval_holdout_size")


def _quiet() -> None:
    import warnings

    import datasets

    datasets.disable_progress_bars()  # small maps; a failing run's stderr should be its one-line error
    warnings.filterwarnings("ignore", message=".*gradient_checkpointing.*deprecated", category=FutureWarning)


def build_trainer(script: CuresScriptArguments, args: CuresGRPOConfig, model_args: ModelConfig,
                  mixture: DatasetMixtureConfig, with_eval: bool = True):
    """The `CuresGRPOTrainer` that `cures train` runs (and `cures profile` samples with): model, tokenizer, reward
    functions and datasets resolved from the parsed options."""
    from trl import get_peft_config, get_quantization_config

    from cures.backends.trl.models import resolve_model
    from cures.backends.trl.rewards import resolve_reward_funcs
    from cures.backends.trl.trainer import CuresGRPOTrainer

    reward_funcs = resolve_reward_funcs(script.reward_funcs, script.reward_model_name_or_path)
    model, tokenizer = resolve_model(model_args.model_name_or_path, args.seed)
    train_set, eval_set = build_datasets(script, args, mixture)
    kwargs = {}
    if isinstance(model, str):
        init = dict(revision=model_args.model_revision, trust_remote_code=args.trust_remote_code,
                    attn_implementation=model_args.attn_implementation, dtype=model_args.dtype)
        args.model_init_kwargs = {**init, **(args.model_init_kwargs or {})}
        quantization = get_quantization_config(model_args)
        if quantization is not None:
            kwargs["quantization_config"] = quantization
    try:
        return CuresGRPOTrainer(model=model, reward_funcs=reward_funcs, args=args, train_dataset=train_set,
                                eval_dataset=eval_set if with_eval else None, processing_class=tokenizer,
                                peft_config=get_peft_config(model_args), **kwargs)
    except OSError as exc:  # transformers' loading errors for missing or unreadable models
        raise ValueError(f"cannot load model {model_args.model_name_or_path}: {str(exc).splitlines()[0]}") from None


def train(argv: list[str]) -> dict:
    """Parse, build, train, write metrics and summary; returns the summary (empty on non-main processes)."""
    _quiet()
    script, args, model_args, mixture = parse_args(argv)
    check_output_dir(args.output_dir, "output_dir")
    trainer = build_trainer(script, args, model_args, mixture)
    t0 = time.perf_counter()
    trainer.train(resume_from_checkpoint=args.resume_from_checkpoint)
    wall = time.perf_counter() - t0
    if not trainer.preempted:
        trainer.save_model(args.output_dir)
    summary = _summary(trainer, script, model_args, wall) if trainer.accelerator.is_main_process else {}
    trainer.end()  # finishes the trackers and destroys the process group (a clean multi-process exit)
    return summary


def _summary(trainer, script, model_args, wall: float) -> dict:
    from cures._io import atomic_write_text

    out = Path(trainer.args.output_dir)
    history = trainer.state.log_history
    atomic_write_text(out / "metrics.jsonl", "".join(json.dumps(entry) + "\n" for entry in history))
    evals = [e for e in history if "eval_accuracy" in e or any(k.startswith("eval_avg_at_") for k in e)]
    train_wall = wall - trainer.eval_seconds
    summary = {
        "policy": trainer.args.policy, "model": model_args.model_name_or_path, "dataset": script.dataset_name,
        "steps": trainer.state.global_step, "rollouts_total": trainer.policy_state.rollouts_total,
        "preempted": trainer.preempted,
        "evaluations": [{k: v for k, v in e.items() if k == "step" or k.startswith("eval_")} for e in evals],
        "train_wall_seconds": train_wall, "eval_seconds": trainer.eval_seconds,
        "policy_seconds": trainer.policy_seconds, "score_norm_seconds": trainer.score_norm_seconds,
        "policy_share_of_train_time": trainer.policy_seconds / train_wall if train_wall > 0 else None,
        "device": str(trainer.accelerator.device), "processes": trainer.accelerator.num_processes,
        "script_args": asdict(script),
        "config": {k: v for k, v in trainer.args.to_dict().items() if isinstance(v, str | int | float | bool | None)},
    }
    if not trainer.preempted:  # summary.json marks a finished run; a preempted one resumes instead
        atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary
