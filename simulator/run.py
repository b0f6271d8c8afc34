"""Run policies in the simulator: seeds in parallel threads, curves, summaries with 95% intervals."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass

import numpy as np

from cures.policies.dispatch import specialised
from cures.simulator.config import SimConfig
from cures.simulator.engine import COLUMNS, evaluate, run_steps
from cures.simulator.warmup import compile_helper
from cures.simulator.world import policy_for, seed_world

Progress = Callable[[int], None]


@dataclass
class SeedRun:
    """One seed's results: evaluation rows (COLUMNS), pass-rate histograms, and whole-run counters."""

    seed: int
    curves: np.ndarray  # [evals, len(COLUMNS)]
    hist: np.ndarray  # [evals, bins]
    first_step_zero_variance_fraction: float
    zero_variance_fraction: float
    rollouts_total: int
    steps: int


class Stopped(Exception):
    """A seed was told to stop (Ctrl-C in another thread) between two chunks of steps."""


def run_seed(name: str, cfg: SimConfig, seed: int, progress: Progress | None = None,
             max_rollouts: int | None = None, timer: list | None = None, stop: threading.Event | None = None,
             chunk: int | None = None) -> SeedRun:
    """Simulate one seed with the compiled engine, `chunk` steps per compiled call (default `eval_every`, which
    `chunk` must divide; `timer`, if given, receives each call's seconds; a set `stop` ends the seed between calls
    with `Stopped`)."""
    every = chunk or cfg.eval_every
    if cfg.eval_every % every:
        raise ValueError(f"chunk {every} must divide eval_every {cfg.eval_every}")
    state, model, srng, C, T = seed_world(name, cfg, seed, max_rollouts)
    P, S, B, prng = state.kernel, state.arrays, state.step, state.rng
    steps_fn = specialised(run_steps, P, S, B, prng, srng, model, C, T, 1)
    rows, hists = [], []

    def record():
        row, hist = np.empty(len(COLUMNS)), np.zeros(cfg.hist_bins, np.int64)
        evaluate(S, model, C, T, row, hist)
        rows.append(row)
        hists.append(hist)

    record()
    done = 0
    while done < cfg.steps:
        if stop is not None and stop.is_set():
            raise Stopped
        size = min(every, cfg.steps - done)
        t0 = time.perf_counter()
        took = steps_fn(P, S, B, prng, srng, model, C, T, size)
        if timer is not None:
            timer.append(time.perf_counter() - t0)
        done += took
        if took > 0 and (done % cfg.eval_every == 0 or done == cfg.steps or took < size):
            record()
        if progress is not None:
            progress(size)
        if took < size:  # the rollout cap was reached
            if progress is not None:
                progress(cfg.steps - done)
            break
    c = T.vars
    return SeedRun(seed, np.array(rows), np.array(hists), c.first_zero / max(c.first_slots, 1),
                   c.zero_all / max(c.slots_all, 1), state.rollouts_total, state.steps_done)


def run_seeds(name: str, cfg: SimConfig, progress: Progress | None = None, max_rollouts: int | None = None,
              runner=run_seed) -> list[SeedRun]:
    """All seeds cfg.seed, cfg.seed + 1, ... in cfg.threads threads (each seed is independent, so the numbers do
    not depend on the thread count)."""
    seeds = [cfg.seed + i for i in range(cfg.seeds)]
    # Always in worker threads, even one: the compiled loops never run in the main thread, which only waits. A
    # Ctrl-C landing while the main thread was inside a compiled call could crash the process (a segfault in 1 of
    # about 40 tries, measured), instead of raising KeyboardInterrupt after it.
    stop = threading.Event()
    pool = ThreadPoolExecutor(max_workers=max(1, min(cfg.threads, cfg.seeds)))
    futures = [pool.submit(runner, name, cfg, s, progress, max_rollouts, stop=stop) for s in seeds]
    try:
        while True:  # short waits keep the main thread responsive to Ctrl-C
            done, pending = wait(futures, timeout=0.1, return_when=FIRST_EXCEPTION)
            if not pending or any(f.exception() is not None for f in done):
                break
        results = [f.result() for f in futures]
    except BaseException:
        stop.set()  # every seed stops at its next chunk boundary; the caller need not wait for that (the CLI exits)
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return results


# ----------------------------------------------------------------------------------------------------------------
# Aggregation
# ----------------------------------------------------------------------------------------------------------------


# What each metric can take: intervals are clipped to it (a t-interval of a fraction over 2 seeds can leave [0, 1]).
BOUNDS = {"train_accuracy": (0.0, 1.0), "heldout_accuracy": (0.0, 1.0), "zero_variance_fraction": (0.0, 1.0),
          "first_step_zero_variance_fraction": (0.0, 1.0), "grad_cosine": (-1.0, 1.0), "posterior_error": (0.0, 1.0),
          "grad_norm": (0.0, math.inf), "rollouts": (0.0, math.inf), "trained_rollouts": (0.0, math.inf)}


def mean_ci(values, bounds: tuple[float, float] = (-math.inf, math.inf)) -> dict:
    """Mean and 95% Student-t interval over seeds, clipped to `bounds`; the interval is NaN with one seed, and the
    mean itself when every seed agrees. It is `scipy.stats.t.interval(0.95, n - 1, loc=mean, scale=stats.sem(v))`
    operation for operation (a test checks the bits), through `scipy.special.stdtrit`, the t quantile that
    `scipy.stats.t.ppf` calls: importing scipy.stats costs a warm `cures simulate` about a second."""
    from scipy.special import stdtrit

    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return {"mean": math.nan, "lo": math.nan, "hi": math.nan}
    mean = float(v.mean())
    if v.size < 2:
        return {"mean": mean, "lo": math.nan, "hi": math.nan}
    sem = float(np.std(v, ddof=1) / v.size**0.5)  # scipy.stats.sem
    if sem == 0:
        lo = hi = mean
    else:  # rv_continuous.interval: the quantiles at (1 -+ confidence) / 2, each ppf(q) * scale + loc
        lo = float(stdtrit(v.size - 1, (1.0 - 0.95) / 2) * sem + mean)
        hi = float(stdtrit(v.size - 1, (1.0 + 0.95) / 2) * sem + mean)
    return {"mean": mean, "lo": float(np.clip(lo, *bounds)), "hi": float(np.clip(hi, *bounds))}


def stacked(runs: list[SeedRun], column: str) -> np.ndarray:
    """[seeds, evals] of one column, NaN-padded where a seed stopped early."""
    j = COLUMNS.index(column)
    rows = max(r.curves.shape[0] for r in runs)
    out = np.full((len(runs), rows), np.nan)
    for i, r in enumerate(runs):
        out[i, : r.curves.shape[0]] = r.curves[:, j]
    return out


def accuracy_column(cfg: SimConfig) -> str:
    """Held-out accuracy, or the training pool's in tabular mode (no transfer, so nothing to hold out)."""
    return "train_accuracy" if cfg.mode == "tabular" else "heldout_accuracy"


def summarize(name: str, cfg: SimConfig, runs: list[SeedRun], wall: float) -> dict:
    acc = accuracy_column(cfg)
    final = [r.curves[-1, COLUMNS.index("train_accuracy")] for r in runs]
    final_held = [r.curves[-1, COLUMNS.index("heldout_accuracy")] for r in runs]
    peak = [np.nanmax(r.curves[:, COLUMNS.index(acc)]) for r in runs]  # of the accuracy metric
    peak_held = [np.nanmax(r.curves[:, COLUMNS.index("heldout_accuracy")])
                 if np.isfinite(r.curves[:, COLUMNS.index("heldout_accuracy")]).any() else np.nan for r in runs]
    return {
        "policy": name,
        "n_prompts": cfg.n_prompts,
        "steps": float(np.mean([r.steps for r in runs])),
        "seeds": [r.seed for r in runs],
        "rollouts_total": float(np.mean([r.rollouts_total for r in runs])),
        "final_train_accuracy": mean_ci(final, BOUNDS["train_accuracy"]),
        "final_heldout_accuracy": mean_ci(final_held, BOUNDS["heldout_accuracy"]),
        "peak_accuracy": mean_ci(peak, BOUNDS[acc]),  # of `accuracy_metric` (training pool's in tabular mode)
        "peak_heldout_accuracy": mean_ci(peak_held, BOUNDS["heldout_accuracy"]),  # n/a in tabular mode
        "accuracy_metric": acc,
        "zero_variance_fraction": mean_ci([r.zero_variance_fraction for r in runs], (0.0, 1.0)),
        "first_step_zero_variance_fraction": mean_ci([r.first_step_zero_variance_fraction for r in runs], (0.0, 1.0)),
        "wall_seconds": wall,
        "policy_params": policy_for(name, cfg).params,
        "config": cfg.to_dict(),
    }


def simulate(name: str, cfg: SimConfig, progress: Progress | None = None, max_rollouts: int | None = None
             ) -> tuple[dict, list[SeedRun]]:
    """Run every seed of one policy; returns (summary, per-seed runs)."""
    policy_for(name, cfg).kernel_params(cfg.n_prompts)  # fail fast on a policy that cannot run this population
    t0 = time.perf_counter()
    with compile_helper(name, cfg):  # a first run: the engine's kernels compile in a second process meanwhile
        runs = run_seeds(name, cfg, progress, max_rollouts)
    return summarize(name, cfg, runs, time.perf_counter() - t0), runs
