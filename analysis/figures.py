"""The report's eight figures, one function each, in one style, saved as PNG and SVG; they only draw (the numbers come
from `cures.analysis.theory`, the simulator and the report)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cures.analysis.theory import AllocationComparison, eq21_sigma2, ess_shares, one_prompt_model
from cures.simulator.output import mean_curve
from cures.simulator.run import stacked
from cures.theory import (
    grpo_expected_gradient_scale,
    optimization_potential,
    rollout_sigma,
    sampling_distribution,
    zero_variance_prob,
)

NS = (4, 8, 16)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"figure.dpi": 110, "axes.grid": True, "grid.alpha": 0.3, "axes.spines.top": False,
                         "axes.spines.right": False, "font.size": 10, "legend.fontsize": 8, "legend.frameon": False})
    return plt


def save(fig, out: Path, name: str) -> list[Path]:
    """`name`.png and `name`.svg in `out`."""
    paths = [out / f"{name}.png", out / f"{name}.svg"]
    for path in paths:
        fig.savefig(path, bbox_inches="tight")
    _plt().close(fig)
    return paths


def colors(names) -> dict:
    cmap = _plt().get_cmap("tab20")
    return {n: cmap(i % 20) for i, n in enumerate(names)}


# ----------------------------------------------------------------------------------------------------------- 1
def per_prompt_quantities(out: Path) -> list[Path]:
    plt = _plt()
    p = np.linspace(0, 1, 401)
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), constrained_layout=True)
    ax = axes[0]
    ax.plot(p, optimization_potential(p, 0.5), label="potential sqrt(p(1-p)) (Eq. 11, 2 delta = 1)", lw=2)
    ax.plot(p, rollout_sigma(p, 4.0, 1.0), label="sigma, E1||s||² = 4 E0||s||² (Eq. 21)", ls="--")
    ax.plot(p, rollout_sigma(p, 1.0, 4.0), label="sigma, E0||s||² = 4 E1||s||² (Eq. 21)", ls=":")
    ax.set(xlabel="pass rate p", ylabel="per-prompt value", title="optimisation potential and gradient std")
    ax.legend()
    ax = axes[1]
    for n in NS:
        ax.plot(p, zero_variance_prob(p, n), label=f"n = {n}")
    ax.set(xlabel="pass rate p", ylabel="P(all n rewards equal)", title="zero-variance groups p^n + (1-p)^n")
    ax.legend()
    ax = axes[2]
    for n in NS:
        ax.plot(p, grpo_expected_gradient_scale(p, np.int64(n)), label=f"n = {n}")
    ax.plot(p, np.sqrt(p * (1 - p)), color="k", ls="--", lw=1, label="n -> inf: sqrt(p(1-p))")
    ax.set(xlabel="pass rate p", ylabel="E[update] / ||E1 s - E0 s||", title="expected GRPO update of one prompt")
    ax.legend()
    return save(fig, out, "fig1_per_prompt_quantities")


# ----------------------------------------------------------------------------------------------------------- 2
def gradient_variance(out: Path, rows: list[dict]) -> list[Path]:
    plt = _plt()
    norms = sorted({(r["sigma_correct"], r["sigma_wrong"]) for r in rows}, key=lambda t: (t[0] != t[1], t))
    fig, axes = plt.subplots(1, len(norms), figsize=(4.4 * len(norms), 3.8), constrained_layout=True, sharey=True)
    model = one_prompt_model()
    grid = np.linspace(0.0, 1.0, 201)
    for ax, (s1, s0) in zip(np.atleast_1d(axes), norms, strict=True):
        for n in sorted({r["n"] for r in rows}):
            sel = [r for r in rows if (r["sigma_correct"], r["sigma_wrong"], r["n"]) == (s1, s0, n)]
            line = ax.plot(grid, [eq21_sigma2(x, model, s1, s0) / n for x in grid], label=f"Eq. 21 / n, n = {n}")[0]
            x = np.array([r["p"] for r in sel])
            y = np.array([r["mc"] for r in sel])
            err = np.array([[r["mc"] - r["lo"] for r in sel], [r["hi"] - r["mc"] for r in sel]])
            ax.errorbar(x, y, yerr=err, fmt="o", ms=4, color=line.get_color(), capsize=2,
                        label=f"Monte Carlo (95% CI), n = {n}")
        ax.set(xlabel="pass rate p", title=f"score noise: correct {s1}, wrong {s0}")
        ax.legend()
    np.atleast_1d(axes)[0].set_ylabel("Tr Var of the prompt's gradient estimate")
    return save(fig, out, "fig2_gradient_variance")


# ----------------------------------------------------------------------------------------------------------- 3
def sampling_distribution_figure(out: Path, taus=(0.05, 0.1, 0.2, 0.5)) -> list[Path]:
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), constrained_layout=True)
    p = np.linspace(0, 1, 401)
    ax = axes[0]
    for tau in taus:
        rho = sampling_distribution(p, tau)
        ax.plot(p, rho * p.size, label=f"tau = {tau}")
    ax.axhline(1.0, color="k", lw=1, ls="--", label="uniform (tau -> inf)")
    ax.set(xlabel="pass rate p", ylabel="rho*(p) x N (1 = uniform)", yscale="log",
           title="Eq. 14 sampling weight relative to uniform")
    ax.legend()
    ax = axes[1]
    t = np.logspace(-2.5, 1, 60)
    for name, share in ess_shares(t).items():
        ax.plot(t, share, label=name)
    ax.set(xscale="log", xlabel="tau", ylabel="effective sample size / N", title="how many prompts rho* uses")
    ax.legend()
    return save(fig, out, "fig3_sampling_distribution")


# ----------------------------------------------------------------------------------------------------------- 4
def allocation_figure(out: Path, comparison: AllocationComparison) -> list[Path]:
    plt = _plt()
    p, alloc, variances = comparison.p, comparison.allocations, comparison.variances
    m, budget = p.size, comparison.budget
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), constrained_layout=True)
    c = colors(alloc)
    for name, n in alloc.items():
        axes[0].plot(p, n, "o-", ms=3, label=name, color=c[name])
    axes[0].set(xlabel="pass rate p", ylabel="rollouts n_i", title=f"allocation of {budget} rollouts to {m} prompts")
    axes[0].legend()
    names = list(alloc)
    base = variances["cures"]
    bars = axes[1].bar(names, [variances[k] / base for k in names], color=[c[k] for k in names])
    for bar, k in zip(bars, names, strict=True):
        axes[1].annotate(f"{variances[k] / base:.2f}x", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                         ha="center", va="bottom")
    axes[1].set(ylabel="sum sigma²/n relative to CurES", title="total gradient variance (Eq. 19) at equal budget")
    return save(fig, out, "fig4_allocation")


# ----------------------------------------------------------------------------------------------------------- 5
def learning_curves(out: Path, runs: dict, accuracy: str, groups: dict[str, tuple[str, ...]]) -> list[Path]:
    plt = _plt()
    fig, axes = plt.subplots(1, len(groups), figsize=(6 * len(groups), 4.2), constrained_layout=True, sharey=True)
    c = colors(runs)
    for ax, (title, names) in zip(np.atleast_1d(axes), groups.items(), strict=True):
        for name in names:
            if name not in runs:
                continue
            x, mean, lo, hi = mean_curve(runs[name], accuracy)
            full = np.isfinite(mean) & (np.sum(np.isfinite(stacked(runs[name], accuracy)), axis=0) == len(runs[name]))
            ax.plot(x[full], mean[full], label=name, color=c[name], lw=1.6)
            band = full & np.isfinite(lo)
            ax.fill_between(x[band], lo[band], hi[band], color=c[name], alpha=0.18, lw=0)
        ax.set(xlabel="rollouts", title=title)
        ax.legend()
    np.atleast_1d(axes)[0].set_ylabel(accuracy.replace("_", " ") + " (mean, 95% band)")
    return save(fig, out, "fig5_learning_curves")


# ----------------------------------------------------------------------------------------------------------- 6
def speedup_figure(out: Path, result: dict) -> list[Path]:
    plt = _plt()
    rows = result["policies"]
    names = [r["policy"] for r in rows]
    c = colors(names)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4), constrained_layout=True)
    speed = [r["speedup"] if np.isfinite(r["speedup"]) else 0.0 for r in rows]
    bars = axes[0].barh(names, speed, color=[c[n] for n in names])
    for bar, r in zip(bars, rows, strict=True):
        label = f"{r['speedup']:.2f}x" if np.isfinite(r["speedup"]) else "peak not reached"
        axes[0].annotate(label, (bar.get_width(), bar.get_y() + bar.get_height() / 2), va="center", fontsize=8,
                         xytext=(3, 0), textcoords="offset points")
    axes[0].axvline(1.0, color="k", lw=1, ls="--")
    axes[0].set(xlabel=f"speed-up to {result['baseline']}'s peak (rollouts)", title="the paper's speed-up, in rollouts")
    axes[0].invert_yaxis()
    means = [r["final_accuracy"]["mean"] for r in rows]
    err = np.array([[r["final_accuracy"]["mean"] - r["final_accuracy"]["lo"] for r in rows],
                    [r["final_accuracy"]["hi"] - r["final_accuracy"]["mean"] for r in rows]])
    axes[1].errorbar(means, names, xerr=err, fmt="o", capsize=3, color="k")
    axes[1].set(xlabel="final accuracy at equal rollouts (mean, 95% CI)", title="final accuracy")
    axes[1].invert_yaxis()
    return save(fig, out, "fig6_speedup")


# ----------------------------------------------------------------------------------------------------------- 7
def pass_rate_evolution(out: Path, runs: dict, names=("grpo", "cures"), snapshots: int = 6) -> list[Path]:
    plt = _plt()
    fig, axes = plt.subplots(1, len(names), figsize=(5.5 * len(names), 4.2), constrained_layout=True, sharey=True)
    for ax, name in zip(np.atleast_1d(axes), names, strict=True):
        hist = np.mean([r.hist for r in runs[name]], axis=0)  # [evals, bins]
        steps = runs[name][0].curves[:, 0]
        rows = np.unique(np.linspace(0, hist.shape[0] - 1, snapshots).round().astype(int))
        bins = hist.shape[1]
        centres = (np.arange(bins) + 0.5) / bins
        for k, i in enumerate(rows):
            density = hist[i] / hist[i].max()
            ax.fill_between(centres, k, k + 0.9 * density, alpha=0.6, step="mid")
            ax.text(1.01, k + 0.1, f"step {steps[i]:.0f}", fontsize=8, transform=ax.get_yaxis_transform())
        ax.set(xlabel="pass rate p of training prompts", title=f"{name}: training pool over training", xlim=(0, 1),
               yticks=[])
    return save(fig, out, "fig7_pass_rate_evolution")


# ----------------------------------------------------------------------------------------------------------- 8
def sensitivity_figure(out: Path, sens, ablation: list[dict]) -> list[Path]:
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4), constrained_layout=True)
    ax = axes[0]
    m = [a["mean"] for a in sens.tau_accuracy]
    err = np.array([[a["mean"] - a["lo"] for a in sens.tau_accuracy], [a["hi"] - a["mean"] for a in sens.tau_accuracy]])
    ax.errorbar(sens.taus, m, yerr=err, fmt="o-", capsize=3)
    ax.set(xscale="log", xlabel="tau", ylabel="final held-out accuracy", title="cures: temperature (equal steps)")
    ax = axes[1]
    im = ax.imshow(sens.grid_accuracy, cmap="viridis", origin="lower", aspect="auto")
    for i in range(len(sens.n_pre)):
        for j in range(len(sens.coefs)):
            ax.text(j, i, f"{sens.grid_accuracy[i, j]:.3f}\n{sens.grid_rollouts[i, j] / 1e3:.0f}k rollouts",
                    ha="center", va="center", fontsize=7, color="w")
    ax.set(xticks=range(len(sens.coefs)), xticklabels=sens.coefs, yticks=range(len(sens.n_pre)),
           yticklabels=sens.n_pre, xlabel="budget coefficient n (rollouts per prompt)", ylabel="pre-rollouts N'",
           title="cures-paper: final held-out accuracy (equal steps)")
    ax.grid(False)
    fig.colorbar(im, ax=ax)
    ax = axes[2]
    names = [r["policy"] for r in ablation]
    ax.bar(names, [r["speedup"] if np.isfinite(r["speedup"]) else 0 for r in ablation],
           color=[colors(names)[n] for n in names])
    ax.axhline(1.0, color="k", lw=1, ls="--")
    ax.tick_params(axis="x", labelrotation=20)
    ax.set(ylabel="speed-up to grpo's peak (rollouts)", title="ablation: sampling, allocation, both")
    return save(fig, out, "fig8_sensitivity_ablation")


# ----------------------------------------------------------------------------------------------------------- 9
def reconcile_figure(out: Path, result: dict) -> list[Path]:
    """Speed-up to the baseline's peak at equal steps (the paper's accounting) beside equal rollouts, and the
    rollouts each policy generates per step."""
    plt = _plt()
    rows = result["rows"]
    names = [r["policy"] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(13, 4), constrained_layout=True)
    y = np.arange(len(names))
    for offset, key, label in ((-0.2, "equal_steps_speedup_steps", "equal steps (counted in steps)"),
                               (0.2, "equal_rollouts_speedup_rollouts", "equal rollouts (counted in rollouts)")):
        vals = np.array([r[key] if np.isfinite(r[key]) else 0.0 for r in rows])
        ci = np.array([r[f"{key}_ci"] for r in rows], dtype=float)
        err = np.where(np.isfinite(ci), np.abs(ci - vals[:, None]), 0.0).T
        axes[0].barh(y + offset, vals, height=0.38, xerr=err, capsize=2, label=label)
    axes[0].axvline(1.0, color="k", lw=1, ls="--")
    axes[0].set(yticks=y, yticklabels=names, xlabel=f"speed-up to {result['baseline']}'s peak (0: not reached)",
                title="the paper's accounting (steps) and ours (rollouts)")
    axes[0].invert_yaxis()
    axes[0].legend()
    per_step = [r["rollouts_per_step_vs_baseline"] for r in rows]
    untrained = [r["rollouts_per_step_vs_baseline"] * r["untrained_share"] for r in rows]
    axes[1].barh(y, per_step, color="tab:gray", label="generated")
    axes[1].barh(y, untrained, color="tab:red", label="generated, not trained (pre-rollouts, screening, drops)")
    axes[1].axvline(1.0, color="k", lw=1, ls="--")
    axes[1].set(yticks=y, yticklabels=names, xlabel=f"rollouts per step (x {result['baseline']})",
                title="what a step costs")
    axes[1].invert_yaxis()
    axes[1].legend()
    return save(fig, out, "fig9_reconcile")
