"""Every policy's fixed-seed trajectory equals the recorded one, bit for bit (`policy_trajectories.py` records them;
regenerate only for an intended change of behaviour, and say so in the commit)."""

import json

import pytest
from policy_trajectories import FIXTURE, trajectory

RECORDED = json.loads(FIXTURE.read_text())


@pytest.mark.parametrize("name", sorted(RECORDED))
def test_trajectory_is_unchanged(name):
    now = trajectory(name)
    for step, (got, want) in enumerate(zip(now, RECORDED[name], strict=True)):
        assert got == want, f"{name}: step {step} differs from the recorded trajectory"


def test_every_policy_is_recorded():
    from cures.policies import available

    assert sorted(RECORDED) == sorted(available())
