"""`cures profile` on the tiny random model: the files it promises, a resumed profile equal to an uninterrupted one,
one-line errors for bad options and for a directory holding another profile; the Beta-binomial fit recovers the
Beta it was drawn from."""

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cures.backends.trl.profile import CHUNKS
from cures.posterior import beta_binomial_fit

ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "NO_COLOR": "1", "COLUMNS": "300"}
BASE = ["--model_name_or_path", "tiny", "--dataset_name", "arith", "--reward_funcs", "parity",
        "--max_completion_length", "6", "--n_problems", "20", "--prompts_per_chunk", "8"]


def cures_profile(*args):
    from cures.cli import app

    return CliRunner().invoke(app, ["profile", *args], env=ENV)


def test_profile_writes_pass_rates_resumes_and_refuses_other_settings(tmp_path):
    out = tmp_path / "profile"
    res = cures_profile(*BASE, "--rollouts_per_prompt", "4", "--output_dir", str(out))
    assert res.exit_code == 0, res.output + res.stderr
    rates = pd.read_csv(out / "pass_rates.csv")
    assert list(rates.columns) == ["prompt_id", "successes", "attempts"] and len(rates) == 20
    assert (rates["attempts"] == 4).all() and rates["successes"].between(0, 4).all()
    summary = json.loads((out / "profile.json").read_text())
    assert sum(summary["histogram"]) == 20 and len(summary["histogram"]) == 5
    assert summary["histogram"] == np.bincount(rates["successes"], minlength=5).tolist()
    assert summary["mean_pass_rate"] == pytest.approx(rates["successes"].sum() / 80)
    assert 0 <= summary["clipped_share"] <= 1 and 0 < summary["mean_completion_tokens"] <= 6
    assert summary["model"] == "tiny" and summary["rollouts_per_prompt"] == 4
    # interrupted after the first chunk: the rerun generates the rest and gives the same counts
    full = (out / "pass_rates.csv").read_text()
    for chunk in sorted((out / CHUNKS).iterdir())[1:]:
        chunk.unlink()
    (out / "pass_rates.csv").unlink()
    again = cures_profile(*BASE, "--rollouts_per_prompt", "4", "--output_dir", str(out))
    assert again.exit_code == 0, again.stderr
    assert (out / "pass_rates.csv").read_text() == full
    assert json.loads((out / "profile.json").read_text())["prompts_profiled_now"] == 12
    # the simulator reads the profile as a population
    from cures.simulator.config import build_config
    from cures.simulator.population import parse_pass_rate_spec

    _, pool = parse_pass_rate_spec(str(out / "pass_rates.csv"))
    assert pool == 20 and build_config(overrides={"init_pass_rate": str(out / "pass_rates.csv")})
    for args, message in ((["--rollouts_per_prompt", "5"], "holds a profile made with other settings "
                                                           "(rollouts_per_prompt: 4 there, 5 now)"),
                          (["--rollouts_per_prompt", "0"], "rollouts_per_prompt must be at least 1"),
                          (["--max_prompts", "-1"], "max_prompts must be at least 1"),
                          (["--rollouts_per_prompt", "x"], "invalid int value: 'x'"),
                          (["--backend", "nope"], "unknown backend 'nope'")):
        bad = cures_profile(*BASE, "--output_dir", str(out), *args)
        assert bad.exit_code == 2 and message in bad.stderr, (args, bad.stderr)
        assert len(bad.stderr.strip().splitlines()) == 1, bad.stderr


@pytest.mark.parametrize(("a", "b"), [(0.4, 0.6), (2.0, 5.0)])
def test_beta_binomial_fit_recovers_the_beta(a, b):
    rng = np.random.default_rng(3)
    n = np.full(4000, 8)
    s = rng.binomial(n, rng.beta(a, b, n.size))
    fit = beta_binomial_fit(s, n)
    assert fit["a"] == pytest.approx(a, rel=0.15) and fit["b"] == pytest.approx(b, rel=0.15)
