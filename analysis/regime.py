"""The regime map's figure: a heat map of every policy's speed-up over the baseline per cell of a sweep (the tables
are `cures.simulator.regime`'s; `cures sweep` draws this beside them, `cures report --sweep DIR` embeds it)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from cures.simulator.output import speedup_text
from cures.simulator.regime import cell_text


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
    row_labels = [cell_text(regime[regime["cell"] == c].iloc[0], keys) for c in cells]
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
