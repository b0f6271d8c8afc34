"""Figures of the simulator against real runs: a calibration's fit (`cures calibrate`), and the validation's
predictions per policy (`python -m cures.analysis.sim_to_real report`). They only draw: the numbers come from
`cures.simulator.calibrate`'s JSON."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cures.analysis.figures import _plt

LABELS = {"train_reward": "mean reward of the generated rollouts", "zero_variance_fraction": "zero-variance slots"}


def _band(ax, steps, block: dict, prefix: str, color, label: str) -> None:
    mean = np.asarray(block[f"{prefix}_mean"], float)
    ax.plot(steps, mean, color=color, label=label, lw=1.6 if prefix == "fitted" else 1.2,
            ls="-" if prefix == "observed" else "--")
    lo, hi = np.asarray(block[f"{prefix}_lo"], float), np.asarray(block[f"{prefix}_hi"], float)
    if np.isfinite(lo).any():
        ax.fill_between(steps, lo, hi, color=color, alpha=0.15, lw=0)


def calibration_figure(path: Path, calibration: dict) -> Path:
    """Per target: observed mean curve of the runs with its 95 % interval, and the fitted simulator's."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), constrained_layout=True)
    for ax, y in zip(axes, LABELS, strict=True):
        block = calibration[y]
        steps = np.arange(1, len(block["observed_mean"]) + 1)
        _band(ax, steps, block, "observed", "C0", f"real {calibration['policy']} ({len(calibration['runs'])} runs)")
        _band(ax, steps, block, "fitted", "C3", "calibrated simulator")
        ax.set(xlabel="policy step", ylabel=LABELS[y], title=f"{LABELS[y]} (RMSE {block['rmse']:.3f})")
        ax.legend()
    s = calibration["settings"]
    mode = "tabular" if s["mode"] == "tabular" else f"IRT, d = {s['dim']}"
    fig.suptitle(f"Calibration: {mode}, lr = {s['lr']:.3g}, unlearnable = {s['unlearnable']:.2f}, a_spread = "
                 f"{s['a_spread']:.2f}", fontsize=10)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
