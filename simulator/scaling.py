"""Curve summaries: speed-ups to the baseline's peak in three accountings, and ScaleRL's saturating fit, each with a
95% bootstrap interval over seeds (`scipy.stats.bootstrap`, seeds resampled in pairs: seed s of the baseline and seed
s of a policy share their population)."""

from __future__ import annotations

import math
import warnings

import numpy as np
from scipy import optimize, stats

from cures.simulator.run import SeedRun, stacked

ACCOUNTINGS = ("rollouts", "steps", "compute")
RESAMPLES = 400


def axis(runs: list[SeedRun], accounting: str, train_cost: float) -> np.ndarray:
    """[seeds, evals] cost so far in one accounting: generated rollouts, steps, or generated + train_cost x trained
    rollouts (`compute`)."""
    if accounting == "steps":
        return stacked(runs, "step")
    if accounting == "compute":
        return stacked(runs, "rollouts") + train_cost * stacked(runs, "trained_rollouts")
    if accounting == "rollouts":
        return stacked(runs, "rollouts")
    raise ValueError(f"unknown accounting {accounting!r}; one of {', '.join(ACCOUNTINGS)}")


def cost_to_reach(x: np.ndarray, y: np.ndarray, target: float) -> float:
    """Cost at which the curve first reaches `target`, linearly interpolated between evaluations; NaN if never."""
    for i in range(len(y)):
        if np.isfinite(y[i]) and y[i] >= target:
            if i == 0 or not np.isfinite(y[i - 1]):
                return float(x[i])
            frac = (target - y[i - 1]) / (y[i] - y[i - 1])
            return float(x[i - 1] + frac * (x[i] - x[i - 1]))
    return math.nan


def _mean_rows(a: np.ndarray, rows) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # evaluations no seed reached (capped runs) stay NaN
        return np.nanmean(a[rows], axis=0)


def _speedups(base_acc, base_x, acc, xs, rows) -> np.ndarray:
    """Speed-up per accounting on the seed subset `rows`: the baseline's cost to reach its own peak (of the mean
    curve) over the policy's cost to reach it; 0 where the policy never reaches it."""
    by = _mean_rows(base_acc, rows)
    peak = float(np.nanmax(by))
    y = _mean_rows(acc, rows)
    out = np.zeros(len(xs))
    for k, (bx, x) in enumerate(zip(base_x, xs, strict=True)):
        base = cost_to_reach(_mean_rows(bx, rows), by, peak)
        need = cost_to_reach(_mean_rows(x, rows), y, peak)
        out[k] = base / need if need > 0 and math.isfinite(need) else (1.0 if need == base == 0 else 0.0)
    return out


def speedups(base: list[SeedRun], runs: list[SeedRun], accuracy: str, train_cost: float,
             resamples: int = RESAMPLES, seed: int = 0) -> dict:
    """{accounting: {"mean", "lo", "hi"}}: the speed-up to the baseline's peak (point estimate on the curves averaged
    over seeds, NaN when the policy never reaches it) and its 95% percentile-bootstrap interval over paired seeds
    (a resample where the policy misses the peak counts as 0)."""
    n = min(len(base), len(runs))
    base, runs = base[:n], runs[:n]
    base_acc, acc = stacked(base, accuracy), stacked(runs, accuracy)
    bxs = [axis(base, a, train_cost) for a in ACCOUNTINGS]
    xs = [axis(runs, a, train_cost) for a in ACCOUNTINGS]
    every = np.arange(n)
    point = _speedups(base_acc, bxs, acc, xs, every)
    lo = hi = np.full(len(ACCOUNTINGS), math.nan)
    if n >= 2:
        res = stats.bootstrap((every,), lambda idx: _speedups(base_acc, bxs, acc, xs, idx.astype(int)),
                              vectorized=False, n_resamples=resamples, method="percentile",
                              random_state=np.random.default_rng(seed))
        lo, hi = res.confidence_interval.low, res.confidence_interval.high
    return {a: {"mean": float(point[k]) if point[k] > 0 else math.nan, "lo": float(lo[k]), "hi": float(hi[k])}
            for k, a in enumerate(ACCOUNTINGS)}


def saturating(c, r0, a, c_mid, b):
    """ScaleRL's compute-performance curve: R(C) = R0 + (A - R0) / (1 + (C_mid / C)^B); A is the ceiling, C_mid
    the cost at half the gain, B the steepness."""
    c = np.asarray(c, dtype=float)
    with np.errstate(divide="ignore", over="ignore"):
        return r0 + (a - r0) / (1.0 + (c_mid / np.maximum(c, 1e-300)) ** b)


FIT_KEYS = ("A", "C_mid", "B")


def fit_saturating(c: np.ndarray, r: np.ndarray, r0: float) -> np.ndarray:
    """(A, C_mid, B) by least squares (`scipy.optimize.curve_fit`) with R0 fixed at the starting accuracy, A in
    [R0, 1], C_mid > 0 and B in (0, 10]; NaNs when the curve does not rise or the fit fails."""
    keep = np.isfinite(c) & np.isfinite(r) & (c > 0)
    c, r = c[keep], r[keep]
    if c.size < 3 or np.nanmax(r) <= r0 + 1e-9:
        return np.full(3, math.nan)
    scale = float(np.median(c))  # fit log(C_mid / scale): well conditioned whatever the units
    guess = (min(max(float(r.max()), r0 + 1e-6), 1.0), 0.0, 1.0)

    def model(cc, a, log_mid, b):
        return saturating(cc, r0, a, scale * np.exp(log_mid), b)

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            (a, log_mid, b), _ = optimize.curve_fit(model, c, r, p0=guess, bounds=([r0, -20, 1e-3], [1.0, 20, 10.0]),
                                                    maxfev=4000)
    except (RuntimeError, ValueError):
        return np.full(3, math.nan)
    return np.array([a, scale * math.exp(log_mid), b])


def saturating_fit(runs: list[SeedRun], accuracy: str, accounting: str = "rollouts", train_cost: float = 1.0,
                   resamples: int = RESAMPLES, seed: int = 0) -> dict:
    """{"A", "C_mid", "B"}: each {"mean", "lo", "hi"}, the fit to the seed-averaged curve against cost in one
    accounting, and 95% percentile-bootstrap intervals over seeds; "R0" the starting accuracy."""
    acc = stacked(runs, accuracy)
    x = axis(runs, accounting, train_cost)
    every = np.arange(len(runs))

    def fit(rows):
        y = _mean_rows(acc, rows)
        return fit_saturating(_mean_rows(x, rows), y, float(y[0]))

    point = fit(every)
    lo = hi = np.full(3, math.nan)
    if len(runs) >= 2 and np.all(np.isfinite(point)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # resamples whose fit fails are NaN and widen nothing
            res = stats.bootstrap((every,), lambda idx: fit(idx.astype(int)), vectorized=False,
                                  n_resamples=resamples // 4, method="percentile",
                                  random_state=np.random.default_rng(seed))
        lo, hi = res.confidence_interval.low, res.confidence_interval.high
    out = {k: {"mean": float(point[i]), "lo": float(lo[i]), "hi": float(hi[i])} for i, k in enumerate(FIT_KEYS)}
    out["R0"] = float(np.nanmean(acc[:, 0]))
    out["accounting"] = accounting
    return out
