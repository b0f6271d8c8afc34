"""The regime map's tables: for each cell of a sweep, every policy's speed-up over the baseline with its 95% interval,
and the best policy (`cures sweep` writes them; `cures.analysis.regime.regime_plot` draws them)."""

from __future__ import annotations

import math

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


def cell_text(row, keys) -> str:
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
        lines.append(f"| {cell_text(first, keys)} | " + " | ".join(parts) + f" | {verdict} |")
    return "\n".join(lines) + "\n"
