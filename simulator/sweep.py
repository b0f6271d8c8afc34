"""`cures sweep`: `compare` over a grid of scenario settings and policy parameters, in parallel processes, resumable,
written as tidy tables (one row per cell x policy x seed) and a regime map (each cell's speed-ups over the baseline).

A cell is one `compare` run. Its results are saved under `OUT/cells/` as soon as it finishes (atomically), keyed by
a hash of everything that defines it, so an interrupted sweep, run again with the same definition, skips the cells
it has and runs the rest.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import itertools
import json
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from cures.renamed import refuse_renamed
from cures.simulator.config import FIELDS, build_config, parse_value

GRID_DIR = Path(__file__).parent / "grids"
POLICY_PREFIX = "policy."
NOT_GRIDDED = ("policy_params", "seeds", "seed", "threads")  # seeds are a cell's replicates, threads its speed


@dataclass
class Sweep:
    """What a sweep runs: `grid` maps a setting (a SimConfig field, or policy.PARAM: applied to every policy that has
    that parameter) to its values; every combination is a cell, run as `compare(policies, match=match)`."""

    grid: dict[str, list]
    policies: list[str] = field(default_factory=lambda: ["grpo", "cures"])
    scenario: str | None = None
    settings: dict = field(default_factory=dict)  # fixed settings of every cell
    match: str = "rollouts"
    policy_settings: dict = field(default_factory=dict)  # fixed policy parameters (for the policies that have them)

    def cells(self) -> list[dict]:
        keys = list(self.grid)
        return [dict(zip(keys, values, strict=True)) for values in itertools.product(*(self.grid[k] for k in keys))]

    def cell_id(self, cell: dict) -> str:
        text = json.dumps({"scenario": self.scenario, "settings": self.settings, "cell": cell,
                           "policies": self.policies, "match": self.match, "policy": self.policy_settings},
                          sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def config(self, cell: dict):
        """The cell's SimConfig (validated; errors name the grid key) and per-policy parameters."""
        settings = {**self.settings, **{k: v for k, v in cell.items() if not k.startswith(POLICY_PREFIX)}}
        try:
            cfg = build_config(self.scenario, settings)
        except ValueError as exc:
            raise ValueError(f"grid cell {_label(cell)}: {exc}") from None
        cfg.threads = 1  # the sweep's parallelism is its processes
        return cfg, self.policy_params(cell)

    def policy_params(self, cell: dict) -> dict[str, dict]:
        from cures.policies import get_spec

        params = {**self.policy_settings,
                  **{k[len(POLICY_PREFIX):]: v for k, v in cell.items() if k.startswith(POLICY_PREFIX)}}
        return {name: {k: v for k, v in params.items() if k in {p.name for p in get_spec(name).params}}
                for name in self.policies}

    def validate(self) -> Sweep:
        """Every name, key and cell checked before any work (one-line ValueErrors)."""
        from cures.policies import get_spec
        from cures.simulator.compare import MATCHES

        if self.match not in MATCHES:
            raise ValueError(f"match must be one of {', '.join(MATCHES)}; got {self.match!r}")
        if len(self.policies) < 2 or len(set(self.policies)) != len(self.policies):
            raise ValueError(f"policies needs at least two distinct names, the baseline first; got {self.policies}")
        for name in self.policies:
            get_spec(name)
        if not self.grid:
            raise ValueError("the grid is empty: give --grid KEY=V1,V2 or a grid file")
        known = set()
        for name in self.policies:
            known |= {p.name for p in get_spec(name).params}
        for key in self.policy_settings:
            if key not in known:
                refuse_renamed([key], prefix=POLICY_PREFIX, moved=True)
                raise ValueError(f"policy.{key}: no policy of {', '.join(self.policies)} has this parameter")
        for key, values in self.grid.items():
            if not isinstance(values, list) or not values:
                raise ValueError(f"grid {key}: needs a non-empty list of values; got {values!r}")
            if key.startswith(POLICY_PREFIX):
                if key[len(POLICY_PREFIX):] not in known:
                    refuse_renamed([key[len(POLICY_PREFIX):]], "grid: ", prefix=POLICY_PREFIX, moved=True)
                    raise ValueError(f"grid {key}: no policy of {', '.join(self.policies)} has parameter "
                                     f"{key[len(POLICY_PREFIX):]!r}")
            elif key not in FIELDS or key in NOT_GRIDDED:
                refuse_renamed([key], "grid: ")
                raise ValueError(f"grid {key}: not a setting that can vary over cells; allowed: "
                                 f"{', '.join(k for k in FIELDS if k not in NOT_GRIDDED)}, or policy.PARAM")
            seen = [json.dumps(v, sort_keys=True) for v in values]
            repeated = next((v for v, text in zip(values, seen, strict=True) if seen.count(text) > 1), None)
            if repeated is not None:
                raise ValueError(f"grid {key}: value {repeated!r} is given twice (its cells would run twice)")
        from cures.simulator.run import policy_for

        for cell in self.cells():
            cfg, params = self.config(cell)
            for name in self.policies:
                try:
                    policy_for(name, dataclasses.replace(cfg, policy_params={**cfg.policy_params, **params[name]}))
                except ValueError as exc:
                    raise ValueError(f"grid cell {_label(cell)}: {exc}") from None
        return self


def _label(cell: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in cell.items())


def parse_grid_option(text: str) -> tuple[str, list]:
    """`KEY=V1,V2,...` (each value read as a TOML value, a bare word as text), or `KEY=[...]` as one TOML array
    (for values that contain commas, such as pass-rate specs)."""
    if "=" not in text:
        raise ValueError(f"--grid expects KEY=V1,V2,...; got {text!r}")
    key, values = (s.strip() for s in text.split("=", 1))
    if values.startswith("["):
        parsed = parse_value(values)
        if not isinstance(parsed, list):
            raise ValueError(f"--grid {key}: {values!r} is not a TOML array")
        return key, parsed
    parsed = [parse_value(v.strip()) for v in values.split(",") if v.strip()]
    if not parsed:
        raise ValueError(f"--grid {key}: no values")
    return key, parsed


def load_grid_file(name_or_path: str) -> dict:
    """A grid file (TOML): `policies`, `scenario`, `match`, a [settings] table of fixed settings and a [grid] table of
    KEY = [values]; in both, `policy.PARAM` (a dotted key, or a [grid.policy] table) is a policy parameter, returned
    apart as `policy_settings` for [settings]. A bare name is one of `simulator/grids/`."""
    named = GRID_DIR / f"{name_or_path}.toml"
    path = named if named.is_file() else Path(name_or_path)
    if not path.is_file():
        raise ValueError(f"--grid-file {name_or_path}: not a file and not one of "
                         f"{', '.join(sorted(p.stem for p in GRID_DIR.glob('*.toml')))}")
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"--grid-file {path} is not valid TOML: {exc}") from None
    data.pop("description", None)
    unknown = sorted(set(data) - {"policies", "scenario", "match", "settings", "grid"})
    if unknown:
        raise ValueError(f"--grid-file {path}: unknown keys {', '.join(unknown)}; allowed: policies, scenario, match, "
                         "settings, grid")
    for key, kind in (("policies", list), ("scenario", str), ("match", str), ("settings", dict), ("grid", dict)):
        if key in data and not isinstance(data[key], kind):
            raise ValueError(f"--grid-file {path}: {key} must be a {kind.__name__}; got {data[key]!r}")
    for table in ("settings", "grid"):  # `policy.tau = ...` or a [grid.policy] table: TOML nests dotted keys
        flat = {}
        for key, value in data.get(table, {}).items():
            if key == "policy" and isinstance(value, dict):
                flat |= {f"{POLICY_PREFIX}{k}": v for k, v in value.items()}
            else:
                flat[key] = value
        if table in data:
            data[table] = flat
    settings = data.get("settings", {})
    data["policy_settings"] = {k[len(POLICY_PREFIX):]: settings.pop(k) for k in list(settings)
                               if k.startswith(POLICY_PREFIX)}
    return data


# ----------------------------------------------------------------------------------------------------------------
# Running cells
# ----------------------------------------------------------------------------------------------------------------


def run_cell(sweep: Sweep, cell: dict):
    """One cell: `compare` with the cell's settings; returns (seed rows, policy rows) as DataFrames, with the cell's
    values as leading columns."""
    from cures.simulator.compare import compare, comparison_frame, seeds_frame
    from cures.simulator.run import stacked
    from cures.simulator.scaling import ACCOUNTINGS, axis, cost_to_reach

    cfg, params = sweep.config(cell)
    result, runs = compare(sweep.policies, cfg, match=sweep.match, fits=False, policy_params=params)
    acc, peak = result["accuracy_metric"], result["baseline_peak_accuracy"]
    seeds = seeds_frame(runs, acc, cfg.train_cost)
    for a in ACCOUNTINGS:  # each seed's own cost to reach the baseline's peak (NaN: never)
        seeds[f"cost_to_baseline_peak_{a}"] = [
            cost_to_reach(axis([r], a, cfg.train_cost)[0], stacked([r], acc)[0], peak)
            for name in runs for r in runs[name]]
    policies = comparison_frame(result)
    policies = policies.drop(columns=[c for c in policies if c.startswith("fit_")])  # a sweep fits no curves
    policies["baseline_peak_accuracy"] = peak
    policies["passes"] = policies["steps"] * cfg.prompts_per_step / cfg.n_prompts
    lead = {"cell": sweep.cell_id(cell), **{k: _cell_value(v) for k, v in cell.items()}}

    def with_cell(df):  # a measured column named like a grid key (steps, passes) becomes NAME_run
        df = df.rename(columns={c: f"{c}_run" for c in df.columns if c in lead})
        return df.assign(**lead)[[*lead, *df.columns]]

    return with_cell(seeds), with_cell(policies)


def _cell_value(v):
    return v if isinstance(v, int | float | str | bool) else json.dumps(v)


def _cell_paths(out: Path, cell_id: str) -> tuple[Path, Path]:
    return out / "cells" / f"{cell_id}.seeds.parquet", out / "cells" / f"{cell_id}.policies.parquet"


def _cell_result(args) -> tuple[str, object, object]:
    """A cell's (id, seed rows, policy rows), run wherever the executor puts it; the driver saves them."""
    sweep, cell = args
    return (sweep.cell_id(cell), *run_cell(sweep, cell))


def _save_cell(out: Path, result) -> None:
    from cures._io import atomic_write

    cell_id, seeds, policies = result
    seeds_path, policies_path = _cell_paths(out, cell_id)
    atomic_write(seeds_path, lambda fh: seeds.to_parquet(fh, index=False))
    atomic_write(policies_path, lambda fh: policies.to_parquet(fh, index=False))  # written last: the cell is done


def saved_cell(sweep: Sweep, out: Path, cell: dict):
    """A finished cell's (seed rows, policy rows) from `out/cells/`; None when it has not run. A saved file that
    cannot be read (truncated, overwritten) or holds another cell's rows also gives None, so the cell runs again:
    the saved cells are a cache of `run_cell`. A path there that is not a file is a ValueError."""
    import pandas as pd

    paths = _cell_paths(out, sweep.cell_id(cell))
    for path in paths:
        if path.exists() and not path.is_file():
            raise ValueError(f"--out {out}: {path} is not a file; remove it to run that cell again")
    if not all(path.is_file() for path in paths):
        return None
    try:
        seeds, policies = (pd.read_parquet(path) for path in paths)
    except Exception:  # noqa: BLE001 - any unreadable file (pyarrow raises several types) means: run the cell again
        return None
    cell_id = sweep.cell_id(cell)
    for frame in (seeds, policies):
        if "cell" not in frame or not (frame["cell"] == cell_id).all() or "policy" not in frame:
            return None
    if list(policies["policy"]) != list(sweep.policies):
        return None
    return seeds, policies


def run_sweep(sweep: Sweep, out: Path, jobs: int | None = 2, progress=None, draw=None, executor: str = "processes",
              address: str | None = None) -> dict:
    """Run the cells not yet in `out/cells/`, at most `jobs` at once (`progress(done, total)` after each), as
    processes on this machine or as Ray tasks (`executor="ray"`, on a local Ray or the cluster at `address`; see
    `cures.simulator.executors`; the same cells give the same bytes either way), then write
    sweep.csv/.parquet (cell x policy x seed), regime_map.csv/.parquet/.md, sweep.json, and regime_map.png when
    `draw` is given (see `write_results`). `cells_rerun` counts
    the cells whose saved results were damaged and ran again."""
    from cures.simulator.executors import check_executor

    check_executor(executor, address)  # before anything is written: an unreachable head has Ray retry for minutes
    out = Path(out)
    cells = sweep.cells()
    saved = [saved_cell(sweep, out, c) for c in cells]  # read once: the reused cells' rows go to the tables as read
    todo = [c for c, frames in zip(cells, saved, strict=True) if frames is None]
    rerun = sum(1 for c in todo if any(p.exists() for p in _cell_paths(out, sweep.cell_id(c))))
    done = len(cells) - len(todo)
    if progress is not None:
        progress(done, len(cells))
    t0 = time.perf_counter()
    (out / "cells").mkdir(parents=True, exist_ok=True)
    with open(out / ".cures-sweep.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ValueError(f"--out {out}: another cures sweep is writing there") from None
        _run_cells(sweep, out, todo, jobs, done, len(cells), progress, executor, address)
        return {**write_results(sweep, out, cells, saved, time.perf_counter() - t0, len(cells) - len(todo),
                                 draw),
                "cells_rerun": rerun}


def _run_cells(sweep: Sweep, out: Path, todo: list[dict], jobs: int | None, done: int, total: int, progress,
               executor: str, address: str | None) -> None:
    from cures.simulator.executors import run_in_processes, run_on_ray

    if not todo:
        return

    def finished(result):
        nonlocal done
        _save_cell(out, result)  # as soon as it arrives: an interrupted sweep keeps every finished cell
        done += 1
        if progress is not None:
            progress(done, total)

    args = [(sweep, c) for c in todo]
    if executor == "ray":
        run_on_ray(_cell_result, args, jobs, finished, address)
    else:
        run_in_processes(_cell_result, args, jobs or 2, finished)


def write_results(sweep: Sweep, out: Path, cells: list[dict], saved: list, wall: float, reused: int,
                  draw=None) -> dict:
    """The sweep's tables, regime map and sweep.json from every cell's rows: `saved[i]` as `saved_cell` read them
    before the run, or None for a cell that has just run (read now). `draw(path, regime, keys, match, baseline)`, when
    given, draws regime_map.png (`cures.analysis.regime.regime_plot`; the simulator itself draws nothing)."""
    import pandas as pd

    from cures.simulator.output import write_json, write_table
    from cures.simulator.regime import regime_map_frame, regime_markdown

    frames = []
    for cell, frame in zip(cells, saved, strict=True):
        frame = frame if frame is not None else saved_cell(sweep, out, cell)
        if frame is None:
            raise ValueError(f"--out {out}: the results of cell {_label(cell)} changed while the sweep ran")
        frames.append(frame)
    seeds = pd.concat([f[0] for f in frames], ignore_index=True)
    policies = pd.concat([f[1] for f in frames], ignore_index=True)
    regime = regime_map_frame(policies, list(sweep.grid), sweep.match, sweep.policies[0])
    files = [*write_table(out / "sweep", seeds), *write_table(out / "regime_map", regime)]
    if draw is not None:
        files.append(draw(out / "regime_map.png", regime, list(sweep.grid), sweep.match, sweep.policies[0]))
    (out / "regime_map.md").write_text(regime_markdown(regime, list(sweep.grid), sweep.match, sweep.policies[0]))
    files.append(out / "regime_map.md")
    info = {"grid": sweep.grid, "policies": sweep.policies, "scenario": sweep.scenario, "settings": sweep.settings,
            "match": sweep.match, "cells": len(cells), "cells_reused": reused, "runs": int(len(seeds)),
            "wall_seconds": wall}
    files.append(write_json(out / "sweep.json", info))
    return {"files": files, **info}


def read_finished_sweep(out: Path) -> tuple[dict, str]:
    """(sweep.json, regime_map.md) of a finished sweep in `out`, checked: a file that is missing, unreadable or not
    what `cures sweep` writes is a ValueError naming it."""
    out = Path(out)
    missing = [f for f in ("sweep.json", "regime_map.png", "regime_map.md") if not (out / f).is_file()]
    if missing:
        raise ValueError(f"--sweep {out}: not a finished `cures sweep` output (missing {', '.join(missing)})")

    def read(name, parse):
        try:
            return parse((out / name).read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"--sweep {out}: {name} is damaged ({exc})") from None

    info, table = read("sweep.json", json.loads), read("regime_map.md", str)
    kinds = {"cells": int, "runs": int, "policies": list, "grid": dict, "match": str}
    if not isinstance(info, dict) or any(not isinstance(info.get(k), t) for k, t in kinds.items()):
        raise ValueError(f"--sweep {out}: sweep.json is not what `cures sweep` writes (needs "
                         f"{', '.join(f'{k}: {t.__name__}' for k, t in kinds.items())})")
    return info, table
