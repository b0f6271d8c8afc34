"""The generic policy core: a policy written outside the package, declaring its own parameters, arrays and scalars,
runs through both callers; declarations that do not fit the kernels are refused at registration."""

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cures.policies import available, get_spec
from cures.policies.kernels import stable_argsort
from cures.policies.spec import Param, integer, register

ROOT = Path(__file__).resolve().parent.parent


STREAK_MODULE = """
from typing import NamedTuple

import numpy as np
from numba import njit

from cures.policies.kernels import add_slot, begin_training_round, end_plan, finish_step, round_slots, uniform_batch
from cures.policies.spec import Param, PolicySpec, batch_capacity, integer, register


class StreakParams(NamedTuple):
    prompts_per_step: int
    n: int
    bonus: int = 2


@njit(cache=True)
def streak_plan(P, S, B, rng):
    '''Uniform prompts; a prompt whose last group was all wrong gets `bonus` more rollouts.'''
    batch = uniform_batch(S, P.prompts_per_step, rng)
    begin_training_round(B)
    for x in batch:
        add_slot(B, x, P.n + (P.bonus if S.last[x, 1] > 0 and S.last[x, 0] == 0 else 0))
    B.vars.planned_prompts = batch.shape[0]
    end_plan(S, B)


@njit(cache=True)
def streak_observe(P, S, B, rng):
    lo, hi = round_slots(B)
    for j in range(lo, hi):
        S.last[B.prompt[j], 0] = B.succ[j]
        S.last[B.prompt[j], 1] = B.n[j]
        S.vars.all_wrong_seen += B.succ[j] == 0
        B.group[j] = B.vars.n_groups
        B.vars.n_groups += 1
    finish_step(S, B)
    return True



register(PolicySpec(
    name="test-streak", summary="test", doc="test",
    params=(Param("prompts_per_step", 4, "prompts", integer(1)), Param("n", 2, "rollouts", integer(1))),
    kernel_params=StreakParams, plan=streak_plan, observe=streak_observe, capacity=batch_capacity,
    arrays=("last",), state_vars=(("all_wrong_seen", np.int64),), step_vars=(("planned_prompts", np.int64),),
    init_vars=lambda P: {"all_wrong_seen": 100},
))
"""

STREAK_RUN = """
import numpy as np
import streak_policy  # registers test-streak
from cures.policies import make_policy
from cures.simulator.config import build_config
from cures.simulator.run import run_seed

policy = make_policy("test-streak", prompts_per_step=5, n=3)
state = policy.init(40, seed=0)
assert state.arrays.last.shape == (40, 2) and state.arrays.tree.size == 0  # declared, and not declared
assert state.arrays.vars.all_wrong_seen == 100 and state.step.vars.planned_prompts == 0
first = policy.plan(state)
policy.observe(state, np.zeros(5))
assert state.arrays.vars.all_wrong_seen == 105 and state.step.vars.planned_prompts == 5
again = policy.plan(state)
wrong_before = np.isin(again.prompt_ids, first.prompt_ids)
np.testing.assert_array_equal(again.n_rollouts, np.where(wrong_before, 5, 3))  # the bonus, from S.last
cfg = build_config(None, {"n_prompts": 200, "n_heldout": 10, "steps": 6, "prompts_per_step": 5, "eval_every": 3,
                          "seeds": 1})
run = run_seed("test-streak", cfg, 0)
assert run.steps == 6 and run.rollouts_total >= 6 * 5 * 2
print("ok")
"""


def test_a_policy_declared_outside_the_package_runs_through_both_callers(tmp_path):
    """A contributor's own module. It runs with its own Numba cache directory: the shared dispatchers' cache
    records the parameter class of every policy compiled through them, so a policy must be importable wherever
    that cache is loaded (see the README's "Writing a policy")."""
    (tmp_path / "streak_policy.py").write_text(STREAK_MODULE)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]),
           "NUMBA_CACHE_DIR": str(tmp_path / "numba")}
    res = subprocess.run([sys.executable, "-c", STREAK_RUN], env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr[-3000:]


def test_registration_refuses_declarations_that_do_not_fit_the_kernels():
    grpo = get_spec("grpo")
    with pytest.raises(ValueError, match="nope not fields of Params"):
        register(dataclasses.replace(grpo, name="test-bad-fixed", fixed={"nope": 1}))
    with pytest.raises(ValueError, match="share parameters but not kernels"):
        register(dataclasses.replace(grpo, name="test-bad-kernels", observe=get_spec("mopps").observe))
    with pytest.raises(ValueError, match="already registered"):
        register(grpo)
    assert "test-bad-fixed" not in available() and "test-bad-kernels" not in available()


def test_a_public_parameter_that_reaches_no_kernel_field_is_an_error():
    grpo = get_spec("grpo")
    stray = dataclasses.replace(grpo, name="test-stray", params=(*grpo.params, Param("extra", 1, "x", integer())))
    from cures.policies.core import Policy

    with pytest.raises(AssertionError, match="extra"):
        Policy(stray, {**grpo.defaults(), "extra": 1}).kernel_params(100)


def test_every_policy_file_in_the_package_is_found_and_registers_its_policies():
    """dispatch imports every module of cures/policies but its machinery: each found module registers at least one
    policy, and every registered policy's kernels live in a found module (adding a policy is adding its file)."""
    import sys

    from cures.policies.dispatch import MACHINERY, POLICY_MODULES

    files = {p.stem for p in (ROOT / "cures" / "policies").glob("*.py") if not p.stem.startswith("_")}
    assert set(POLICY_MODULES) == files - MACHINERY and MACHINERY <= files
    homes = {get_spec(n).plan.py_func.__module__ for n in available()}
    assert homes == {f"cures.policies.{m}" for m in POLICY_MODULES}
    assert all(f"cures.policies.{m}" in sys.modules for m in POLICY_MODULES)


def test_kernel_records_are_derived_from_the_declared_parameters_and_importable():
    import pickle

    from cures.policies import available, get_spec
    from cures.policies.spec import INIT_ONLY, Param, integer, kernel_record

    for name in available():
        spec = get_spec(name)
        cls = spec.kernel_params
        assert pickle.loads(pickle.dumps(cls)) is cls  # Numba's on-disk cache pickles the record class by reference
        declared = {p.name for p in spec.params} - set(INIT_ONLY) - set(spec.load_params)
        family = [n for n in available() if get_spec(n).kernel_params is cls]
        if len(family) == 1:  # a policy alone on its kernels: the record's defaults are its declared ones
            for p in spec.params:
                if p.name in cls._fields:
                    assert cls._field_defaults[p.name] == p.default, (name, p.name)
        assert declared - set(cls._fields) <= {"sigma", "buffer_sampling", "choice", "objective"}, name
    with pytest.raises(ValueError, match="declared twice: n"):
        kernel_record(__name__, (Param("n", 2, "", integer(1)),), n=3)


@given(st.lists(st.sampled_from([-1.0, -0.0, 0.0, 0.5, 2.0, 1e300]) | st.floats(-1e6, 1e6), max_size=60))
def test_the_shared_stable_sort_is_numpys_stable_argsort(values):
    """`stable_argsort`, the one sort every policy calls, orders like NumPy's stable sort: ties (0.0 and -0.0
    included) keep their positions' order."""
    x = np.array(values, dtype=np.float64)
    np.testing.assert_array_equal(stable_argsort(x), np.argsort(x, kind="stable"))
