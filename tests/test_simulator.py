"""The simulator: the compiled engine against the per-rollout reference, the theory it must reproduce, its
bookkeeping, determinism and the calibrated scenario."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from cures.policies import available
from cures.simulator.bench import CHUNKS, _timed_steps
from cures.simulator.config import build_config, load_scenario, parse_overrides
from cures.simulator.engine import COLUMNS, EngineConfig, score_statistics
from cures.simulator.population import build_population, parse_pass_rate_spec
from cures.simulator.reference import reference_seed, rollout_scores, vectorised_seed
from cures.simulator.run import run_seed, run_seeds
from cures.simulator.world import seed_streams
from cures.theory import rollout_sigma, zero_variance_prob

SMALL = {"n_prompts": 300, "n_heldout": 200, "steps": 30, "prompts_per_step": 16, "eval_every": 10, "seeds": 24}


def finals(runs, column):
    return np.array([r.curves[-1, COLUMNS.index(column)] for r in runs])


def assert_same_distribution(a, b, what):
    """Two samples over seeds agree: KS test and the difference of means within 4 standard errors."""
    assert stats.ks_2samp(a, b).pvalue > 0.01, what
    se = math.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size)
    assert abs(a.mean() - b.mean()) <= 4 * se + 1e-12, (what, a.mean(), b.mean(), se)


@pytest.mark.parametrize(
    ("policy", "settings"),
    [
        ("grpo", {}),
        ("cures", {}),
        ("cures", {"estimator": "rloo", "weighting": "rollout"}),
        ("grpo", {"estimator": "reinforce++", "clip": 0.05}),
        ("cures", {"estimator": "dr_grpo", "mode": "tabular", "lr": 40.0}),
        ("speed", {}),
    ],
)
def test_engine_matches_the_per_rollout_reference(policy, settings):
    cfg = build_config(None, {**SMALL, **settings})
    engine = run_seeds(policy, cfg)
    reference = run_seeds(policy, cfg, runner=reference_seed)
    for column in ("train_accuracy", "posterior_error", "grad_norm"):
        assert_same_distribution(finals(engine, column), finals(reference, column), (policy, column))
    assert_same_distribution(np.array([r.zero_variance_fraction for r in engine]),
                             np.array([r.zero_variance_fraction for r in reference]), (policy, "zero variance"))
    assert [r.rollouts_total for r in engine][:1] == [r.rollouts_total for r in reference][:1] or policy == "speed"
    # the runs really learned something, so the comparison is not between two flat lines
    assert finals(engine, "train_accuracy").mean() > engine[0].curves[0, COLUMNS.index("train_accuracy")] + 0.02


@pytest.mark.parametrize(("policy", "settings"), [("cures", {}), ("speed", {"estimator": "rloo"}),
                                                  ("grpo", {"mode": "tabular", "lr": 40.0})])
def test_vectorised_reference_matches_the_engine(policy, settings):
    """The vectorised NumPy reference (`cures bench`'s fair baseline) simulates the same model as the engine."""
    cfg = build_config(None, {**SMALL, **settings})
    engine = run_seeds(policy, cfg)
    vectorised = run_seeds(policy, cfg, runner=vectorised_seed)
    for column in ("train_accuracy", "posterior_error", "grad_norm", "trained_rollouts"):
        assert_same_distribution(finals(engine, column), finals(vectorised, column), (policy, column))
    assert_same_distribution(np.array([r.zero_variance_fraction for r in engine]),
                             np.array([r.zero_variance_fraction for r in vectorised]), (policy, "zero variance"))
    assert finals(vectorised, "train_accuracy").mean() > vectorised[0].curves[0, COLUMNS.index("train_accuracy")] + 0.02


def test_first_step_zero_variance_fraction_is_the_expected_p_n_law():
    cfg = build_config(None, {"n_prompts": 4000, "prompts_per_step": 256, "rollouts_per_step": 256 * 4, "steps": 1,
                              "eval_every": 1,
                              "seeds": 16, "init_pass_rate": "beta:0.5,0.5+one:0.1"})
    runs = run_seeds("grpo", cfg)
    expected = np.mean([
        zero_variance_prob(build_population(cfg, np.random.default_rng(seed_streams(r.seed)[0]))[1], 4).mean()
        for r in runs])
    observed = np.array([r.first_step_zero_variance_fraction for r in runs])
    se = math.sqrt(expected * (1 - expected) / (256 * len(runs)))
    assert abs(observed.mean() - expected) < 4 * se, (observed.mean(), expected)


@pytest.mark.parametrize(("p", "mode"), [(0.2, "irt"), (0.55, "irt"), (0.8, "tabular")])
def test_monte_carlo_gradient_variance_of_one_prompt_is_eq21(p, mode):
    """Tr Var((r - p) s) over the simulator's rollout scores equals Eq. 21 with the statistics the engine reports."""
    cfg = build_config(None, {"n_prompts": 50, "mode": mode, "sigma_correct": 0.7, "sigma_wrong": 1.6})
    model, _ = build_population(cfg, np.random.default_rng(0))
    x = int(np.argmax(np.linalg.norm(model.a, axis=1)))
    rng = np.random.default_rng(1)
    n = 200_000
    r = (rng.random(n) < p).astype(float)
    h = (r - p)[:, None] * rollout_scores(model, mode == "tabular", x, p, r, 0.7, 1.6, rng)
    sq = ((h - h.mean(axis=0)) ** 2).sum(axis=1)
    C = EngineConfig(mode == "tabular", 0, True, 0.1, 0.0, 0.7, 1.6, 1e-4, True, 0)
    g2c, g2w, gap2 = score_statistics(model, C, x, p)
    sigma = rollout_sigma(p, g2c, g2w, gap2)
    assert abs(sigma**2 - sq.mean()) < 5 * sq.std() / math.sqrt(n), (sigma**2, sq.mean())


@pytest.mark.parametrize("policy", available())
def test_every_policy_runs_in_the_engine_and_counts_every_rollout(policy, monkeypatch):
    cfg = build_config(None, {"n_prompts": 400, "n_heldout": 50, "steps": 12, "prompts_per_step": 8, "eval_every": 4,
                              "seeds": 1, "policy_params": {"subsets": 2} if policy == "cures-paper" else {}})
    timer = []
    from cures.simulator import world

    captured = {}
    original = world.new_tally

    def spy(dim, capacity):
        captured["tally"] = original(dim, capacity)
        return captured["tally"]

    monkeypatch.setattr(world, "new_tally", spy)  # where seed_world builds the tally
    result = run_seed(policy, cfg, 0, timer=timer)
    assert result.steps == 12 and result.curves.shape == (4, len(COLUMNS))
    # what the simulator generated equals what the policy asked for (screening and refills included)
    assert captured["tally"].vars.simulated == result.rollouts_total > 0
    np.testing.assert_array_equal(result.hist.sum(axis=1), np.full(4, 400))


def test_rollout_cap_stops_every_seed_at_equal_rollouts():
    cfg = build_config(None, {**SMALL, "seeds": 3, "steps": 1000, "max_rollouts": 2000})
    for r in run_seeds("dapo", cfg):
        assert 2000 <= r.rollouts_total < 2000 + 10 * 48 * 8  # stops at the first step boundary past the cap


def test_same_seed_bit_identical_whatever_the_thread_count(outputs_by_thread_count):
    script = (
        "from cures.simulator.config import build_config; from cures.simulator.run import run_seeds\n"
        "import sys, numpy as np\n"
        "cfg = build_config(None, {'n_prompts': 500, 'steps': 20, 'prompts_per_step': 16, 'seeds': 4, "
        "'threads': int(sys.argv[1])})\n"
        "runs = run_seeds('cures', cfg)\n"
        "print(np.concatenate([r.curves.ravel() for r in runs]).tobytes().hex())\n"
    )
    assert len(set(outputs_by_thread_count(script, timeout=600))) == 1


# ------------------------------------------------------------------------------------------------ population
def test_initial_pass_rates_follow_the_configured_beta_exactly():
    cfg = build_config(None, {"n_prompts": 5000, "init_pass_rate": "beta:0.7,1.3"})
    model, p0 = build_population(cfg, np.random.default_rng(3))
    p_theta0 = 1 / (1 + np.exp(model.b))  # theta0 = 0
    np.testing.assert_allclose(p_theta0, p0, rtol=1e-9, atol=1e-12)
    assert stats.kstest(p0, stats.beta(0.7, 1.3).cdf).pvalue > 0.01


def test_mixture_and_file_specs(tmp_path):
    sample, fixed = parse_pass_rate_spec("beta:2,2+zero:0.3+one:0.1")
    p = sample(np.random.default_rng(0), 20_000)
    assert fixed is None
    assert np.mean(p == 0) == pytest.approx(0.3, abs=0.015) and np.mean(p == 1) == pytest.approx(0.1, abs=0.01)
    counts = tmp_path / "counts.csv"
    counts.write_text("prompt_id,successes,attempts\n0,0,50\n1,50,50\n2,25,50\n")
    sample, fixed = parse_pass_rate_spec(str(counts))
    assert fixed == 3
    p = sample(np.random.default_rng(0), 3)
    assert p[0] < 0.1 and p[1] > 0.9 and 0.3 < p[2] < 0.7


@pytest.mark.parametrize(
    ("spec", "match"),
    [("beta:1", "malformed"), ("gamma:1,2", "unknown part"), ("beta:1,2+zero:0.8+one:0.5", "sum to <= 1"),
     ("zero:0.5", "no Beta part"), ("missing.csv", "not found"), ("", "empty")],
)
def test_bad_pass_rate_specs(spec, match):
    with pytest.raises(ValueError, match=match):
        parse_pass_rate_spec(spec)


def test_config_errors():
    with pytest.raises(ValueError, match="estimator: input should be 'grpo', 'dr_grpo', 'rloo' or 'reinforce"):
        build_config(None, {"estimator": "ppo"})
    with pytest.raises(ValueError, match="unknown scenario 'nope'"):
        load_scenario("nope")
    with pytest.raises(ValueError, match="unknown setting 'bogus'"):
        parse_overrides(["bogus=1"])
    with pytest.raises(ValueError, match="key=value"):
        parse_overrides(["steps"])
    with pytest.raises(ValueError, match="steps: input should be a valid integer; got 'many'"):
        build_config(None, parse_overrides(["steps=many"])[0])
    assert parse_overrides(["lr=0.2", "policy.tau=0.05"]) == ({"lr": 0.2}, {"tau": 0.05})


# ------------------------------------------------------------------------------------------------ calibration
def test_paper_scenario_reproduces_the_grpo_run_it_is_calibrated_to():
    """paper-1.5b: GRPO's held-out accuracy from about 0.40 to about 0.74, the training pool turning bimodal."""
    cfg = build_config("paper-1.5b")
    runs = run_seeds("grpo", cfg)
    held = np.array([r.curves[:, COLUMNS.index("heldout_accuracy")] for r in runs]).mean(axis=0)
    assert held[0] == pytest.approx(0.40, abs=0.03)
    assert held[-1] == pytest.approx(0.74, abs=0.03)
    hist = np.mean([r.hist[-1] for r in runs], axis=0)
    assert hist[0] > 3 * hist[len(hist) // 2] and hist[-1] > 3 * hist[len(hist) // 2]  # bimodal


def test_users_can_write_their_own_scenario(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('description = "mine"\nn_prompts = 123\nestimator = "rloo"\n[policy]\ntau = 0.3\n')
    cfg = build_config(str(path), {"steps": 5})
    assert (cfg.n_prompts, cfg.estimator, cfg.steps, cfg.policy_params) == (123, "rloo", 5, {"tau": 0.3})
    path.write_text("n_prompts = 10\nwarp = 9\n")
    with pytest.raises(ValueError, match="unknown settings warp"):
        build_config(str(path))
    path.write_text("n_prompts = [\n")
    with pytest.raises(ValueError, match="not valid TOML"):
        build_config(str(path))


@pytest.mark.parametrize("runner", [run_seed, vectorised_seed, reference_seed])
def test_every_runner_times_each_chunk_of_eval_every_steps(runner):
    """`cures bench` reads one timing per chunk of eval_every steps (a last short chunk included), from any runner."""
    cfg = build_config(None, {**SMALL, "steps": 7, "eval_every": 3, "seeds": 1})
    timer = []
    base = runner("grpo", cfg, 0, timer=timer)
    assert len(timer) == 3 and all(t > 0 for t in timer)
    cfg = build_config(None, {**SMALL, "steps": 12, "eval_every": 6, "seeds": 1})
    timer = []
    run = runner("grpo", cfg, 0, timer=timer, chunk=3)  # timed in chunks of 3, evaluated every 6 steps
    assert len(timer) == 4 and run.curves.shape[0] == 3
    np.testing.assert_array_equal(run.curves[1], runner("grpo", cfg, 0).curves[1])  # chunking changes no number
    assert base.curves.shape[0] == 4


@settings(max_examples=200, deadline=None)
@given(chunks=st.lists(st.floats(1e-7, 10.0), min_size=1 + CHUNKS, max_size=1 + CHUNKS),
       steps=st.integers(1, 1000))
def test_bench_step_cost_is_positive_and_robust_to_one_slow_chunk(chunks, steps):
    """The marginal cost of a step is the median later chunk over its steps: positive for any positive timings (a
    difference of two noisy runs could be negative), unmoved by one chunk slowed 1000x, and setup is never negative."""
    def runner(policy, cfg, seed, timer, chunk):
        assert cfg.steps == cfg.eval_every == (1 + CHUNKS) * steps and chunk == steps  # evaluated once, at the end
        timer.extend(chunks)

    per_step, setup = _timed_steps(runner, "grpo", None, 1000, steps, 0, {})
    assert per_step > 0 and setup >= 0
    assert per_step * steps == pytest.approx(float(np.median(chunks[1:])))
    slowed = chunks[:1] + [chunks[1] * 1000] + chunks[2:]
    chunks[:] = slowed
    assert min(chunks[1:]) / steps <= _timed_steps(runner, "grpo", None, 1000, steps, 0, {})[0] <= max(
        slowed[2:]) / steps


def test_tabular_summaries_say_which_accuracy_peaked():
    """Tabular mode has no held-out set: its peak is the training pool's, under peak_accuracy, and
    peak_heldout_accuracy is n/a rather than holding training accuracy."""
    import math

    from cures.simulator.config import build_config
    from cures.simulator.run import simulate

    summary, runs = simulate("grpo", build_config(overrides={"mode": "tabular", "n_prompts": 64, "prompts_per_step": 8,
                                                             "steps": 6, "seeds": 2, "eval_every": 2}))
    assert summary["accuracy_metric"] == "train_accuracy" and math.isnan(summary["peak_heldout_accuracy"]["mean"])
    assert summary["peak_accuracy"]["mean"] == pytest.approx(np.mean([np.nanmax(r.curves[:, 2]) for r in runs]))
