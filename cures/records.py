"""Per-prompt records of real training runs: `rollouts.parquet` in a run's output directory, one row per slot of
every policy step (columns: `cures.policies.step.RECORD_COLUMNS`).

`rollouts.parquet` is a directory of Parquet parts, one per policy step (`step-0000012.parquet`, each written
atomically), which pandas and pyarrow read as one table (`pandas.read_parquet(path)`): an interrupted run keeps
every step it finished, and a run resumed from a checkpoint drops the parts of the steps after it
(`drop_steps_from`), so the records always match the policy state they continue from.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from cures._io import atomic_write

RECORDS = "rollouts.parquet"
_PART = re.compile(r"step-(\d+)\.parquet")


def write_step(directory, step: int, records: dict[str, np.ndarray]) -> Path:
    """Write one step's rows as `directory/step-NNNNNNN.parquet` (atomically; a rewrite of the same step replaces
    it)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({k: (v.tolist() if v.dtype == object else v) for k, v in records.items()})
    return atomic_write(Path(directory) / f"step-{step:07d}.parquet", lambda fh: pq.write_table(table, fh))


def parts(directory) -> dict[int, Path]:
    """The step parts in `directory`: step -> path."""
    directory = Path(directory)
    if not directory.is_dir():
        return {}
    found = {}
    for path in directory.iterdir():
        match = _PART.fullmatch(path.name)
        if match:
            found[int(match.group(1))] = path
    return found


def drop_steps_from(directory, first: int) -> int:
    """Remove the parts of steps >= `first` (a resume from a checkpoint taken before them); returns how many."""
    gone = [path for step, path in parts(directory).items() if step >= first]
    for path in gone:
        path.unlink(missing_ok=True)
    return len(gone)


def read_records(run_dir, option: str = "--run"):
    """The records of a run directory (or of a `rollouts.parquet` directory) as one DataFrame, steps in order; a
    missing, empty or unreadable record is a ValueError naming `option` and the path."""
    import pandas as pd
    import pyarrow as pa

    from cures.policies.step import RECORD_COLUMNS

    path = Path(run_dir)
    if not path.exists():
        raise ValueError(f"{option} {path}: no such directory")
    directory = path if path.name == RECORDS else path / RECORDS
    found = parts(directory)
    if not found:
        raise ValueError(f"{option} {path}: no per-prompt records ({RECORDS} with step parts; written by `cures "
                         "train` since cures 0.2)")
    frames = []
    for step in sorted(found):
        try:
            frame = pd.read_parquet(found[step])
        except (OSError, pa.ArrowException, ValueError) as exc:
            raise ValueError(f"{option} {path}: {found[step].name} is not a readable Parquet file "
                             f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
        missing = [c for c in RECORD_COLUMNS if c not in frame.columns]
        if missing:
            raise ValueError(f"{option} {path}: {found[step].name} lacks the columns {', '.join(missing)}")
        frames.append(frame[list(RECORD_COLUMNS)])
    return pd.concat(frames, ignore_index=True)
