"""Training and evaluation problems: built-in generators, local files and directories, or Hub datasets.

`load_source` returns a `datasets.DatasetDict`; `to_prompts` turns any split into TRL's format (a `prompt` column,
conversational) with an `answer` column for the math reward and a `prompt_id` equal to the row number.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

BUILTIN = ("arith", "gsm-symbolic")
FILE_TYPES = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}
QUESTION_COLUMNS = ("question", "problem")  # GSM8K, MATH / NuminaMath
ANSWER_COLUMNS = ("answer", "solution")  # the gold is the text after ####, the last \boxed{}, or the whole value
PROMPT_SUFFIX = " Give the final answer as \\boxed{answer}."


def arith_problems(n: int, seed: int = 0, levels: tuple[int, ...] = (1, 2, 3, 4, 5)) -> list[dict]:
    """n multi-step integer arithmetic problems; level L has L + 1 operands, larger numbers and more products,
    so pass rates spread out from easy to hard. Deterministic in `seed`."""
    if n < 1:
        raise ValueError(f"arith needs at least 1 problem; got {n}")
    if not levels or min(levels) < 1:
        raise ValueError(f"arith levels must be at least 1; got {levels}")
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        level = levels[i % len(levels)]
        hi = 10 ** min(1 + level // 2, 3)
        expr = str(rng.randint(1, hi))
        for _ in range(level):
            op = rng.choice(["+", "-", "*"] if level > 1 else ["+", "-"])
            term = rng.randint(1, 12 if op == "*" else hi)
            expr = f"({expr} {op} {term})" if rng.random() < 0.5 else f"{expr} {op} {term}"
        value = eval(expr, {"__builtins__": {}})  # generated above: digits, + - * and parentheses only
        rows.append({"question": f"Compute {expr}.", "answer": str(value), "level": level})
    return rows


def _gsm_symbolic(n: int, seed: int) -> list[dict]:
    try:
        import reasoning_gym
    except ImportError:
        raise ValueError("the gsm-symbolic dataset needs the reasoning-gym package (pip install reasoning-gym)"
                         ) from None
    data = reasoning_gym.create_dataset("gsm_symbolic", size=n, seed=seed)
    return [{"question": item["question"], "answer": str(item["answer"])} for item in data]


def builtin_source(name: str, n_train: int, n_test: int, seed: int = 0, max_level: int = 5):
    """`arith` or `gsm-symbolic` as a DatasetDict with `train` (n_train problems) and `test` (n_test, drawn with
    another seed)."""
    import datasets

    if n_train < 1:
        raise ValueError(f"n_problems must be at least 1; got {n_train}")
    if n_test < 0:
        raise ValueError(f"n_eval_problems must be at least 0; got {n_test}")
    if name == "arith" and max_level < 1:
        raise ValueError(f"arith_max_level must be at least 1; got {max_level}")

    def make(n, s):
        return arith_problems(n, s, tuple(range(1, max_level + 1))) if name == "arith" else _gsm_symbolic(n, s)

    splits = {"train": datasets.Dataset.from_list(make(n_train, seed))}
    if n_test:
        splits["test"] = datasets.Dataset.from_list(make(n_test, seed + 1_000_003))
    return datasets.DatasetDict(splits)


def load_source(name: str, config: str | None = None, **builtin):
    """A DatasetDict from `name`: a built-in generator (`builtin` gives its sizes), a .jsonl/.json/.parquet/.csv
    file, a local directory (saved with `save_to_disk`, or data files such as train.jsonl / test.jsonl), or a Hub
    dataset id (with `config`). Unreadable or unavailable data raises a one-line ValueError."""
    import datasets

    if name in BUILTIN:
        return builtin_source(name, **builtin)
    path = Path(name).expanduser()
    if path.is_file():
        kind = FILE_TYPES.get(path.suffix)
        if kind is None:
            raise ValueError(f"unsupported dataset file type {path.suffix!r} (use {', '.join(FILE_TYPES)})")

        def load():
            return datasets.load_dataset(kind, data_files=str(path))
    elif path.is_dir():
        saved = (path / "dataset_dict.json").is_file() or (path / "state.json").is_file()

        def load():
            return datasets.load_from_disk(str(path)) if saved else datasets.load_dataset(str(path), name=config)
    elif name.startswith((".", "/", "~")) or path.suffix in FILE_TYPES:
        raise ValueError(f"dataset {name!r} not found: no such file or directory")
    else:
        _check_hub_reachable("dataset", name)

        def load():
            return datasets.load_dataset(name, name=config)
    try:
        data = load()
    except Exception as exc:  # datasets, pyarrow and the Hub client raise many types for unreadable input
        raise ValueError(f"cannot read dataset {name}: {_first_line(exc)}") from None
    if isinstance(data, datasets.Dataset):
        data = datasets.DatasetDict({"train": data})
    return data


def split(data, name: str, source: str):
    """One split of a DatasetDict, or a one-line error naming the splits there are."""
    if name not in data:
        raise ValueError(f"dataset {source} has no split {name!r}; splits: {', '.join(data)}")
    return data[name]


def to_prompts(ds, source: str, question_column: str | None = None, answer_column: str | None = None,
               system_prompt: str | None = None, prompt_suffix: str = PROMPT_SUFFIX):
    """TRL's format: a conversational `prompt` (the system prompt, then the question + `prompt_suffix`), unless the
    data already has a `prompt` column and no question column is named; an `answer` column (copied from
    `answer_column`, which stays as it is, e.g. for `trl.rewards.accuracy_reward`'s `solution`); `prompt_id` = row.

    Columns are found automatically when not named (question/problem, answer/solution). A missing or null
    question, or an empty dataset, raises ValueError."""
    import datasets

    columns = ds.column_names
    if len(ds) == 0:
        raise ValueError(f"dataset {source} is empty")
    if question_column is None and "prompt" in columns:
        _check_not_null(ds, "prompt", source)
    else:
        question_column = question_column or _first_present(QUESTION_COLUMNS, columns, source, "question_column")
        _check_not_null(ds, question_column, source)
        system = [{"role": "system", "content": system_prompt}] if system_prompt else []

        def prompt(row):
            return {"prompt": [*system, {"role": "user", "content": str(row[question_column]) + prompt_suffix}]}

        if "prompt" in columns:
            ds = ds.remove_columns("prompt")
        ds = ds.map(prompt)
    if answer_column is None:
        answer_column = next((c for c in ANSWER_COLUMNS if c in columns), None)
    elif answer_column not in columns:
        raise ValueError(f"dataset {source} has no answer column {answer_column!r}; columns: {', '.join(columns)}")
    if answer_column is not None and answer_column != "answer":
        ds = ds.remove_columns("answer") if "answer" in ds.column_names else ds
        ds = ds.add_column("answer", [None if a is None else str(a) for a in ds[answer_column]])
    elif answer_column == "answer":
        ds = ds.cast_column("answer", datasets.Value("string"))
    if "prompt_id" in ds.column_names:
        ds = ds.remove_columns("prompt_id")
    return ds.add_column("prompt_id", list(range(len(ds))))


def _first_present(candidates, columns, source, option) -> str:
    for c in candidates:
        if c in columns:
            return c
    raise ValueError(f"dataset {source} has no prompt or question column (looked for prompt, "
                     f"{', '.join(candidates)}); set {option}. Columns: {', '.join(columns)}")


def _check_not_null(ds, column: str, source: str) -> None:
    if column not in ds.column_names:
        raise ValueError(f"dataset {source} has no column {column!r}; columns: {', '.join(ds.column_names)}")
    missing = [i for i, v in enumerate(ds[column]) if v is None or (isinstance(v, str | list) and not v)]
    if missing:
        raise ValueError(f"dataset {source}: {len(missing)} rows have an empty or null {column!r} (first: row "
                         f"{missing[0]}); drop them first")


def _check_hub_reachable(kind: str, name: str) -> None:
    """Offline (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE), a Hub id that is not in the local cache fails at once."""
    flags = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE") if kind == "dataset" else ("HF_HUB_OFFLINE",)
    offline = any(os.environ.get(v, "").lower() in ("1", "true", "yes", "on") for v in flags)
    if not offline or _in_hub_cache(kind, name):
        return
    raise ValueError(f"{kind} {name!r} is not a local path and not in the Hugging Face cache, and the machine is "
                     "offline (HF_HUB_OFFLINE=1): download it once online, or give a local directory")


def _in_hub_cache(kind: str, name: str) -> bool:
    from huggingface_hub import scan_cache_dir

    if kind == "dataset":
        try:
            import datasets.config

            cached = Path(datasets.config.HF_DATASETS_CACHE)
            if any(cached.glob(name.replace("/", "___") + "*")):
                return True
        except OSError:  # no datasets cache at all
            pass
    try:
        repos = scan_cache_dir().repos
    except Exception:  # an absent or unreadable cache holds nothing
        return False
    return any(r.repo_id == name and r.repo_type == kind for r in repos)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
