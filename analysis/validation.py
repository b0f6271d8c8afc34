"""The validation report of `python -m cures.analysis.sim_to_real report`: calibrate the simulator on the `grpo`
runs only, predict every policy with the calibrated scenario, and compare with what the real runs did.

Per policy, with 95 % intervals over seeds (real runs) or over simulated seeds (predictions):
- the per-step mean reward of the generated rollouts and the per-step zero-variance fraction, averaged over the
  run (and per step in the figure); the prediction error is predicted minus observed;
- rollouts to reach `grpo`'s peak: the first step whose 5-step moving average of the mean reward curve reaches the
  peak of `grpo`'s (real curves for the observed number, simulated ones for the predicted), times the rollouts per
  step;
- the model's quality at the end: the real runs' held-out greedy accuracy on the evaluation problems, and the
  simulator's final mean pass rate over the training pool, its only counterpart (the two are on different prompts
  and decodings, so they are compared by rank, not by value).
The predicted ranking of the policies by final quality is set against the observed one; how sure the observed one
is comes from a bootstrap over seeds (the share of resamples that give the same ranking).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from cures.simulator.calibrate import (
    TARGETS,
    calibrate,
    calibration_json,
    empirical_bayes_pass_rates,
    interval,
    observed_runs,
    read_profile,
    scenario_toml,
    simulated_curves,
    step_curves,
)
from cures.simulator.engine import COLUMNS
from cures.simulator.run import mean_ci

PREDICT_SEEDS = 64
WINDOW = 5


def run_dir(out: Path, policy: str, seed: int) -> Path:
    """Where the protocol keeps the run of `policy` with `seed`."""
    return Path(out) / "runs" / f"{policy}-seed{seed}"


def _moving(curve: np.ndarray) -> np.ndarray:
    kernel = np.ones(WINDOW) / WINDOW
    return np.convolve(curve, kernel, mode="valid")


def _steps_to(curve: np.ndarray, target: float) -> float:
    """1-based step at which the moving average first reaches `target` (NaN: never)."""
    hit = np.flatnonzero(_moving(curve) >= target)
    return float(hit[0] + WINDOW) if hit.size else float("nan")


def _length_drift(records) -> dict[str, float]:
    """Completion length in a real run (the records' tokens and clipped counts): tokens per rollout and the share
    clipped at the length cap, over the first and the last third of the steps."""
    gen = records[records["rollouts"] > 0]
    steps = gen["step"].max() + 1
    out = {}
    thirds = (("first_third", gen[gen["step"] < steps / 3]), ("last_third", gen[gen["step"] >= 2 * steps / 3]))
    for name, part in thirds:
        n = part["rollouts"].sum()
        out[f"tokens_per_rollout_{name}"] = float(part["tokens"].sum() / n) if n else float("nan")
        out[f"clipped_share_{name}"] = float(part["clipped"].sum() / n) if n else float("nan")
    return out


def _final_accuracy(run: Path) -> float:
    summary = json.loads((run / "summary.json").read_text())
    evals = [e for e in summary.get("evaluations", []) if "eval_accuracy" in e]
    return float(evals[-1]["eval_accuracy"]) if evals else float("nan")


def _mean_ci(per_seed, bounds: tuple[float, float] = (0.0, 1.0)) -> list[float]:
    """[mean, lo, hi] over seeds of per-seed numbers (`run.mean_ci`), the interval clipped to `bounds` (shares and
    accuracies by default)."""
    ci = mean_ci(np.asarray(per_seed, float), bounds)
    return [ci["mean"], ci["lo"], ci["hi"]]


def _ranking(values: dict[str, float]) -> list[str]:
    return sorted(values, key=lambda k: -values[k] if np.isfinite(values[k]) else np.inf)


def _bootstrap_agreement(per_seed: dict[str, np.ndarray], ranking: list[str], reps: int = 2000) -> float:
    """Share of bootstrap resamples over seeds (each policy resampled on its own) whose ranking of mean values is
    `ranking`; NaN when a policy has a single seed."""
    if min(v.size for v in per_seed.values()) < 2:
        return float("nan")  # one seed: nothing to resample, no support to speak of
    rng = np.random.default_rng(0)
    same = 0
    for _ in range(reps):
        means = {k: float(np.mean(rng.choice(v, v.size))) for k, v in per_seed.items()}
        same += _ranking(means) == ranking
    return same / reps


def validation_result(out: Path, policies: list[str], seeds: list[int], sim_seeds: int = 16,
                      max_iter: int = 80) -> dict:
    """Every number of the report (module docstring), from the runs and the profile under `out`."""
    from cures.records import read_records

    out = Path(out)
    done = {p: [run_dir(out, p, s) for s in seeds if (run_dir(out, p, s) / "summary.json").is_file()]
            for p in policies}
    if not done.get("grpo"):
        raise ValueError(f"--out {out}: no finished grpo run to calibrate on (run the protocol first)")
    where = out / "validation"
    where.mkdir(exist_ok=True)
    prior = empirical_bayes_pass_rates(read_profile(out / "profile"), where / "calibrated_pass_rates.csv")
    observed = observed_runs(done["grpo"])
    fit = calibrate(observed, prior, sim_seeds=sim_seeds, max_iter=max_iter)
    calib = calibration_json(fit)
    (where / "calibrated.toml").write_text(scenario_toml(fit, "Calibrated on the grpo runs of the sim-to-real "
                                                         "protocol (cures.analysis.sim_to_real)"))
    (where / "calibration.json").write_text(json.dumps(calib, indent=2) + "\n")
    steps = observed.steps
    rollouts_per_step = observed.rollouts_per_step
    real, predicted = {}, {}
    for p in policies:
        if not done[p]:
            continue
        frames = [read_records(r) for r in done[p]]
        curves = [step_curves(f) for f in frames]
        n = min(steps, *(c["train_reward"].size for c in curves))
        real[p] = {y: np.stack([c[y][:n] for c in curves]) for y in TARGETS}
        real[p]["final_quality"] = np.array([_final_accuracy(r) for r in done[p]])
        real[p]["lengths"] = [_length_drift(f) for f in frames]
        sim = simulated_curves(p, fit["settings"], steps, PREDICT_SEEDS, seed=20_000)
        predicted[p] = {**sim, "final_quality": _final_pool_accuracy(p, fit["settings"], steps)}
    grpo_peak_real = float(np.max(_moving(np.nanmean(real["grpo"]["train_reward"], axis=0))))
    grpo_peak_sim = float(np.max(_moving(np.nanmean(predicted["grpo"]["train_reward"], axis=0))))
    rows = {}
    for p in real:
        row = {"seeds": int(real[p]["train_reward"].shape[0])}
        for y in TARGETS:
            obs = np.nanmean(real[p][y], axis=1)
            pred = np.nanmean(predicted[p][y], axis=1)
            row[y] = {"observed": _mean_ci(obs), "predicted": _mean_ci(pred),
                      "error": float(np.mean(pred) - np.mean(obs)),
                      "curve_rmse": float(np.sqrt(np.nanmean((np.nanmean(predicted[p][y], axis=0)[: real[p][y].shape[1]]
                                                              - np.nanmean(real[p][y], axis=0)) ** 2)))}
        obs_steps = np.array([_steps_to(c, grpo_peak_real) for c in real[p]["train_reward"]])
        pred_steps = np.array([_steps_to(c, grpo_peak_sim) for c in predicted[p]["train_reward"]])
        row["rollouts_to_grpo_peak"] = {
            "observed_mean_curve": _steps_to(np.nanmean(real[p]["train_reward"], axis=0),
                                             grpo_peak_real) * rollouts_per_step,
            "predicted_mean_curve": _steps_to(np.nanmean(predicted[p]["train_reward"], axis=0),
                                              grpo_peak_sim) * rollouts_per_step,
            "observed_share_of_seeds_reaching": float(np.mean(np.isfinite(obs_steps))),
            "predicted_share_of_seeds_reaching": float(np.mean(np.isfinite(pred_steps)))}
        row["lengths"] = {k: _mean_ci([d[k] for d in real[p]["lengths"]], (0.0, 1.0) if "share" in k else
                                      (0.0, np.inf)) for k in real[p]["lengths"][0]}  # tokens: only >= 0
        row["final_quality"] = {"observed_heldout_accuracy": _mean_ci(real[p]["final_quality"]),
                                "predicted_pool_pass_rate": _mean_ci(predicted[p]["final_quality"])}
        rows[p] = row
    obs_rank = _ranking({p: rows[p]["final_quality"]["observed_heldout_accuracy"][0] for p in rows})
    pred_rank = _ranking({p: rows[p]["final_quality"]["predicted_pool_pass_rate"][0] for p in rows})
    summary = {"calibrated_settings": calib["settings"], "calibration_loss_per_dof": calib["loss"] / calib["dof"],
               "observed_ranking": obs_rank, "predicted_ranking": pred_rank,
               "rankings_match": obs_rank == pred_rank, "kendall_tau": _kendall(obs_rank, pred_rank),
               "observed_ranking_bootstrap_support": _bootstrap_agreement(
                   {p: real[p]["final_quality"] for p in rows}, obs_rank),
               "runs": {p: len(done[p]) for p in policies}}
    return {"summary": summary, "policies": rows, "calibration": calib,
            "curves": {p: {y: {"observed": interval(real[p][y]), "predicted": interval(predicted[p][y])}
                           for y in TARGETS} for p in rows}}


def _final_pool_accuracy(policy: str, settings: dict, steps: int) -> np.ndarray:
    from cures.simulator.config import build_config
    from cures.simulator.run import run_seed

    cfg = build_config(overrides={**settings, "steps": steps, "eval_every": steps, "seeds": 1, "n_heldout": 0,
                                  "threads": 1})
    j = COLUMNS.index("train_accuracy")
    return np.array([run_seed(policy, cfg, 30_000 + s).curves[-1, j] for s in range(PREDICT_SEEDS)])


def _kendall(a: list[str], b: list[str]) -> float:
    from scipy.stats import kendalltau

    if len(a) < 2:
        return float("nan")
    return float(kendalltau([a.index(k) for k in a], [b.index(k) for k in a]).statistic)


def _fmt(ci: list[float], digits: int = 3) -> str:
    m, lo, hi = ci
    if not np.isfinite(m):
        return "n/a"
    return f"{m:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]" if np.isfinite(lo) else f"{m:.{digits}f}"


def validation_markdown(result: dict) -> str:
    s = result["summary"]
    c = s["calibrated_settings"]
    mode = "tabular" if c["mode"] == "tabular" else f"IRT d={c['dim']}"
    lines = [f"Calibrated on grpo only: {mode}, lr={c['lr']:.3g}, unlearnable={c['unlearnable']:.2f}, "
             f"a_spread={c['a_spread']:.2f} (chi-square per degree of freedom {s['calibration_loss_per_dof']:.2f}).",
             "", "| policy | seeds | mean reward: observed | predicted | zero-variance: observed | predicted | "
             "rollouts to grpo's peak: observed / predicted | held-out accuracy (real) | pool pass rate (sim) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for p, r in result["policies"].items():
        roll = r["rollouts_to_grpo_peak"]
        reach = " / ".join("never" if not np.isfinite(v) else f"{v:.0f}"
                           for v in (roll["observed_mean_curve"], roll["predicted_mean_curve"]))
        lines.append(f"| {p} | {r['seeds']} | {_fmt(r['train_reward']['observed'])} | "
                     f"{_fmt(r['train_reward']['predicted'])} | {_fmt(r['zero_variance_fraction']['observed'])} | "
                     f"{_fmt(r['zero_variance_fraction']['predicted'])} | {reach} | "
                     f"{_fmt(r['final_quality']['observed_heldout_accuracy'])} | "
                     f"{_fmt(r['final_quality']['predicted_pool_pass_rate'])} |")
    lines += ["", "Completion length in the real runs (tokens per rollout; share clipped at the cap), first and last "
              "third of the steps:", "",
              "| policy | tokens, first third | last third | clipped, first third | last third |",
              "|---|---|---|---|---|"]
    for p, r in result["policies"].items():
        length = r["lengths"]
        cells = [_fmt(length[f"tokens_per_rollout_{t}"], 1) for t in ("first_third", "last_third")]
        cells += [_fmt(length[f"clipped_share_{t}"]) for t in ("first_third", "last_third")]
        lines.append(f"| {p} | " + " | ".join(cells) + " |")
    support = s["observed_ranking_bootstrap_support"]
    support = f"{support:.2f}" if np.isfinite(support) else "n/a: a single seed per policy"
    lines += ["", f"Observed ranking by final held-out accuracy: {', '.join(s['observed_ranking'])} (bootstrap "
              f"support over seeds {support}); predicted ranking by final pool "
              f"pass rate: {', '.join(s['predicted_ranking'])}; Kendall tau {s['kendall_tau']:.2f}."]
    return "\n".join(lines) + "\n"


def validation_figure(path: Path, result: dict) -> Path:
    """Per policy (columns): observed and predicted per-step mean reward (top) and zero-variance fraction
    (bottom), means with 95 % bands."""
    from cures.analysis.figures import _plt

    plt = _plt()
    names = list(result["curves"])
    fig, axes = plt.subplots(2, len(names), figsize=(3.2 * len(names), 5.4), sharey="row", squeeze=False,
                             constrained_layout=True)
    for j, p in enumerate(names):
        for i, y in enumerate(TARGETS):
            ax = axes[i, j]
            for kind, color, ls in (("observed", "C0", "-"), ("predicted", "C3", "--")):
                m, lo, hi = (np.asarray(v, float) for v in result["curves"][p][y][kind])
                x = np.arange(1, m.size + 1)
                ax.plot(x, m, color=color, ls=ls, label=kind)
                ax.fill_between(x, lo, hi, color=color, alpha=0.15, lw=0)
            ax.set_title(p if i == 0 else "", fontsize=10)
            ax.set_xlabel("policy step" if i == 1 else "")
            if j == 0:
                ax.set_ylabel("mean reward" if y == "train_reward" else "zero-variance slots")
    axes[0, 0].legend()
    fig.suptitle("Real runs (SmolLM2-135M) against the simulator calibrated on grpo", fontsize=10)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def write_validation(out: Path, policies: list[str], seeds: list[int], **fit) -> dict:
    """validation.json, validation.md and validation.png in `out/validation/` (`fit`: `sim_seeds`, `max_iter`)."""
    result = validation_result(out, policies, seeds, **fit)
    where = Path(out) / "validation"
    serial = {**result, "curves": {p: {y: {k: [np.asarray(v, float).tolist() for v in ci] for k, ci in c.items()}
                                       for y, c in cs.items()} for p, cs in result["curves"].items()}}
    (where / "validation.json").write_text(json.dumps(serial, indent=2, default=float) + "\n")
    (where / "validation.md").write_text(validation_markdown(result))
    validation_figure(where / "validation.png", serial)
    return result
