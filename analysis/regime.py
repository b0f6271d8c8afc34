"""The regime map: for each cell of a sweep, every policy's speed-up over the baseline with its 95% interval, and the
best policy (`cures sweep` writes it; `cures report --sweep DIR` adds it to the report)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from cures.simulator.output import speedup_text


def regime_map_frame(policies, keys: list[str], match: str, baseline: str):
    """One row per cell x policy (the baseline left out): the cell's values, the speed-ups in every accounting with
    intervals, final accuracy, rollouts and steps; `best` marks each cell's largest speed-up in the matched
    accounting (ties to the first policy), `clear` whether its interval lies above 1."""
    col = f"speedup_{match}"
    df = policies[policies["policy"] != baseline].copy()
    score = df[col].fillna(0.0)
    df["best"] = False
    df.loc[score.groupby(df["cell"]).idxmax(), "best"] = True
    df["clear"] = df[f"{col}_lo"] > 1.0
    lead = ["cell", *keys, "policy"]
    return df[lead + [c for c in df.columns if c not in lead]].reset_index(drop=True)


def _cell_text(row, keys) -> str:
    return ", ".join(f"{k}={row[k]}" for k in keys)


def regime_markdown(regime, keys: list[str], match: str, baseline: str) -> str:
    """Cells as rows, policies as columns: speed-up over the baseline in the matched accounting [95% CI]; the best
    policy of each cell in bold."""
    col = f"speedup_{match}"
    names = list(dict.fromkeys(regime["policy"]))
    lines = [f"Speed-up over `{baseline}` to its peak, counted in {match} (95% bootstrap intervals over seeds); "
             "bold: the cell's best policy.", "",
             "| cell | " + " | ".join(names) + " | best |", "|---" * (len(names) + 2) + "|"]
    for _, cell in regime.groupby("cell", sort=False):
        first = cell.iloc[0]
        parts = []
        for name in names:
            r = cell[cell["policy"] == name].iloc[0]
            text = speedup_text(r[col], r[f"{col}_lo"], r[f"{col}_hi"])
            parts.append(f"**{text}**" if r["best"] and math.isfinite(r[col]) else text)
        best = cell[cell["best"]].iloc[0]
        verdict = best["policy"] if math.isfinite(best[col]) and best[col] > 1.0 else f"{baseline} (none faster)"
        lines.append(f"| {_cell_text(first, keys)} | " + " | ".join(parts) + f" | {verdict} |")
    return "\n".join(lines) + "\n"


def regime_plot(path: Path, regime, keys: list[str], match: str, baseline: str) -> Path:
    """Heat map of log2 speed-up (cells x policies), annotated with the speed-up and its interval; the best policy
    of each cell boxed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    col = f"speedup_{match}"
    names = list(dict.fromkeys(regime["policy"]))
    cells = list(dict.fromkeys(regime["cell"]))
    grid = np.full((len(cells), len(names)), np.nan)
    labels = [[""] * len(names) for _ in cells]
    best = []
    for i, cell in enumerate(cells):
        sub = regime[regime["cell"] == cell]
        for j, name in enumerate(names):
            r = sub[sub["policy"] == name].iloc[0]
            v = r[col]
            grid[i, j] = math.log2(v) if math.isfinite(v) and v > 0 else np.nan
            labels[i][j] = speedup_text(v, r[f"{col}_lo"], r[f"{col}_hi"]).replace(" [", "\n[")
            if r["best"] and math.isfinite(v) and v > 1.0:
                best.append((i, j))
    row_labels = [_cell_text(regime[regime["cell"] == c].iloc[0], keys) for c in cells]
    fig, ax = plt.subplots(figsize=(1.9 * len(names) + 4, 0.62 * len(cells) + 1.8), constrained_layout=True)
    lim = max(1.0, float(np.nanmax(np.abs(grid)))) if np.isfinite(grid).any() else 1.0
    cmap = plt.get_cmap("RdBu").copy()
    cmap.set_bad("#dddddd")
    im = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=-lim, vmax=lim, aspect="auto")
    for i in range(len(cells)):
        for j in range(len(names)):
            ax.text(j, i, labels[i][j], ha="center", va="center", fontsize=7)
    for i, j in best:
        ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, lw=2.2, ec="k"))
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
    ax.set_yticks(range(len(cells)), row_labels, fontsize=8)
    fig.colorbar(im, ax=ax, label=f"log2 speed-up over {baseline} ({match})")
    ax.set_title(f"Regime map: speed-up to {baseline}'s peak, counted in {match}\n(grey: peak not reached; box: the "
                 "cell's best policy, when faster than the baseline)", fontsize=10)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
