"""Training data without internet: an arithmetic generator with difficulty levels, local files, reasoning-gym."""

from __future__ import annotations

import random
from pathlib import Path

COLUMNS = ("prompt_id", "question", "answer")


def arith_problems(n: int, seed: int = 0, levels: tuple[int, ...] = (1, 2, 3, 4, 5)) -> list[dict]:
    """n multi-step integer arithmetic problems; level L has L + 1 operands, larger numbers and more products,
    so pass rates spread out from easy to hard. Deterministic in `seed`."""
    if n < 1:
        raise ValueError(f"arith needs at least 1 problem; got {n}")
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
        rows.append({"prompt_id": i, "question": f"Compute {expr}.", "answer": str(value), "level": level})
    return rows


def _gsm_symbolic(n: int, seed: int) -> list[dict]:
    try:
        import reasoning_gym
    except ImportError:
        raise ValueError("the gsm-symbolic dataset needs the reasoning-gym package (pip install reasoning-gym)"
                         ) from None
    data = reasoning_gym.create_dataset("gsm_symbolic", size=n, seed=seed)
    return [{"prompt_id": i, "question": item["question"], "answer": str(item["answer"])}
            for i, item in enumerate(data)]


def load_problems(source: str, question_column: str = "question", answer_column: str = "answer", n: int = 1000,
                  seed: int = 0, levels: tuple[int, ...] = (1, 2, 3, 4, 5)):
    """A `datasets.Dataset` with columns prompt_id, question, answer (and any others of the source).

    `source`: `arith` or `gsm-symbolic` (built in, n problems), a .jsonl/.json/.parquet file, or a directory saved
    with `datasets.save_to_disk`. A missing column, an empty dataset or an unreadable file raises ValueError.
    """
    import datasets

    if source in ("arith", "gsm-symbolic"):
        rows = arith_problems(n, seed, levels) if source == "arith" else _gsm_symbolic(n, seed)
        return datasets.Dataset.from_list(rows)
    path = Path(source)
    if not path.exists():
        raise ValueError(f"dataset {source!r} not found: use arith, gsm-symbolic, a .jsonl/.parquet file or a "
                         "datasets directory")
    if not path.is_dir() and path.suffix not in (".jsonl", ".json", ".parquet"):
        raise ValueError(f"unsupported dataset file type {path.suffix!r} (use .jsonl, .json or .parquet)")
    try:
        if path.is_dir():
            ds = datasets.load_from_disk(str(path))
        else:
            kind = "parquet" if path.suffix == ".parquet" else "json"
            ds = datasets.load_dataset(kind, data_files=str(path), split="train")
    except Exception as exc:  # datasets and pyarrow raise many types for unreadable input
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(f"cannot read dataset {source}: {first}") from None
    if isinstance(ds, datasets.DatasetDict):
        ds = ds["train"] if "train" in ds else next(iter(ds.values()))
    if len(ds) == 0:
        raise ValueError(f"dataset {source} is empty")
    for column in (question_column, answer_column):
        if column not in ds.column_names:
            raise ValueError(f"dataset {source} has no column {column!r}; columns: {', '.join(ds.column_names)}")
    ds = ds.rename_columns({c: t for c, t in ((question_column, "question"), (answer_column, "answer")) if c != t})
    ds = ds.cast_column("answer", datasets.Value("string"))
    if "prompt_id" in ds.column_names:
        ds = ds.remove_columns("prompt_id")
    return ds.add_column("prompt_id", list(range(len(ds))))
