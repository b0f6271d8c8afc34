"""Fixed-seed trajectories of every policy, recorded to a file so that a refactoring of the policy core can prove it
changed nothing: per step and round the plan (prompts, rollouts, purpose), the successes fed back, the training
groups, a hash of the posterior counts (alpha, beta) and the RNG state.

The same for the simulator's compiled loop, which calls the policies from inside Numba: per policy and estimator
setting, a digest of every evaluation row of a short run (`engine_trajectory`).

    python tests/policy_trajectories.py          # rewrite both files in tests/fixtures/

`test_policy_trajectories.py` replays them and requires equality, bit for bit.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

FIXTURE = Path(__file__).parent / "fixtures" / "policy_trajectories.json"
ENGINE_FIXTURE = Path(__file__).parent / "fixtures" / "engine_trajectories.json"
N_PROMPTS, BATCH, BUDGET, STEPS = 60, 8, 32, 14
PARAMS = {  # small schedules so that subsets, pre-rollouts and refills all happen within STEPS steps
    "cures-paper": {"subsets": 3, "steps_per_subset": 4},
    "cures-released": {"subsets": 3, "steps_per_subset": 4},
    "gvm": {"subsets": 3, "steps_per_subset": 4},
    "speed": {},
    "dapo": {},
    "greso": {},
    "pods": {"n": 4},  # recorded before PODS and Pilot-Commit spent the budget by `group_size_params`
    "pilot-commit": {"n_pilot": 8, "n_commit": 24},
}


def _digest(*arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:20]


def _significant(values: np.ndarray, digits: int = 9) -> np.ndarray:
    """Values rounded to `digits` significant digits: the IRT world's population is drawn with numpy's BLAS
    (`a @ theta`, `np.linalg.norm`), whose kernels differ in the last bits between CPUs (a record made on one
    machine failed on another with identical histograms and rollout counts), so a bit-for-bit digest of the
    evaluation rows would test the machine, not the code."""
    flat = np.asarray(values, dtype=np.float64).ravel()
    return np.array([float(f"{v:.{digits}g}") for v in flat])


def trajectory(name: str) -> list[dict]:
    from cures.policies import make_policy_for_budget

    policy = make_policy_for_budget(name, BATCH, BUDGET, **PARAMS.get(name, {}))
    state = policy.init(N_PROMPTS, seed=7)
    true_p = np.random.default_rng(11).beta(0.5, 0.5, N_PROMPTS)  # the world's pass rates, fixed
    world = np.random.default_rng(13)
    record = []
    for step in range(STEPS):
        rounds = []
        while True:
            plan = policy.plan(state)
            successes = world.binomial(plan.n_rollouts, true_p[plan.prompt_ids])
            done = policy.observe(state, successes)
            rounds.append({"purpose": plan.purpose, "prompts": plan.prompt_ids.tolist(),
                           "rollouts": plan.n_rollouts.tolist(), "successes": successes.tolist()})
            if done:
                break
        batch = policy.training_batch(state)
        post = state.posterior_mean()
        rng = state.rng.bit_generator.state["state"]
        record.append({"step": step, "rounds": rounds, "groups": batch.group.tolist(),
                       "posterior": _digest(post), "rng": f"{rng['state']}:{rng['inc']}",
                       "rollouts_total": state.rollouts_total})
    return record


def all_trajectories() -> dict:
    from cures.policies import available

    return {name: trajectory(name) for name in available()}


RECORDED_COLUMNS = 11  # the evaluation columns the record was made with (train_reward came later)
ENGINE_SETTINGS = {  # the IRT world with measured score norms, and the tabular world
    "irt": {"mode": "irt", "score_norms": True},
    "tabular": {"mode": "tabular", "estimator": "rloo"},
}


def engine_trajectory(name: str, setting: str) -> dict:
    """One seed of the compiled simulator: a digest of its evaluation rows and pass-rate histograms."""
    from cures.simulator.config import build_config
    from cures.simulator.run import run_seed

    cfg = build_config(overrides={"n_prompts": N_PROMPTS * 4, "n_heldout": 50, "prompts_per_step": BATCH,
                                  "rollouts_per_step": BUDGET,
                                  "steps": 3 * STEPS, "eval_every": 7, "seeds": 1, **ENGINE_SETTINGS[setting]},
                       policy_overrides=PARAMS.get(name, {}))
    run = run_seed(name, cfg, seed=5)
    return {"curves": _digest(_significant(run.curves[:, :RECORDED_COLUMNS])), "hist": _digest(run.hist),
            "rollouts_total": run.rollouts_total, "steps": run.steps}


def all_engine_trajectories() -> dict:
    from cures.policies import available

    return {name: {s: engine_trajectory(name, s) for s in ENGINE_SETTINGS} for name in available()}


if __name__ == "__main__":
    FIXTURE.parent.mkdir(exist_ok=True)
    for path, make in ((FIXTURE, all_trajectories), (ENGINE_FIXTURE, all_engine_trajectories)):
        path.write_text(json.dumps(make(), separators=(",", ":")) + "\n")
        print(f"wrote {path} ({path.stat().st_size:,} bytes)")
