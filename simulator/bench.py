"""`cures bench`: the compiled engine against two NumPy references, measured side by side: the per-rollout reference
(every rollout its own reward and score vector) and the vectorised one (each slot's successes and each step's summed
scores drawn in whole arrays, the engine's own method), which is what a careful NumPy implementation would do.

Each measurement runs in a fresh subprocess (so its peak memory is its own) on the same scenario and seed, after a
warm-up run that loads the compiled code. The cost of a step is marginal: one run of 1 + CHUNKS chunks of S steps is
timed chunk by chunk (one evaluation, at the end, so that none disturbs the caches between chunks; its time is not
counted); the first chunk carries the one-time O(N)
work (shuffling a million prompts, filling the sampling tree), reported apart as `setup_seconds`, and a step costs the
median of the other chunks over S. A median of positive times is positive and robust to a chunk slowed by the
machine, where the difference of two single runs could come out negative on a noisy machine.
"""

from __future__ import annotations

import multiprocessing as mp
import resource

SIZES = (10_000, 1_000_000)


IMPLEMENTATIONS = ("engine", "vectorised", "reference")
CHUNKS = 4  # timed chunks after the first, per measurement


def _config(scenario: str | None, shape: dict, n_prompts: int, steps: int, n_heldout: int = 1_000):
    from cures.simulator.config import build_config

    return build_config(scenario, {"n_prompts": n_prompts, "n_heldout": n_heldout, "steps": steps,
                                   "eval_every": steps, "seeds": 1, "threads": 1, "max_rollouts": 0,
                                   "max_compute": 0.0, **shape})  # every step is timed: a scenario's caps are lifted


def _warm_up(runner, policy: str, scenario: str | None, seed: int, shape: dict) -> None:
    """A tiny run, so that compiled code is loaded and caches are filled before anything is timed."""
    runner(policy, _config(scenario, shape, 2_000, 2, n_heldout=100), seed)


def _timed_steps(runner, policy: str, scenario: str | None, n_prompts: int, steps: int, seed: int,
                 shape: dict) -> tuple[float, float]:
    """(marginal seconds per step, one-time setup seconds) from one run of (1 + CHUNKS) x `steps` steps timed in
    chunks of `steps`: the median of the later chunks over `steps`, and what the first chunk took beyond that."""
    import statistics

    timer: list[float] = []
    runner(policy, _config(scenario, shape, n_prompts, (1 + CHUNKS) * steps), seed, timer=timer, chunk=steps)
    if len(timer) != 1 + CHUNKS:
        raise RuntimeError(f"{policy} stopped after {len(timer)} of {1 + CHUNKS} timed chunks")
    per_step = statistics.median(timer[1:]) / steps
    return per_step, max(timer[0] - steps * per_step, 0.0)


def _measure(which: str, policy: str, scenario: str | None, n_prompts: int, steps: int, seed: int,
             shape: dict | None = None) -> dict:
    from cures.simulator.reference import reference_seed, vectorised_seed
    from cures.simulator.run import run_seed

    runner = {"engine": run_seed, "vectorised": vectorised_seed, "reference": reference_seed}[which]
    shape = shape or {}
    _warm_up(runner, policy, scenario, seed, shape)
    per_step, setup = _timed_steps(runner, policy, scenario, n_prompts, steps, seed, shape)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux
    return {"which": which, "n_prompts": n_prompts, "steps": (1 + CHUNKS) * steps, "seconds_per_step": per_step,
            "steps_per_second": 1.0 / per_step, "setup_seconds": setup, "peak_rss_mb": peak_mb}


def _per_step_pair(policies: tuple[str, str], scenario: str | None, n_prompts: int, steps: int, seed: int,
                   shape: dict, repeats: int) -> dict:
    from cures.simulator.run import run_seed

    for p in policies:
        _warm_up(run_seed, p, scenario, seed, shape)
    out = {p: [] for p in policies}
    for _ in range(repeats):  # alternate, so that machine noise hits both alike
        for p in policies:
            out[p].append(_timed_steps(run_seed, p, scenario, n_prompts, steps, seed, shape)[0])
    return out


def compare_policies(policy: str, versus: str, scenario: str | None = None, n_prompts: int = 10_000,
                     steps: int = 200, repeats: int = 7, seed: int = 0, prompts_per_step: int | None = None,
                     rollouts_per_step: int | None = None) -> dict:
    """The engine's marginal seconds per step of `policy` and of `versus`, measured alternately `repeats` times in
    one fresh process (one thread); returns both lists, the median of the per-repeat ratios policy / versus, and the
    ratio of the two fastest repeats (on a machine that switches between a fast and a slow state, the two policies
    slow down unequally, so the per-repeat ratios spread; the minima compare both in the fast state)."""
    import statistics

    shape = {k: v for k, v in (("prompts_per_step", prompts_per_step), ("rollouts_per_step",
                                                                        rollouts_per_step)) if v is not None}
    with mp.get_context("spawn").Pool(1) as pool:
        times = pool.apply(_per_step_pair, ((policy, versus), scenario, n_prompts, steps, seed, shape, repeats))
    ratios_ = [a / b for a, b in zip(times[policy], times[versus], strict=True)]
    return {"policy": policy, "versus": versus, "seconds_per_step": times, "ratios": ratios_,
            "median_ratio": statistics.median(ratios_), "min_ratio": min(times[policy]) / min(times[versus])}


def run_bench(policy: str = "cures", scenario: str | None = None, sizes=SIZES, engine_steps: int = 400,
              reference_steps: int = 8, seed: int = 0, vectorised_steps: int = 100, prompts_per_step: int | None = None,
              rollouts_per_step: int | None = None, repeats: int = 1) -> list[dict]:
    """Engine and both references at each size (prompts per step and rollouts per step from the scenario unless
    given), each measured in its own fresh process, in `repeats` rounds that alternate the implementations (so a
    machine that changes speed within seconds slows them alike); returns one record per (size, implementation) with
    the median over rounds of its seconds per step and setup, its largest peak memory, and every round's seconds."""
    ctx = mp.get_context("spawn")
    shape = {k: v for k, v in (("prompts_per_step", prompts_per_step), ("rollouts_per_step",
                                                                        rollouts_per_step)) if v is not None}
    rounds: dict[tuple[int, str], list[dict]] = {}
    for _ in range(repeats):
        for n in sizes:
            for which, steps in (("engine", engine_steps), ("vectorised", vectorised_steps),
                                 ("reference", reference_steps)):
                with ctx.Pool(1) as pool:
                    rounds.setdefault((n, which), []).append(
                        pool.apply(_measure, (which, policy, scenario, n, steps, seed, shape)))
    return [combine_rounds(measured) for measured in rounds.values()]


def combine_rounds(measured: list[dict]) -> dict:
    """One implementation's rounds at one size as one record: median seconds per step and setup, largest peak
    memory, and every round's seconds per step."""
    import statistics

    per_step = statistics.median(r["seconds_per_step"] for r in measured)
    return {**measured[0], "seconds_per_step": per_step, "steps_per_second": 1.0 / per_step,
            "setup_seconds": statistics.median(r["setup_seconds"] for r in measured),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in measured),
            "rounds_seconds_per_step": [r["seconds_per_step"] for r in measured]}


def ratios(results: list[dict]) -> dict:
    """Speed ratios engine / each reference per size, and the engine's steps/s at the largest size over the
    smallest."""
    by = {(r["which"], r["n_prompts"]): r for r in results}
    sizes = sorted({r["n_prompts"] for r in results})
    out = {f"speedup_at_{n}": by["engine", n]["steps_per_second"] / by["reference", n]["steps_per_second"]
           for n in sizes}
    out |= {f"speedup_over_vectorised_at_{n}": by["engine", n]["steps_per_second"]
            / by["vectorised", n]["steps_per_second"] for n in sizes if ("vectorised", n) in by}
    out["engine_steps_per_second_ratio_largest_to_smallest"] = (
        by["engine", sizes[-1]]["steps_per_second"] / by["engine", sizes[0]]["steps_per_second"])
    out["engine_peak_rss_mb_at_largest"] = by["engine", sizes[-1]]["peak_rss_mb"]
    return out
