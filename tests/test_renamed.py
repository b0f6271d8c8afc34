"""The one vocabulary of cures 0.3: every surface that took an old name (`batch_size`, `budget`, estimator
`drgrpo`) refuses it with a message that gives the new one, and the new names reach the same settings."""

import subprocess
import sys

import pytest

from cures.policies import available, get_spec, make_policy, make_policy_for_budget
from cures.renamed import RENAMED, RENAMED_OPTIONS
from cures.simulator.config import build_config, parse_overrides
from cures.simulator.sweep import Sweep


@pytest.mark.parametrize("name", available())
@pytest.mark.parametrize("old", sorted(RENAMED))
def test_every_policy_refuses_old_parameter_names(name, old):
    with pytest.raises(ValueError, match=rf"policy '{name}': '{old}' was renamed '{RENAMED[old]}' in cures 0.3"):
        make_policy(name, **{old: 8})
    with pytest.raises(ValueError, match=f"'{old}' was renamed"):
        make_policy_for_budget(name, 4, 16, **{old: 8})


@pytest.mark.parametrize("name", available())
def test_new_names_are_the_parameters(name):
    """No policy declares an old name; each one's step size is `prompts_per_step`, and where it spends a rollout
    total, `rollouts_per_step` (make_policy_for_budget applies both)."""
    names = {p.name for p in get_spec(name).params}
    assert not names & set(RENAMED)
    assert "prompts_per_step" in names
    policy = make_policy_for_budget(name, 4, 32)
    assert policy.params["prompts_per_step"] == 4
    if "rollouts_per_step" in names:
        assert policy.params["rollouts_per_step"] == 32


@pytest.mark.parametrize("old", sorted(RENAMED))
def test_simulator_settings_refuse_old_names(tmp_path, old):
    new = RENAMED[old]
    with pytest.raises(ValueError, match=f"'{old}' was renamed '{new}'"):
        build_config(None, {old: 16})
    with pytest.raises(ValueError, match=f"--set: '{old}' was renamed '{new}'"):
        parse_overrides([f"{old}=16"])
    path = tmp_path / "old.toml"
    path.write_text(f"{old} = 16\n")
    with pytest.raises(ValueError, match=rf"scenario {path}: '{old}' was renamed '{new}'"):
        build_config(str(path))
    with pytest.raises(ValueError, match=rf"'policy.{old}' was renamed '{new}' in cures 0.3 \(a setting of its own"):
        build_config(None, policy_overrides={old: 16})
    with pytest.raises(ValueError, match=f"grid: '{old}' was renamed '{new}'"):
        Sweep(grid={old: [8, 16]}).validate()
    with pytest.raises(ValueError, match=rf"grid: 'policy.{old}' was renamed '{new}'"):
        Sweep(grid={f"policy.{old}": [8, 16]}).validate()
    cfg = build_config(None, {new: 16})
    assert getattr(cfg, new) == 16


def test_estimator_dr_grpo():
    assert build_config(None, {"estimator": "dr_grpo"}).estimator == "dr_grpo"
    with pytest.raises(ValueError, match="estimator 'drgrpo' was renamed 'dr_grpo'"):
        build_config(None, {"estimator": "drgrpo"})


@pytest.mark.parametrize("command", ["simulate", "compare", "bench"])
@pytest.mark.parametrize("old", sorted(RENAMED_OPTIONS))
def test_cli_refuses_old_options_in_one_line(command, old):
    for args in ([old, "16"], [f"{old}=16"]):
        res = subprocess.run([sys.executable, "-m", "cures", command, *args], capture_output=True, text=True,
                             timeout=120)
        assert res.returncode == 2, res.stderr
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and f"{old} was renamed {RENAMED_OPTIONS[old]} in cures 0.3" in lines[0], res.stderr
        assert "Traceback" not in res.stderr
