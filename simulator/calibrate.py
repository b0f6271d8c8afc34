"""Fit the simulator to real runs: `cures calibrate --run DIR [--run DIR ...] --profile DIR --out scenario.toml`.

What is measured is not fitted: the initial pass rates come from a `cures profile` (each prompt's p drawn from its
posterior under the profile's fitted Beta-binomial prior, `empirical_bayes_pass_rates`), and the shape of a step
(prompts per step m, rollouts per step N, steps) from the runs' records. What is fitted is how training moves the
pass rates: the learning rate `lr`, how learning on one prompt moves the others (`mode` tabular, or IRT with shared-
skill dimension `dim`), the share of prompts training cannot move (`unlearnable`) and the spread of the prompts'
discriminations (`a_spread`).

The fit is by simulated moments (sim-to-real notes: the per-step likelihood depends on the parameters through the
whole trajectory). The targets are the per-step mean reward of the generated rollouts and the per-step
zero-variance fraction of the generated slots, averaged over the runs. For parameters theta the simulator runs
`sim_seeds` seeds with the same seeds for every theta (common random numbers), and the loss is

    L(theta) = sum_t sum_{y in (reward, zvf)} (obs_y,t - sim_y,t(theta))^2 / (Var sim_y,t(theta) (1/R + 1/S) + v0)

(R runs, S simulated seeds, v0 = 1e-4 a floor for steps where every seed agrees): a chi-square of the mean curves,
with the model's own seed-to-seed variance standing for the runs' (two or three real runs, or one, cannot estimate
a per-step variance).
The continuous settings are fitted by Nelder-Mead in unbounded coordinates (log lr, logit unlearnable,
log a_spread) for each structural mode in turn; the mode with the smallest loss wins.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np

from cures.simulator.engine import COLUMNS

MODES = ({"mode": "tabular"}, {"mode": "irt", "dim": 1}, {"mode": "irt", "dim": 4}, {"mode": "irt", "dim": 16})
START = {"lr": 0.5, "unlearnable": 0.1, "a_spread": 0.5}
FLOOR = 1e-4  # v0: variance floor of the loss
TARGETS = ("train_reward", "zero_variance_fraction")


@dataclasses.dataclass
class Observed:
    """Per-step curves of real runs: `curves[y]` is [runs, steps] for each target y; the shape of a step."""

    policy: str
    curves: dict[str, np.ndarray]
    prompts_per_step: int
    rollouts_per_step: int
    runs: list[str]

    @property
    def steps(self) -> int:
        return next(iter(self.curves.values())).shape[1]


def step_curves(records) -> dict[str, np.ndarray]:
    """Per policy step of one run: the mean reward of the rollouts generated in it, and the share of its generated
    slots whose rollouts all agree (zero variance)."""
    gen = records[records["rollouts"] > 0]
    by_step = gen.groupby("step")
    reward = by_step["successes"].sum() / by_step["rollouts"].sum()
    zero = ((gen["successes"] == 0) | (gen["successes"] == gen["rollouts"])).groupby(gen["step"]).mean()
    return {"train_reward": reward.to_numpy(float), "zero_variance_fraction": zero.to_numpy(float)}


def observed_runs(run_dirs: list, option: str = "--run") -> Observed:
    """The runs' records as per-step curves, cut to the shortest run; every run must be of one policy and one step
    shape (ValueError naming the run otherwise)."""
    import json

    from cures.records import read_records

    curves, shapes, names = [], set(), []
    policy = None
    for run in run_dirs:
        frame = read_records(run, option)
        summary = Path(run) / "summary.json"
        steps = sorted(frame["step"].unique())
        if steps != list(range(len(steps))):
            raise ValueError(f"{option} {run}: the records skip steps (have {len(steps)} of {steps[-1] + 1})")
        gen = frame[frame["rollouts"] > 0]
        rollouts_per_step = int(gen.groupby("step")["rollouts"].sum().median())
        batch = int(frame[frame["group"] >= 0].groupby("step")["group"].nunique().median())
        name = json.loads(summary.read_text()).get("policy") if summary.is_file() else None
        if policy is not None and name is not None and name != policy:
            raise ValueError(f"{option} {run}: a run of {name}, the others are of {policy}: calibrate on one policy")
        policy = policy or name
        shapes.add((batch, rollouts_per_step))
        curves.append(step_curves(frame))
        names.append(str(run))
    if len(shapes) > 1:
        raise ValueError(f"{option}: the runs differ in prompts or rollouts per step ({sorted(shapes)})")
    if policy is None:
        raise ValueError(f"{option} {run_dirs[0]}: no summary.json says which policy the run used")
    n = min(c["train_reward"].size for c in curves)
    (batch, rollouts_per_step), = shapes
    return Observed(policy, {y: np.stack([c[y][:n] for c in curves]) for y in TARGETS}, batch, rollouts_per_step, names)


def read_profile(profile_dir, option: str = "--profile") -> Path:
    """The profile's pass_rates.csv, checked: present, with rows, every attempts > 0 and 0 <= successes <=
    attempts (a one-line ValueError naming the file otherwise)."""
    import pandas as pd

    path = Path(profile_dir)
    path = path if path.suffix == ".csv" else path / "pass_rates.csv"
    if not path.is_file():
        raise ValueError(f"{option} {profile_dir}: no pass_rates.csv (write one with `cures profile`)")
    try:
        frame = pd.read_csv(path)
    except (ValueError, OSError) as exc:
        raise ValueError(f"{option} {path}: not a readable CSV ({str(exc).splitlines()[0]})") from None
    missing = [c for c in ("prompt_id", "successes", "attempts") if c not in frame.columns]
    if missing:
        raise ValueError(f"{option} {path}: lacks the columns {', '.join(missing)}")
    if frame.empty:
        raise ValueError(f"{option} {path}: the profile is empty")
    s, n = pd.to_numeric(frame["successes"], errors="coerce"), pd.to_numeric(frame["attempts"], errors="coerce")
    if s.isna().any() or n.isna().any():
        raise ValueError(f"{option} {path}: successes and attempts must be numbers")
    if (n <= 0).any():
        raise ValueError(f"{option} {path}: {int((n <= 0).sum())} prompts with attempts 0: profile them again")
    if ((s < 0) | (s > n)).any():
        raise ValueError(f"{option} {path}: successes must lie between 0 and attempts")
    return path


def empirical_bayes_pass_rates(pass_rates: Path, out: Path) -> Path:
    """Each profiled prompt's pass rate under the population's fitted Beta-binomial prior Beta(a, b): the posterior
    Beta(s + a, N' - s + b) (empirical Bayes), written as prompt_id,alpha,beta. The uniform prior of Beta(s + 1,
    N' - s + 1) pulls every prompt toward 1/2, so a simulator started from it sees fewer zero-variance groups than
    the real model does."""
    import pandas as pd

    from cures._io import atomic_write_text
    from cures.posterior import beta_binomial_fit

    frame = pd.read_csv(pass_rates)
    s, n = frame["successes"].to_numpy(float), frame["attempts"].to_numpy(float)
    prior = beta_binomial_fit(s.astype(np.int64), n.astype(np.int64))
    table = pd.DataFrame({"prompt_id": frame["prompt_id"], "alpha": s + prior["a"], "beta": n - s + prior["b"]})
    return atomic_write_text(out, table.to_csv(index=False))


def simulated_curves(policy: str, settings: dict, steps: int, seeds: int, seed: int = 0) -> dict[str, np.ndarray]:
    """[seeds, steps] per target: the simulator evaluated after every step."""
    from cures.simulator.config import build_config
    from cures.simulator.run import run_seed

    cfg = build_config(overrides={**settings, "steps": steps, "eval_every": 1, "seeds": seeds, "seed": seed,
                                  "n_heldout": 0, "threads": 1})
    runs = [run_seed(policy, cfg, seed + i) for i in range(seeds)]
    out = {}
    for y in TARGETS:
        j = COLUMNS.index(y)
        rows = [r.curves[1 : steps + 1, j] for r in runs]  # row 0 is before the first step
        out[y] = np.stack([np.pad(r, (0, steps - r.size), constant_values=np.nan) for r in rows])
    return out


def curve_loss(observed: dict[str, np.ndarray], simulated: dict[str, np.ndarray]) -> float:
    """The chi-square of the mean curves (module docstring)."""
    total = 0.0
    for y in TARGETS:
        obs, sim = observed[y], simulated[y]
        var = np.nanvar(sim, axis=0, ddof=1) * (1 / obs.shape[0] + 1 / sim.shape[0]) + FLOOR
        d = np.nanmean(obs, axis=0) - np.nanmean(sim, axis=0)
        total += float(np.nansum(d * d / var))
    return total


def _settings(z: np.ndarray, mode: dict) -> dict:
    """Unbounded coordinates -> settings (lr > 0, 0 <= unlearnable <= 1, 0 <= a_spread <= 5)."""
    return {**mode, "lr": float(np.exp(np.clip(z[0], -12, 6))),
            "unlearnable": float(1 / (1 + np.exp(-np.clip(z[1], -30, 30)))),
            "a_spread": float(min(5.0, np.exp(np.clip(z[2], -12, 2))))}


def calibrate(observed: Observed, pass_rates: Path, sim_seeds: int = 16, max_iter: int = 80, modes=MODES,
              progress=None) -> dict:
    """Fit the free settings to the observed curves (module docstring); returns the fit: the best settings, the
    loss of every mode, and the observed and fitted curves."""
    import pandas as pd
    from scipy.optimize import minimize

    base = {"init_pass_rate": str(pass_rates), "n_prompts": int(len(pd.read_csv(pass_rates))),
            "prompts_per_step": observed.prompts_per_step, "rollouts_per_step": observed.rollouts_per_step}
    z0 = np.array([math.log(START["lr"]), math.log(START["unlearnable"] / (1 - START["unlearnable"])),
                   math.log(START["a_spread"])])
    fits = []
    for mode in modes:
        def loss(z, mode=mode):
            sim = simulated_curves(observed.policy, {**base, **_settings(z, mode)}, observed.steps, sim_seeds)
            if progress is not None:
                progress()
            return curve_loss(observed.curves, sim)

        simplex = np.vstack([z0, z0 + np.diag([2.0, 2.0, 1.5])])  # steps of e^2 in lr, logit 2, e^1.5 in spread
        res = minimize(loss, z0, method="Nelder-Mead", options={"maxiter": max_iter, "xatol": 1e-2, "fatol": 1e-3,
                                                                "initial_simplex": simplex})
        fits.append({"settings": _settings(res.x, mode), "loss": float(res.fun), "evaluations": int(res.nfev)})
    best = min(fits, key=lambda f: f["loss"])
    settings = {**base, **best["settings"]}
    fitted = simulated_curves(observed.policy, settings, observed.steps, max(sim_seeds, 32), seed=10_000)
    return {"policy": observed.policy, "runs": observed.runs, "settings": settings, "modes": fits,
            "loss": best["loss"], "dof": 2 * observed.steps - 3, "observed": observed.curves, "fitted": fitted}


def interval(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per column of shares (rows: runs or seeds): the mean and 95 % t interval of `run.mean_ci`, clipped to [0, 1]
    (NaN bounds for one row)."""
    from cures.simulator.run import mean_ci

    cols = [mean_ci(values[:, j], (0.0, 1.0)) for j in range(values.shape[1])]
    return tuple(np.array([c[k] for c in cols], float) for k in ("mean", "lo", "hi"))


def scenario_toml(fit: dict, description: str) -> str:
    """The fitted settings as a scenario file that `simulate`, `compare` and `sweep` take (`--scenario FILE`)."""
    keys = ("mode", "dim", "lr", "unlearnable", "a_spread", "init_pass_rate", "n_prompts", "prompts_per_step",
            "rollouts_per_step")
    lines = [f"description = {description!r}".replace("'", '"')]
    for key in keys:
        if key in fit["settings"]:
            v = fit["settings"][key]
            lines.append(f"{key} = {v!r}".replace("'", '"') if isinstance(v, str) else f"{key} = {v!r}")
    lines.append(f"steps = {fit['observed']['train_reward'].shape[1]}")
    return "\n".join(lines) + "\n"


def calibration_json(fit: dict) -> dict:
    """calibration.json: the fit and its quality, per step fitted vs observed with 95 % intervals."""
    out = {k: fit[k] for k in ("policy", "runs", "settings", "modes", "loss", "dof")}
    for y in TARGETS:
        om, olo, ohi = interval(fit["observed"][y])
        fm, flo, fhi = interval(fit["fitted"][y])
        out[y] = {"observed_mean": om.tolist(), "observed_lo": olo.tolist(), "observed_hi": ohi.tolist(),
                  "fitted_mean": fm.tolist(), "fitted_lo": flo.tolist(), "fitted_hi": fhi.tolist(),
                  "rmse": float(np.sqrt(np.nanmean((om - fm) ** 2)))}
    return out
