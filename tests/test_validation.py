"""The validation report (`python -m cures.analysis.sim_to_real report`) on a protocol directory of fake runs: it
calibrates on grpo only, predicts every policy, and writes its table, figure and JSON with consistent numbers."""

import json

from test_calibrate import N_PROMPTS, fake_profile, fake_run

from cures.analysis.validation import run_dir, write_validation


def test_report_calibrates_on_grpo_and_predicts_every_policy(tmp_path):
    fake_profile(tmp_path / "profile")
    for policy in ("grpo", "cures"):
        for seed in (0, 1):
            run = fake_run(run_dir(tmp_path, policy, seed), policy, seed)
            summary = json.loads((run / "summary.json").read_text())
            summary["evaluations"] = [{"step": 12, "eval_accuracy": 0.3 + 0.1 * seed + (policy == "cures") * 0.05}]
            (run / "summary.json").write_text(json.dumps(summary))
    result = write_validation(tmp_path, ["grpo", "cures", "mopps"], [0, 1], sim_seeds=4, max_iter=4)
    where = tmp_path / "validation"
    for name in ("validation.json", "validation.md", "validation.png", "calibration.json", "calibrated.toml",
                 "calibrated_pass_rates.csv"):
        assert (where / name).stat().st_size > 0, name
    assert set(result["policies"]) == {"grpo", "cures"}  # mopps has no runs: left out, not invented
    assert result["calibration"]["policy"] == "grpo" and len(result["calibration"]["runs"]) == 2
    s = result["summary"]
    assert s["observed_ranking"] == ["cures", "grpo"] and 0 <= s["observed_ranking_bootstrap_support"] <= 1
    assert sorted(s["predicted_ranking"]) == ["cures", "grpo"] and s["runs"] == {"grpo": 2, "cures": 2, "mopps": 0}
    for row in result["policies"].values():
        obs = row["train_reward"]["observed"]
        assert obs[1] <= obs[0] <= obs[2] and row["seeds"] == 2
        assert abs(row["train_reward"]["error"] - (row["train_reward"]["predicted"][0] - obs[0])) < 1e-9
    md = (where / "validation.md").read_text()
    assert "| grpo | 2 |" in md and "| cures | 2 |" in md and "Kendall tau" in md
    assert N_PROMPTS == len((where / "calibrated_pass_rates.csv").read_text().splitlines()) - 1
