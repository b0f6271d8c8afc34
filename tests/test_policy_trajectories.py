"""Every policy's fixed-seed trajectory equals the recorded one, bit for bit (`policy_trajectories.py` records them;
regenerate only for an intended change of behaviour, and say so in the commit)."""

import json

import pytest
from policy_trajectories import ENGINE_FIXTURE, ENGINE_SETTINGS, FIXTURE, engine_trajectory, trajectory

RECORDED = json.loads(FIXTURE.read_text())
ENGINE_RECORDED = json.loads(ENGINE_FIXTURE.read_text())


@pytest.mark.parametrize("name", sorted(RECORDED))
def test_trajectory_is_unchanged(name):
    now = trajectory(name)
    for step, (got, want) in enumerate(zip(now, RECORDED[name], strict=True)):
        assert got == want, f"{name}: step {step} differs from the recorded trajectory"


@pytest.mark.parametrize("name", sorted(ENGINE_RECORDED))
def test_engine_trajectory_is_unchanged(name):
    for setting in ENGINE_SETTINGS:
        assert engine_trajectory(name, setting) == ENGINE_RECORDED[name][setting], f"{name}, {setting} world"


def test_every_recorded_policy_still_exists():
    """A policy may be recorded after it is added (`python tests/policy_trajectories.py`), never dropped silently."""
    from cures.policies import available

    assert sorted(RECORDED) == sorted(ENGINE_RECORDED)
    assert set(RECORDED) <= set(available())
