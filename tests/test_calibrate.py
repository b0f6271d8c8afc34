"""`cures calibrate` on runs whose truth is known: records written by the framework-free policy step on a fake
backend (fixed pass rates, so training moves nothing), fitted from a profile of the same prompts. The fit must
reproduce the observed curves, write a scenario the simulator takes, and refuse bad input in one line."""

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from cures.policies import make_policy_for_budget
from cures.policies.step import Scores, run_policy_step, step_records
from cures.records import RECORDS, write_step

N_PROMPTS, M, BUDGET, STEPS = 40, 4, 16, 12
TRUE_P = np.random.default_rng(5).beta(0.7, 0.9, N_PROMPTS)


def fake_run(out, policy_name="grpo", seed=0):
    """A 'real' run: every step's records as `cures train` writes them, and its summary.json."""
    policy = make_policy_for_budget(policy_name, M, BUDGET)
    state = policy.init(N_PROMPTS, seed=seed)
    rng = np.random.default_rng(100 + seed)

    def generate(plan):
        return [int(x) for x in plan.rollout_prompt_ids()]

    def score(plan, rollouts):
        return Scores((rng.random(len(rollouts)) < TRUE_P[rollouts]).astype(float))

    for step in range(STEPS):
        done = run_policy_step(policy, state, generate, score)
        write_step(out / RECORDS, step, step_records(done, np.full(len(done.rollouts), 9), None))
    (out / "summary.json").write_text(json.dumps({"policy": policy_name}))
    return out


def fake_profile(out, attempts=8):
    out.mkdir(parents=True, exist_ok=True)
    s = np.random.default_rng(9).binomial(attempts, TRUE_P)
    pd.DataFrame({"prompt_id": np.arange(N_PROMPTS), "successes": s, "attempts": attempts}).to_csv(
        out / "pass_rates.csv", index=False)
    return out


def cures_calibrate(*args):
    from cures.cli import app

    return CliRunner().invoke(app, ["calibrate", *args], env={"NO_COLOR": "1", "COLUMNS": "300"})


def test_calibrate_fits_known_runs_and_writes_a_usable_scenario(tmp_path):
    runs = [fake_run(tmp_path / f"run{s}", seed=s) for s in range(3)]
    profile = fake_profile(tmp_path / "profile")
    out = tmp_path / "fit" / "scenario.toml"
    res = cures_calibrate(*[a for r in runs for a in ("--run", str(r))], "--profile", str(profile), "--out", str(out),
                          "--sim-seeds", "4", "--max-iter", "8")
    assert res.exit_code == 0, res.output + res.stderr
    fit = json.loads((out.parent / "calibration.json").read_text())
    assert fit["policy"] == "grpo" and len(fit["runs"]) == 3 and len(fit["modes"]) == 4
    assert fit["loss"] / fit["dof"] < 2.5  # the mean curves agree within their noise (a chi-square per degree)
    for y, tolerance in (("train_reward", 0.06), ("zero_variance_fraction", 0.1)):
        assert len(fit[y]["observed_mean"]) == STEPS == len(fit[y]["fitted_mean"])
        assert np.mean(fit[y]["fitted_mean"]) == pytest.approx(np.mean(fit[y]["observed_mean"]), abs=tolerance)
    observed = np.array(fit["train_reward"]["observed_mean"])
    assert np.isclose(observed.mean(), TRUE_P.mean(), atol=0.08)  # the records say what the world was
    assert (out.parent / "calibration.png").stat().st_size > 0
    from cures.simulator.config import build_config

    cfg = build_config(str(out))
    assert (cfg.prompts_per_step, cfg.rollouts_per_step, cfg.n_prompts, cfg.steps) == (M, BUDGET, N_PROMPTS, STEPS)
    assert cfg.init_pass_rate.endswith("pass_rates.csv") and cfg.lr == pytest.approx(fit["settings"]["lr"])


def test_calibrate_bad_input_is_one_line(tmp_path):
    good = fake_run(tmp_path / "good")
    profile = fake_profile(tmp_path / "profile")
    (tmp_path / "norecords").mkdir()
    other = fake_run(tmp_path / "other", policy_name="cures")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "pass_rates.csv").write_text("prompt_id,successes,attempts\n")
    zero = fake_profile(tmp_path / "zero", attempts=0)
    cases = [
        (["--run", str(tmp_path / "missing"), "--profile", str(profile)], "no such directory"),
        (["--run", str(tmp_path / "norecords"), "--profile", str(profile)], "no per-prompt records"),
        (["--run", str(good), "--run", str(other), "--profile", str(profile)], "calibrate on one policy"),
        (["--run", str(good), "--profile", str(empty)], "the profile is empty"),
        (["--run", str(good), "--profile", str(zero)], "attempts 0"),
        (["--run", str(good), "--profile", str(tmp_path / "nowhere")], "no pass_rates.csv"),
        (["--run", str(good), "--profile", str(profile), "--out", str(tmp_path / "x.json")], "must end in .toml"),
    ]
    for args, message in cases:
        res = cures_calibrate(*args)
        assert res.exit_code == 2 and message in res.stderr, (args, res.stderr)
        assert len(res.stderr.strip().splitlines()) == 1, res.stderr


def test_recommend_ranks_policies_on_a_profile_and_refuses_bad_input(tmp_path):
    from cures.cli import app

    profile = fake_profile(tmp_path / "profile")

    def recommend(*args):
        return CliRunner().invoke(app, ["recommend", *args], env={"NO_COLOR": "1", "COLUMNS": "300"})

    res = recommend("--profile", str(profile), "--rollouts-per-step", "16", "--prompts-per-step", "4", "--steps", "20",
                    "--seeds", "3", "--policies", "grpo,cures,mopps")
    assert res.exit_code == 0, res.stdout + res.stderr
    assert "recommended: " in res.stdout and "caveat:" in res.stdout
    assert "cures " in res.stdout and "mopps " in res.stdout and f"{N_PROMPTS} profiled prompts" in res.stdout
    zero = fake_profile(tmp_path / "zero", attempts=0)
    for args, message in ((["--profile", str(zero)], "attempts 0"),
                          (["--profile", str(profile), "--steps", "5", "--passes", "2"], "give one"),
                          (["--profile", str(profile), "--policies", "grpo,nope"], "unknown policy 'nope'"),
                          (["--profile", str(tmp_path / "none")], "no pass_rates.csv")):
        bad = recommend(*args, "--rollouts-per-step", "16", "--prompts-per-step", "4")
        assert bad.exit_code == 2 and message in bad.stderr, (args, bad.stderr)


@given(st.integers(1, 6), st.integers(1, 5), st.integers(0, 2**32 - 1))
@settings(max_examples=40, deadline=None)
def test_intervals_of_shares_are_the_seed_intervals_clipped_to_the_unit_range(rows, cols, seed):
    """calibrate.interval is run.mean_ci column by column (one rule for every interval), bounded to [0, 1]."""
    from cures.simulator.calibrate import interval
    from cures.simulator.run import mean_ci

    rng = np.random.default_rng(seed)
    v = rng.choice([0.0, 0.02, 0.5, 0.97, 1.0, np.nan], size=(rows, cols))
    mean, lo, hi = interval(v)
    for j in range(cols):
        ref = mean_ci(v[:, j], (0.0, 1.0))
        np.testing.assert_array_equal([mean[j], lo[j], hi[j]], [ref["mean"], ref["lo"], ref["hi"]])
    finite = np.isfinite(lo)
    assert ((lo[finite] >= 0) & (hi[finite] <= 1) & (lo[finite] <= hi[finite])).all()
