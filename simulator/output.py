"""Files a simulation writes: summary.json, curves.csv, pass_rates.csv and a PNG of the curves."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from cures._io import atomic_write, atomic_write_text, staged_outputs
from cures.simulator.engine import COLUMNS
from cures.simulator.run import BOUNDS, SeedRun, mean_ci, stacked

PANELS = (("zero_variance_fraction", "zero-variance groups (fraction)"),
          ("posterior_error", "posterior error mean |p_hat - p|"),
          ("grad_cosine", "cosine(estimated, true gradient)"))


def _json_default(o):
    if isinstance(o, np.integer | np.floating):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, tuple):
        return list(o)
    raise TypeError(f"not JSON serialisable: {type(o)}")


def _clean(o):
    """NaN and inf become null, so the file is strict JSON."""
    if isinstance(o, dict):
        return {k: _clean(v) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return [_clean(v) for v in o]
    if isinstance(o, float) and not math.isfinite(o):
        return None
    return o


def ci_text(d: dict, digits: int = 3, sep: str = " ") -> str:
    """A `mean_ci` dict as "mean [lo, hi]": the mean alone when there is no interval, "n/a" without a mean."""
    mean, lo = d.get("mean"), d.get("lo")
    if mean is None or not math.isfinite(mean):
        return "n/a"
    if lo is None or not math.isfinite(lo):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f}{sep}[{lo:.{digits}f}, {d['hi']:.{digits}f}]"


def speedup_text(value: float, lo: float = math.nan, hi: float = math.nan) -> str:
    """A speed-up as "1.23x [1.10, 1.35]"; "not reached" when it is NaN (the policy never reached the target)."""
    if not math.isfinite(value):
        return "not reached"
    return f"{value:.2f}x [{lo:.2f}, {hi:.2f}]" if math.isfinite(lo) else f"{value:.2f}x"


def write_json(path: Path, data: dict) -> Path:
    """Strict JSON (NaN -> null), written atomically."""
    text = json.dumps(_clean(json.loads(json.dumps(data, default=_json_default))), indent=2, allow_nan=False)
    return atomic_write_text(path, text + "\n")


def curves_frame(runs_by_policy: dict[str, list[SeedRun]]):
    """Long format: one row per (policy, seed, evaluation) with every column of cures.simulator.engine.COLUMNS."""
    import pandas as pd

    frames = [pd.DataFrame(r.curves, columns=list(COLUMNS)).assign(policy=name, seed=r.seed)
              for name, runs in runs_by_policy.items() for r in runs]
    df = pd.concat(frames, ignore_index=True)
    for col in ("step", "rollouts", "trained_rollouts"):
        df[col] = df[col].astype("int64")
    return df[["policy", "seed", *COLUMNS]]


def write_table(stem: Path, df) -> list[Path]:
    """A DataFrame as `stem`.csv and `stem`.parquet (pyarrow), each written atomically."""
    stem = Path(stem)
    csv_path, parquet_path = stem.with_suffix(".csv"), stem.with_suffix(".parquet")
    atomic_write_text(csv_path, df.to_csv(index=False, float_format="%.6g"))
    atomic_write(parquet_path, lambda fh: df.to_parquet(fh, index=False))
    return [csv_path, parquet_path]


def write_pass_rates(path: Path, runs: list[SeedRun]) -> Path:
    """Histograms of the training pool's pass rates at every evaluation: seed, step, then one count per bin."""
    bins = runs[0].hist.shape[1]
    table = np.concatenate([np.column_stack([np.full(len(r.hist), r.seed), r.curves[:, 0], r.hist]) for r in runs])
    header = ",".join(["seed", "step"] + [f"p_{i / bins:.2f}_{(i + 1) / bins:.2f}" for i in range(bins)])
    np.savetxt(path, table, delimiter=",", header=header, comments="", fmt="%d")
    return path


def mean_curve(runs: list[SeedRun], column: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(mean rollouts, mean, lo, hi) of a column at every evaluation, the band a 95% t-interval over seeds."""
    x = np.nanmean(stacked(runs, "rollouts"), axis=0)
    ys = stacked(runs, column)
    cis = [mean_ci(ys[:, i], BOUNDS.get(column, (-np.inf, np.inf))) for i in range(ys.shape[1])]
    return x, *(np.array([c[k] for c in cis]) for k in ("mean", "lo", "hi"))


def plot_curves(path: Path, runs_by_policy: dict[str, list[SeedRun]], accuracy: str, title: str) -> Path:
    """Accuracy and three diagnostics against rollouts, mean with 95% bands over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5), constrained_layout=True)
    panels = ((accuracy, accuracy.replace("_", " ")), *PANELS)
    colors = plt.get_cmap("tab20" if len(runs_by_policy) > 10 else "tab10").colors
    for ax, (column, label) in zip(axes.flat, panels, strict=True):
        for (name, runs), color in zip(runs_by_policy.items(), colors, strict=False):
            x, mean, lo, hi = mean_curve(runs, column)
            seeds_here = np.sum(np.isfinite(stacked(runs, column)), axis=0)
            keep = np.isfinite(mean) & (seeds_here == seeds_here.max())  # drop the ragged end of capped runs
            ax.plot(x[keep], mean[keep], label=name, lw=1.6, color=color)
            band = keep & np.isfinite(lo)
            ax.fill_between(x[band], lo[band], hi[band], color=color, alpha=0.2, lw=0)
        ax.set_xlabel("rollouts")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=8)
    fig.suptitle(title)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_simulation(out: Path, summary: dict, runs: list[SeedRun]) -> list[Path]:
    """Everything `cures simulate --out DIR` promises, moved into `out` together (`staged_outputs`)."""
    title = f"{summary['policy']}: {summary['n_prompts']} prompts, {len(runs)} seeds"
    with staged_outputs(out, "summary.json") as stage:
        files = [
            write_json(stage / "summary.json", summary),
            *write_table(stage / "curves", curves_frame({summary["policy"]: runs})),
            write_pass_rates(stage / "pass_rates.csv", runs),
            plot_curves(stage / "curves.png", {summary["policy"]: runs}, summary["accuracy_metric"], title),
        ]
    return [Path(out) / f.name for f in files]


def plot_bench(path: Path, results: list[dict], title: str) -> Path:
    """`cures bench` across sizes: seconds per step and peak RSS against prompts (log-log), one line per
    implementation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (cost, memory) = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    for which in dict.fromkeys(r["which"] for r in results):
        rows = sorted((r for r in results if r["which"] == which), key=lambda r: r["n_prompts"])
        n = [r["n_prompts"] for r in rows]
        cost.plot(n, [r["seconds_per_step"] for r in rows], marker="o", label=which)
        memory.plot(n, [r["peak_rss_mb"] for r in rows], marker="o", label=which)
    for ax, label in ((cost, "seconds per step"), (memory, "peak RSS (MB)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("prompts")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3, which="both")
    cost.legend(fontsize=8)
    fig.suptitle(title)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_bench(out: Path, results: list[dict], summary: dict, title: str) -> list[Path]:
    """`cures bench --out DIR`: the size table (CSV, parquet), its ratios (JSON) and the figure, moved in together."""
    import pandas as pd

    df = pd.DataFrame([{k: v for k, v in r.items() if k != "rounds_seconds_per_step"} for r in results])
    with staged_outputs(out, "bench.json") as stage:
        files = [*write_table(stage / "bench", df), plot_bench(stage / "bench.png", results, title),
                 write_json(stage / "bench.json", {"title": title, "ratios": summary, "results": results})]
    return [Path(out) / f.name for f in files]
