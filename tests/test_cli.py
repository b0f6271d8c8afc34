"""The `cures` command line, run as a user would (a subprocess): help, version, policies, one-line errors."""

import subprocess
import sys

import pytest

import cures
from cures.policies import available, get_spec


def cures_cli(*args):
    return subprocess.run([sys.executable, "-m", "cures", *args], capture_output=True, text=True,
                          env={"COLUMNS": "200", "PATH": "/usr/bin:/bin", "NO_COLOR": "1"}, timeout=300)


def test_help_and_version():
    out = cures_cli("--help")
    assert out.returncode == 0 and "policies" in out.stdout
    out = cures_cli("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"cures {cures.__version__}"


def test_policies_lists_every_policy_with_its_parameters():
    out = cures_cli("policies")
    assert out.returncode == 0, out.stderr
    for name in available():
        assert name in out.stdout
        assert get_spec(name).summary[:40] in out.stdout
    assert "tau=0.1" in out.stdout and "budget=8*batch_size" in out.stdout


def test_policy_details():
    out = cures_cli("policies", "cures-released")
    assert out.returncode == 0
    assert "temperature_scale" in out.stdout and "per-rollout" in out.stdout


@pytest.mark.parametrize("args", [("policies", "nope"), ("policies", "--bogus")])
def test_bad_input_is_one_line_and_exit_2(args):
    out = cures_cli(*args)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    if args[1] == "nope":
        assert out.stderr.strip().count("\n") == 0 and "unknown policy 'nope'" in out.stderr
