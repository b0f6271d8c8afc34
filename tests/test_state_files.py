"""Saved policy states: every state a real run writes loads back; a damaged file is a ValueError, never a crash."""

import json
import subprocess
import sys

import numpy as np
import pytest

from cures.policies import PolicyState, available, make_policy_for_budget


def _run_and_save_everywhere(name, tmp_path, steps=8):
    """Run `steps` steps with random outcomes, saving and loading the state at every plan and every observation."""
    policy = make_policy_for_budget(name, 4, 16)
    state = policy.init(24, seed=1)
    rng = np.random.default_rng(0)
    path = tmp_path / f"{name}.npz"
    while state.steps_done < steps:
        plan = policy.plan(state)
        state.save(path)
        state = PolicyState.load(path)  # mid-step, awaiting an observation
        policy.observe(state, rng.binomial(plan.n_rollouts, 0.4))
        state.save(path)
        state = PolicyState.load(path)
    return policy, state, path


@pytest.mark.parametrize("name", available())
def test_every_state_a_run_writes_loads_back(name, tmp_path):
    _run_and_save_everywhere(name, tmp_path)


DAMAGE = r'''
import json, sys, numpy as np
from cures.policies import PolicyState, make_policy_for_budget
src, out, name = sys.argv[1], sys.argv[2], sys.argv[3]
with np.load(src, allow_pickle=False) as z:
    arrays = {k: z[k] for k in z.files}
meta = json.loads(str(arrays.pop("__meta__")))
cases = []
def with_field(a, field, value):
    b = a.copy()
    b[field] = value
    return b


for key, a in arrays.items():
    cases += [(key, "truncated", a.reshape(-1)[:-1] if a.size else np.zeros(1, a.dtype)),
              (key, "reshaped", a.reshape(1, *a.shape)), (key, "dropped", None)]
    if a.dtype.names:  # a record of named scalars: each field damaged in turn, and the layout changed
        for f in a.dtype.names:
            cases += [(f"{key}.{f}", "negative", with_field(a, f, -7)), (f"{key}.{f}", "huge", with_field(a, f, 10**9))]
            if a.dtype[f].kind == "f":
                cases.append((f"{key}.{f}", "nan", with_field(a, f, np.nan)))
        names = list(a.dtype.names)
        cases += [(key, "renamed", a.astype(np.dtype([(n + "_", a.dtype[n]) for n in names]))),
                  (key, "retyped", a.astype(np.dtype([(n, np.float32) for n in names]))),
                  (key, "field dropped", a[names[:-1]].copy())]
        continue
    cases += [(key, "retyped", a.astype(np.float32)), (key, "int32", a.astype(np.int32)),
              (key, "negative", np.full(a.shape, -7).astype(a.dtype)),
              (key, "huge", np.full(a.shape, 10**9).astype(a.dtype))]
    if a.dtype.kind == "f":
        cases.append((key, "nan", np.full_like(a, np.nan)))
for key in list(meta):
    cases += [("meta." + key, "dropped", None), ("meta." + key, "string", "x"), ("meta." + key, "number", 3)]
for key in list(meta["kernel"]):
    cases += [("kernel." + key, "dropped", None), ("kernel." + key, "changed", 10**6)]
outcomes = {"rejected": 0, "loaded": 0}
for key, how, value in cases:
    a2, m2 = dict(arrays), json.loads(json.dumps(meta))
    if key.startswith("meta."):
        k = key[5:]
        m2.pop(k) if value is None else m2.__setitem__(k, value)
    elif key.startswith("kernel."):
        k = key[7:]
        m2["kernel"].pop(k) if value is None else m2["kernel"].__setitem__(k, value)
    elif value is None:
        a2.pop(key)
    else:
        a2[key.split(".vars.")[0] + (".vars" if ".vars." in key else "")] = value
    np.savez(out, __meta__=np.array(json.dumps(m2)), **a2)
    print(key, how, flush=True)  # the last line names the case if the process dies
    try:
        state = PolicyState.load(out)
    except ValueError as exc:
        assert out in str(exc), exc
        outcomes["rejected"] += 1
        continue
    policy = make_policy_for_budget(name, 4, 16, **{k: v for k, v in state.params.items()
                                                     if k not in ("prompts_per_step", "rollouts_per_step")})
    for _ in range(3):  # a state that loads must also run
        plan = policy.plan(state) if not state.awaiting_observation else None
        n = plan.n_rollouts if plan is not None else state.step.n[state.step.vars.round_start:state.step.vars.n_slots]
        policy.observe(state, np.minimum(n, 1))
    outcomes["loaded"] += 1
print(json.dumps(outcomes))
'''


@pytest.mark.parametrize("name", ["cures", "cures-paper", "greso", "knapsack", "dapo"])
def test_damaged_state_files_are_value_errors_not_crashes(name, tmp_path):
    """Each array truncated, reshaped, retyped, filled with out-of-range values or dropped, and each metadata and
    kernel key dropped or retyped, in turn: loading raises ValueError naming the file, or the state runs; the
    process never crashes (a segfault here would end the subprocess with a signal)."""
    _, _, path = _run_and_save_everywhere(name, tmp_path, steps=3)
    res = subprocess.run([sys.executable, "-c", DAMAGE, str(path), str(tmp_path / "damaged.npz"), name],
                         capture_output=True, text=True, timeout=600)
    last = res.stdout.strip().splitlines()[-1] if res.stdout.strip() else ""
    assert res.returncode == 0, f"crashed at {last!r}: {res.stderr[-2000:]}"
    outcomes = json.loads(last)
    print(name, outcomes)
    assert outcomes["rejected"] > 100 and outcomes["loaded"] < outcomes["rejected"]


def test_damaged_posterior_files_are_value_errors(tmp_path):
    from cures.posterior import BetaPosterior

    post = BetaPosterior(5, prior=(1.0, 2.0), decay=0.9)
    post.update(np.array([0, 3]), np.array([1.0, 2.0]), np.array([2.0, 4.0]))
    path = post.save(tmp_path / "post.npz")
    back = BetaPosterior.load(path)
    np.testing.assert_array_equal(back.alpha, post.alpha)
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays.pop("__meta__")))
    cases = [({**arrays, "beta": arrays["beta"][:-1]}, meta), ({**arrays, "alpha": arrays["alpha"][None]}, meta),
             ({**arrays, "beta0": arrays["beta0"].astype(np.float32)}, meta),
             ({**arrays, "alpha": np.full(5, np.nan)}, meta), ({**arrays, "beta": np.full(5, -1.0)}, meta),
             ({k: v for k, v in arrays.items() if k != "alpha0"}, meta),
             (arrays, {k: v for k, v in meta.items() if k != "decay"}), (arrays, {**meta, "prior": "x"}),
             (arrays, {**meta, "decay": 7}), (arrays, {**meta, "prior": [1, float("inf")]})]
    for i, (a, m) in enumerate(cases):
        bad = tmp_path / f"bad{i}.npz"
        np.savez(bad, __meta__=np.array(json.dumps(m)), **a)
        with pytest.raises(ValueError, match=str(bad)):
            BetaPosterior.load(bad)


def test_a_state_of_another_format_version_is_refused_with_its_version(tmp_path):
    """Version 1 kept integer registers; its files are refused with a message that gives both versions."""
    from cures.policies.core import STATE_VERSION

    _, _, path = _run_and_save_everywhere("cures", tmp_path, steps=1)
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays.pop("__meta__")))
    old = tmp_path / "v1.npz"
    np.savez(old, __meta__=np.array(json.dumps({**meta, "version": 1})), **arrays)
    with pytest.raises(ValueError, match=rf"format version 1; this cures reads \[{STATE_VERSION}\]"):
        PolicyState.load(old)
