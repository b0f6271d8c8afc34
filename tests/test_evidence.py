"""Evidence: compare's three accountings, speed-ups with intervals, ScaleRL fits, `passes`, `cures sweep` (tidy
tables, resume, determinism over process counts, Ctrl-C), the regime map and `cures reconcile`."""

import json
import math
import signal
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from signal_helpers import signal_sweep_after_first_cell

from cures.simulator.compare import compare, comparison_frame, seeds_frame
from cures.simulator.config import build_config
from cures.simulator.run import mean_ci
from cures.simulator.scaling import cost_to_reach, fit_saturating, saturating

SMALL = {"n_prompts": 400, "n_heldout": 200, "steps": 24, "eval_every": 2, "seeds": 3, "prompts_per_step": 16}
ENV = {"PATH": "/usr/bin:/bin", "NO_COLOR": "1", "COLUMNS": "250"}



def cli(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "cures", *args], capture_output=True, text=True, env=ENV,
                          timeout=timeout)


@pytest.fixture(scope="module")
def matched():
    """The same three policies matched in steps, rollouts and compute (train_cost 0.5)."""
    cfg = build_config("paper-1.5b", {**SMALL, "train_cost": 0.5})
    return cfg, {m: compare(["grpo", "cures", "dapo"], cfg, match=m) for m in ("steps", "rollouts", "compute")}


def test_each_accounting_gives_every_policy_the_baselines_share(matched):
    cfg, res = matched
    steps, rollouts, compute = (res[m][0] for m in ("steps", "rollouts", "compute"))
    assert all(r["steps"] == cfg.steps for r in steps["policies"])
    rollouts_per_step = rollouts["rollout_budget"]
    for r in rollouts["policies"][1:]:  # a run stops at the first step that reaches the budget
        assert r["rollouts_used"] >= rollouts_per_step
    assert rollouts["policies"][1]["rollouts_used"] == rollouts_per_step  # cures spends the baseline's per step
    base_compute = compute["compute_budget"]
    assert base_compute == pytest.approx(steps["policies"][0]["rollouts_used"] * 1.5)  # grpo trains all it makes
    for r in compute["policies"]:
        assert r["compute_used"] == pytest.approx(r["rollouts_used"] + 0.5 * r["trained_rollouts"])
        assert r["compute_used"] >= base_compute - 1e-9


def test_speedups_agree_when_a_policy_costs_what_the_baseline_costs(matched):
    """cures generates the baseline's rollouts per step and trains on all of them, so its speed-up is the same in
    every accounting; dapo generates more per step, so counting steps flatters it."""
    _, res = matched
    cures = res["steps"][0]["policies"][1]
    assert cures["speedup_rollouts"] == pytest.approx(cures["speedup_steps"])
    assert cures["speedup_compute"] == pytest.approx(cures["speedup_steps"])
    dapo = res["steps"][0]["policies"][2]
    assert dapo["rollouts_used"] > res["steps"][0]["policies"][0]["rollouts_used"]
    assert dapo["speedup_steps"] > (dapo["speedup_rollouts"] if math.isfinite(dapo["speedup_rollouts"]) else 0)
    for r in res["steps"][0]["policies"]:
        for a in ("rollouts", "steps", "compute"):
            lo, hi = r[f"speedup_{a}_ci"]
            if math.isfinite(r[f"speedup_{a}"]):
                assert lo <= r[f"speedup_{a}"] + 1e-9 and r[f"speedup_{a}"] <= hi + 1e-9 or math.isnan(lo)
    base = res["steps"][0]["policies"][0]
    assert all(base[f"speedup_{a}"] == 1.0 for a in ("rollouts", "steps", "compute"))


def test_tables_have_one_row_per_policy_and_per_seed(matched):
    cfg, res = matched
    result, runs = res["rollouts"]
    table = comparison_frame(result)
    assert list(table["policy"]) == ["grpo", "cures", "dapo"]
    assert {"speedup_rollouts_lo", "speedup_steps_hi", "fit_A", "fit_C_mid_lo", "trained_rollouts"} <= set(table)
    seeds = seeds_frame(runs, result["accuracy_metric"], cfg.train_cost)
    assert len(seeds) == 3 * cfg.seeds and set(seeds["seed"]) == {0, 1, 2}
    grpo = seeds[seeds["policy"] == "grpo"]
    assert (grpo["trained_rollouts"] == grpo["rollouts"]).all()
    assert np.allclose(seeds["compute"], seeds["rollouts"] + cfg.train_cost * seeds["trained_rollouts"])


def test_cost_to_reach_interpolates_between_evaluations():
    x = np.array([0.0, 100.0, 200.0, 300.0])
    y = np.array([0.2, 0.4, 0.6, 0.5])
    assert cost_to_reach(x, y, 0.5) == pytest.approx(150.0)
    assert cost_to_reach(x, y, 0.2) == 0.0
    assert math.isnan(cost_to_reach(x, y, 0.61))


def test_saturating_fit_recovers_a_known_curve():
    rng = np.random.default_rng(0)
    c = np.linspace(500, 60_000, 40)
    r = saturating(c, 0.35, 0.82, 9_000, 1.4) + rng.normal(0, 0.002, c.size)
    a, c_mid, b = fit_saturating(c, r, 0.35)
    assert a == pytest.approx(0.82, abs=0.01) and c_mid == pytest.approx(9_000, rel=0.05)
    assert b == pytest.approx(1.4, rel=0.05)
    assert np.isnan(fit_saturating(c, np.full(c.size, 0.35), 0.35)).all()  # no rise, no fit


def test_intervals_are_scipy_t_intervals_clipped_to_the_range():
    v = [0.1, 0.9]
    ci = mean_ci(v, (0.0, 1.0))
    assert ci["lo"] == 0.0 and ci["hi"] == 1.0  # the raw t-interval is [-4.6, 5.6]
    assert mean_ci([0.3, 0.3])["lo"] == 0.3 and math.isnan(mean_ci([0.3])["lo"])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6, allow_nan=False, allow_subnormal=False), min_size=2, max_size=80))
def test_intervals_are_scipy_t_intervals_to_the_bit(v):
    """mean_ci avoids importing scipy.stats (a second of start-up) and must still give its numbers exactly."""
    a = np.asarray(v)
    sem = stats.sem(a)
    lo, hi = (a.mean(), a.mean()) if sem == 0 else stats.t.interval(0.95, a.size - 1, loc=a.mean(), scale=sem)
    ci = mean_ci(v)
    assert (ci["mean"], ci["lo"], ci["hi"]) == (float(a.mean()), float(lo), float(hi))


def test_passes_sets_the_steps():
    cfg = build_config("paper-1.5b", {"passes": 2.5, "n_prompts": 1000})
    assert cfg.steps == math.ceil(2.5 * 1000 / 64)
    assert build_config("paper-1.5b", {"steps": 7}).steps == 7  # the scenario's steps, replaced
    with pytest.raises(ValueError, match="both steps and passes"):
        build_config(None, {"passes": 2, "steps": 5})
    with pytest.raises(ValueError, match="passes"):
        build_config(None, {"passes": -1})


def _sweep_args(out, *extra):
    return ("sweep", "--policies", "grpo,cures,mopps", "--scenario", "paper-1.5b", "--grid", "passes=1,3",
            "--grid", 'init_pass_rate=["beta:1.1,1.0+zero:0.24", "beta:0.3,0.3"]', "--set", "n_prompts=300",
            "--set", "n_heldout=100", "--set", "prompts_per_step=16", "--set", "eval_every=2", "--seeds", "2",
            "--out", str(out), *extra)


def test_sweep_writes_a_tidy_table_resumes_and_does_not_depend_on_the_process_count(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    res = cli(*_sweep_args(one, "--jobs", "1"))
    assert res.returncode == 0, res.stderr[-2000:]
    table = pd.read_parquet(one / "sweep.parquet")
    assert len(table) == 4 * 3 * 2  # cells x policies x seeds
    assert {"cell", "passes", "init_pass_rate", "policy", "seed", "final_heldout_accuracy", "rollouts",
            "trained_rollouts", "compute", "steps", "cost_to_baseline_peak_rollouts"} <= set(table)
    assert table.groupby("passes")["steps"].max().to_dict() == {1: math.ceil(300 / 16), 3: math.ceil(900 / 16)}
    assert pd.read_csv(one / "sweep.csv").shape == table.shape
    regime = pd.read_parquet(one / "regime_map.parquet")
    assert len(regime) == 4 * 2 and (regime.groupby("cell")["best"].sum() == 1).all()
    assert (one / "regime_map.png").stat().st_size > 0 and "| cell |" in (one / "regime_map.md").read_text()

    res = cli(*_sweep_args(two, "--jobs", "2"))
    assert res.returncode == 0, res.stderr[-2000:]
    pd.testing.assert_frame_equal(table, pd.read_parquet(two / "sweep.parquet"))

    for path in sorted((two / "cells").glob("*.policies.parquet"))[:1]:
        path.unlink()  # as if interrupted before this cell finished
    res = cli(*_sweep_args(two, "--jobs", "2"))
    assert res.returncode == 0 and json.loads((two / "sweep.json").read_text())["cells_reused"] == 3
    pd.testing.assert_frame_equal(table, pd.read_parquet(two / "sweep.parquet"))

    # damaged saved cells run again: a truncated file, an empty one, and another cell's results under this cell's name
    seeds_files, policy_files = (sorted((two / "cells").glob(f"*.{kind}.parquet")) for kind in ("seeds", "policies"))
    seeds_files[0].write_bytes(seeds_files[0].read_bytes()[:200])
    policy_files[1].write_bytes(b"")
    policy_files[2].write_bytes(policy_files[3].read_bytes())
    res = cli(*_sweep_args(two, "--jobs", "2"))
    assert res.returncode == 0, res.stderr[-2000:]
    assert "note: 3 cells ran again" in res.stderr
    assert json.loads((two / "sweep.json").read_text())["cells_reused"] == 1
    pd.testing.assert_frame_equal(table, pd.read_parquet(two / "sweep.parquet"))


@pytest.mark.parametrize(("sig", "code", "line"), [(signal.SIGINT, 130, "error: interrupted"),
                                                   (signal.SIGTERM, 143, "error: terminated (SIGTERM)")])
def test_sweep_stops_on_ctrl_c_or_sigterm_and_keeps_finished_cells(tmp_path, sig, code, line):
    out = tmp_path / "s"
    args = ("--policies", "grpo,cures", "--grid", "passes=1,400", "--set", "n_prompts=2000", "--seeds", "2",
            "--jobs", "1", "--out", str(out))
    returncode, seconds, stderr, finished = signal_sweep_after_first_cell(args, out, sig, ENV)
    assert returncode == code and seconds < 5
    assert stderr.strip().splitlines()[-1] == line
    assert finished == 1 and not (out / "sweep.parquet").exists()


@pytest.mark.parametrize(("args", "message"), [
    (("--grid", "bogus=1,2"), "grid bogus: not a setting"),
    (("--grid", "policy.nope=1,2"), "has parameter 'nope'"),
    (("--grid", "passes"), "--grid expects KEY=V1,V2"),
    (("--grid", "passes=-1,2"), "passes: input should be greater than 0"),
    (("--grid", "passes=1", "--policies", "grpo"), "at least two distinct"),
    (("--grid", "passes=1", "--match", "tokens"), "match must be one of"),
    (("--grid-file", "/no/such.toml"), "--grid-file /no/such.toml: not a file"),
    (("--grid", "passes=1", "--jobs", "0"), "--jobs must be"),
    (("--grid", "passes=1", "--set", "policy.tau=0.1", "--policies", "grpo,dapo"), "policy.tau: no policy"),
    (("--grid", "passes=1,2,1"), "grid passes: value 1 is given twice"),
    (("--grid", "passes=1", "--grid", "passes=2"), "--grid passes is given twice"),
    (("--grid", "seeds=1,2"), "grid seeds: not a setting that can vary"),
])
def test_bad_sweeps_are_one_line_errors(tmp_path, args, message):
    res = cli("sweep", *args, "--out", str(tmp_path / "o"))
    assert res.returncode == 2 and message in res.stderr, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and not (tmp_path / "o").exists()


def test_grid_file_and_bad_grid_file(tmp_path):
    good = tmp_path / "g.toml"
    good.write_text('policies = ["grpo", "cures"]\nscenario = "paper-1.5b"\n[settings]\nn_prompts = 200\n'
                    'prompts_per_step = 16\nseeds = 2\n[grid]\n"policy.tau" = [0.05, 0.5]\n')
    res = cli("sweep", "--grid-file", str(good), "--out", str(tmp_path / "o"))
    assert res.returncode == 0, res.stderr
    assert set(pd.read_parquet(tmp_path / "o" / "regime_map.parquet")["policy.tau"]) == {0.05, 0.5}
    bad = tmp_path / "b.toml"
    bad.write_text("grid = 3\n")
    res = cli("sweep", "--grid-file", str(bad), "--out", str(tmp_path / "p"))
    assert res.returncode == 2 and "grid must be a dict" in res.stderr


def test_grid_file_policy_parameters_in_any_toml_spelling(tmp_path):
    """`"policy.tau"`, a dotted `policy.tau` and a [grid.policy] table are the same axis; policy settings go apart."""
    from cures.simulator.sweep import load_grid_file

    spellings = ['[grid]\n"policy.tau" = [0.1, 0.2]\n', "[grid]\npolicy.tau = [0.1, 0.2]\n",
                 "[grid.policy]\ntau = [0.1, 0.2]\n"]
    for i, text in enumerate(spellings):
        path = tmp_path / f"g{i}.toml"
        path.write_text("[settings]\nn_prompts = 200\npolicy.n_min = 3\n" + text)
        data = load_grid_file(str(path))
        assert data["grid"] == {"policy.tau": [0.1, 0.2]}
        assert data["settings"] == {"n_prompts": 200} and data["policy_settings"] == {"n_min": 3}


def test_compare_match_option_and_its_files(tmp_path):
    res = cli("compare", "--policies", "grpo,cures-released", "--n-prompts", "300", "--steps", "10",
              "--prompts-per-step", "16", "--seeds", "2", "--match", "steps", "--out", str(tmp_path / "c"))
    assert res.returncode == 0, res.stderr
    table = pd.read_parquet(tmp_path / "c" / "comparison.parquet")
    assert (table["steps"] == 10).all() and table.loc[1, "rollouts_used"] > 2 * table.loc[0, "rollouts_used"]
    for name in ("seeds.parquet", "seeds.csv", "curves.parquet", "curves.csv", "comparison.csv", "comparison.md"):
        assert (tmp_path / "c" / name).is_file()
    res = cli("compare", "--match", "tokens", "--out", str(tmp_path / "d"))
    assert res.returncode == 2 and "--match must be one of" in res.stderr


def test_reconcile_shows_the_released_codes_extra_rollouts(tmp_path):
    res = cli("reconcile", "--policies", "grpo,cures-released,dapo", "--n-prompts", "400", "--steps", "20",
              "--seeds", "2", "--out", str(tmp_path / "r"))
    assert res.returncode == 0, res.stderr
    table = pd.read_parquet(tmp_path / "r" / "reconcile.parquet")
    released = table[table["policy"] == "cures-released"].iloc[0]
    assert released["rollouts_per_step_vs_baseline"] > 2.5  # its x4 multiplier, less the 0/N' and N'/N' prompts
    dapo = table[table["policy"] == "dapo"].iloc[0]
    assert dapo["untrained_share"] > 0.2  # dropped all-equal groups
    assert "equal steps: speed-up in steps" in (tmp_path / "r" / "reconcile.md").read_text()


@pytest.mark.parametrize(("damage", "message"), [
    (lambda d: (d / "sweep.json").unlink(), "missing sweep.json"),
    (lambda d: (d / "sweep.json").write_text("{bad"), "sweep.json is damaged"),
    (lambda d: (d / "sweep.json").write_text("[1, 2]"), "sweep.json is not what `cures sweep` writes"),
    (lambda d: (d / "sweep.json").write_text('{"cells": "8"}'), "sweep.json is not what"),
    (lambda d: (d / "regime_map.md").write_bytes(b"\xff\xfe"), "regime_map.md is damaged"),
    (lambda d: ((d / "regime_map.png").unlink(), (d / "regime_map.png").mkdir()), "missing regime_map.png"),
])
def test_report_reads_a_finished_sweep_or_names_what_is_wrong(tmp_path, damage, message):
    """`cures report --sweep DIR` checks the sweep's files before any figure is drawn."""
    from cures.simulator.sweep import read_finished_sweep

    info = {"grid": {"passes": [1]}, "policies": ["grpo", "cures"], "scenario": None, "settings": {},
            "match": "rollouts", "cells": 1, "cells_reused": 0, "runs": 4, "wall_seconds": 1.0}
    (tmp_path / "sweep.json").write_text(json.dumps(info))
    (tmp_path / "regime_map.md").write_text("| cell |\n")
    (tmp_path / "regime_map.png").write_bytes(b"png")
    assert read_finished_sweep(tmp_path) == (info, "| cell |\n")
    damage(tmp_path)
    with pytest.raises(ValueError, match=message.replace("`", ".")):
        read_finished_sweep(tmp_path)
