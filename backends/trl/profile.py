"""`cures profile`: every training prompt's pass rate under a model, before training.

Takes what `cures train` takes (model, dataset, rewards, sampling settings; TRL's parser) plus the options of
`ProfileArguments`, builds the same `CuresGRPOTrainer` and samples `rollouts_per_prompt` completions of every
prompt with its generation path (transformers `generate`, vLLM when on) at the training temperature, scored by the
training rewards. Work is saved chunk by chunk (`profile_chunks/chunk-NNNNNN.parquet`, each written atomically and
generated from its own seed, so an interrupted profile continues where it stopped and gives the numbers an
uninterrupted one gives). Writes, in `output_dir`:

- `pass_rates.csv`: `prompt_id,successes,attempts`, the file `cures simulate --init-pass-rate` reads;
- `profile.json`: the successes histogram, the shares never and always solved, the mean pass rate and a
  Beta-binomial fit of the counts, the mean completion length and the share clipped at the length cap, the model,
  dataset, seed and sampling settings, and the wall time and prompts per second.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cures._io import atomic_write, atomic_write_text, check_output_dir, run_lock
from cures.posterior import beta_binomial_fit

CHUNKS = "profile_chunks"
SETTINGS = "profile_settings.json"
PASS_RATES = "pass_rates.csv"
SUMMARY = "profile.json"


@dataclass
class ProfileArguments:
    """What `cures profile` adds to `cures train`'s options."""

    rollouts_per_prompt: int = field(default=8, metadata={"help": "Completions sampled per prompt (N')."})
    max_prompts: int | None = field(default=None, metadata={"help": "Profile only the first this many training "
                                                            "prompts (default: all)."})
    prompts_per_chunk: int = field(default=32, metadata={"help": "Prompts per saved chunk: a rerun continues after "
                                                         "the last finished chunk."})

    def __post_init__(self):
        for name in ("rollouts_per_prompt", "prompts_per_chunk", "max_prompts"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1; got {value}")


def _settings(script, args, model_args, prof: ProfileArguments, n_prompts: int) -> dict:
    """What makes two profiles comparable: a rerun into the same output_dir must match it."""
    return {"model": model_args.model_name_or_path, "dataset": script.dataset_name,
            "dataset_config": script.dataset_config, "n_problems": script.n_problems,
            "arith_max_level": script.arith_max_level, "system_prompt": script.system_prompt,
            "prompt_suffix": script.prompt_suffix, "reward_funcs": script.reward_funcs, "prompts": n_prompts,
            "rollouts_per_prompt": prof.rollouts_per_prompt, "prompts_per_chunk": prof.prompts_per_chunk,
            "seed": args.seed, "data_seed": args.data_seed, "temperature": args.temperature, "top_p": args.top_p,
            "top_k": args.top_k,
            "max_completion_length": args.max_completion_length, "success_threshold": args.success_threshold}


def _check_settings(out: Path, settings: dict) -> None:
    path = out / SETTINGS
    if not path.is_file():
        return
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        raise ValueError(f"output_dir {out}: {SETTINGS} is damaged; remove it and {CHUNKS}/ to start over") from None
    changed = [k for k in settings if saved.get(k) != settings[k]]
    if changed:
        k = changed[0]
        raise ValueError(f"output_dir {out} holds a profile made with other settings ({k}: {saved.get(k)!r} there, "
                         f"{settings[k]!r} now); use another output_dir")


def _chunk_path(out: Path, c: int) -> Path:
    return out / CHUNKS / f"chunk-{c:06d}.parquet"


def _read_chunk(path: Path, ids: list[int]):
    """A saved chunk, or None when it is missing or not the chunk these prompts make (then it is generated)."""
    import pandas as pd

    try:
        frame = pd.read_parquet(path)
    except Exception:  # noqa: BLE001 - any damage means: generate the chunk again
        return None
    return frame if frame["prompt_id"].tolist() == ids else None


def _write_chunk(path: Path, ids: list[int], success, lengths, clipped, k: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    shape = (len(ids), k)
    table = pa.table({"prompt_id": ids, "successes": success.reshape(shape).sum(1),
                      "attempts": np.full(len(ids), k), "tokens": lengths.reshape(shape).sum(1),
                      "clipped": clipped.reshape(shape).sum(1)})
    atomic_write(path, lambda fh: pq.write_table(table, fh))


def summarise(frame, settings: dict) -> dict:
    """profile.json's content from the per-prompt rows."""
    k = int(settings["rollouts_per_prompt"])
    s, n = frame["successes"].to_numpy(), frame["attempts"].to_numpy()
    attempts = int(n.sum())
    return {
        **settings,
        "histogram": np.bincount(s, minlength=k + 1).tolist(),  # prompts with 0, 1, ..., N' successes
        "share_never_solved": float(np.mean(s == 0)), "share_always_solved": float(np.mean(s == n)),
        "mean_pass_rate": float(s.sum() / attempts), "beta_binomial": beta_binomial_fit(s, n),
        "mean_completion_tokens": float(frame["tokens"].sum() / attempts),
        "clipped_share": float(frame["clipped"].sum() / attempts),
    }


def profile(argv: list[str], progress=None) -> dict:
    """Parse, build the trainer, sample every chunk not yet saved, write pass_rates.csv and profile.json; returns
    profile.json's content (empty on non-main processes). `progress(done_prompts, total_prompts)` after each
    chunk."""
    from transformers.trainer_utils import IntervalStrategy

    from cures.backends.trl.run import _quiet, build_trainer, parse_args

    _quiet()
    script, args, model_args, mixture, prof = parse_args(argv, extra=(ProfileArguments,), prog="cures profile")
    out = check_output_dir(args.output_dir, "output_dir")
    args.eval_strategy, args.eval_on_start = IntervalStrategy.NO, False  # a profile evaluates nothing else
    trainer = build_trainer(script, args, model_args, mixture, with_eval=False)
    data = trainer.train_dataset
    n = min(len(data), prof.max_prompts or len(data))
    settings = _settings(script, args, model_args, prof, n)
    _check_settings(out, settings)
    main = trainer.accelerator.is_main_process
    with run_lock(out, what="cures profile") if main else contextlib.nullcontext():
        return _profile(trainer, data, n, out, settings, prof, args, main, progress)


def _profile(trainer, data, n, out, settings, prof, args, main, progress) -> dict:
    import pandas as pd
    from transformers import set_seed

    if main:
        atomic_write_text(out / SETTINGS, json.dumps(settings, indent=2) + "\n")
    ids_of = [[int(data[i]["prompt_id"]) if "prompt_id" in data.column_names else i
               for i in range(c, min(n, c + prof.prompts_per_chunk))] for c in range(0, n, prof.prompts_per_chunk)]
    todo = [c for c, ids in enumerate(ids_of) if _read_chunk(_chunk_path(out, c), ids) is None]
    trainer.accelerator.wait_for_everyone()  # every process decided on the same chunks before any is written
    done = sum(len(ids) for c, ids in enumerate(ids_of) if c not in todo)
    if progress is not None:
        progress(done, n)
    trainer.model.eval()
    t0, generated = time.perf_counter(), 0
    for c in todo:
        set_seed(args.seed + c)  # each chunk its own seed: a resumed profile samples what an uninterrupted one did
        start = c * prof.prompts_per_chunk
        rows = [data[i] for i in range(start, start + len(ids_of[c]))]
        rollouts, success = trainer.sample_and_score(rows, prof.rollouts_per_prompt)
        lengths, clipped = trainer.completion_lengths(rollouts)
        if main:
            _write_chunk(_chunk_path(out, c), ids_of[c], success, lengths, clipped, prof.rollouts_per_prompt)
        done += len(ids_of[c])
        generated += len(ids_of[c])
        if progress is not None:
            progress(done, n)
    wall = time.perf_counter() - t0
    trainer.accelerator.wait_for_everyone()
    if not main:
        return {}
    frame = pd.concat([pd.read_parquet(_chunk_path(out, c)) for c in range(len(ids_of))], ignore_index=True)
    atomic_write_text(out / PASS_RATES, frame[["prompt_id", "successes", "attempts"]].to_csv(index=False))
    summary = {**summarise(frame, settings), "wall_seconds": wall, "prompts_profiled_now": generated,
               "prompts_per_second": generated / wall if wall > 0 and generated else None,
               "output_dir": str(out)}
    atomic_write_text(out / SUMMARY, json.dumps(summary, indent=2) + "\n")
    return summary
