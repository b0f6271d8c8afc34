"""Per-prompt records (`cures.records`): one Parquet part per step, read back as one table, trimmed on resume, and
every damaged or missing record a one-line ValueError naming the option and the path."""

import numpy as np
import pandas as pd
import pytest

from cures.policies.step import RECORD_COLUMNS
from cures.records import RECORDS, drop_steps_from, parts, read_records, write_step


def rows(step: int, n: int = 3) -> dict:
    rng = np.random.default_rng(step)
    rollouts = rng.integers(1, 9, n)
    return {"step": np.full(n, step), "round": np.zeros(n, np.int64), "slot": np.arange(n),
            "purpose": np.array(["train"] * n, dtype=object), "prompt_id": rng.integers(0, 50, n),
            "rollouts": rollouts, "successes": rollouts // 2, "trained": rollouts, "group": np.arange(n),
            "reused_from": np.full(n, -1), "tokens": rollouts * 7, "mean_length": np.full(n, 7.0),
            "clipped": np.zeros(n, np.int64)}


def test_parts_read_back_as_one_table_in_step_order(tmp_path):
    for step in (2, 0, 1):
        write_step(tmp_path / RECORDS, step, rows(step))
    frame = read_records(tmp_path)
    assert list(frame.columns) == list(RECORD_COLUMNS) and frame["step"].tolist() == [0] * 3 + [1] * 3 + [2] * 3
    assert pd.read_parquet(tmp_path / RECORDS).shape == frame.shape  # pandas reads the directory as it is
    assert drop_steps_from(tmp_path / RECORDS, 1) == 2 and sorted(parts(tmp_path / RECORDS)) == [0]


@pytest.mark.parametrize(("damage", "message"), [
    ("missing", "no such directory"),
    ("empty", "no per-prompt records"),
    ("garbage", "is not a readable Parquet file"),
    ("columns", "lacks the columns"),
])
def test_bad_records_are_one_line_errors(tmp_path, damage, message):
    run = tmp_path / "run"
    if damage != "missing":
        (run / RECORDS).mkdir(parents=True)
    if damage == "garbage":
        (run / RECORDS / "step-0000000.parquet").write_bytes(b"PAR1 not really")
    if damage == "columns":
        write_step(run / RECORDS, 0, {k: v for k, v in rows(0).items() if k != "successes"})
    with pytest.raises(ValueError, match=message) as info:
        read_records(run, "--run")
    assert str(info.value).startswith(f"--run {run}") and "\n" not in str(info.value)
