"""The world one seed of the simulator runs in: the policy and its state, the simulated model, the random streams and
the engine's configuration, built alike for the run (`cures.simulator.run`) and its compile helper
(`cures.simulator.warmup`)."""

from __future__ import annotations

import numpy as np

from cures.policies import Policy, make_policy_for_budget
from cures.simulator.config import SimConfig
from cures.simulator.engine import ESTIMATOR_CODES, EngineConfig, new_tally
from cures.simulator.population import build_population


def policy_for(name: str, cfg: SimConfig) -> Policy:
    """The policy with the scenario's prompts and rollouts per step and parameters (`make_policy_for_budget`)."""
    return make_policy_for_budget(name, cfg.prompts_per_step, cfg.rollouts_per_step, **cfg.policy_params)


def engine_config(cfg: SimConfig, policy: Policy, max_rollouts: int | None = None) -> EngineConfig:
    weighting = policy.spec.loss_weighting if cfg.weighting == "policy" else cfg.weighting
    return EngineConfig(
        tabular=cfg.mode == "tabular", estimator=ESTIMATOR_CODES[cfg.estimator],
        per_prompt=weighting in ("prompt", "per-prompt"), lr=cfg.lr, clip=cfg.clip,
        sigma_correct=cfg.sigma_correct, sigma_wrong=cfg.sigma_wrong, eps=cfg.eps, score_norms=cfg.score_norms,
        max_rollouts=cfg.max_rollouts if max_rollouts is None else max_rollouts, train_cost=cfg.train_cost,
        max_compute=cfg.max_compute,
    )


def seed_streams(seed: int) -> tuple[np.random.SeedSequence, np.random.SeedSequence, np.random.SeedSequence]:
    """Independent streams for the population, the policy and the simulated rollouts of one seed."""
    pop, pol, sim = np.random.SeedSequence(seed).spawn(3)
    return pop, pol, sim


def seed_world(name: str, cfg: SimConfig, seed: int, max_rollouts: int | None = None):
    """What the engine runs one seed on: (policy state, simulated model, rollout RNG, EngineConfig, Tally)."""
    policy = policy_for(name, cfg)
    pop_ss, pol_ss, sim_ss = seed_streams(seed)
    model, _ = build_population(cfg, np.random.default_rng(pop_ss))
    state = policy.init(cfg.n_prompts, seed=pol_ss)
    srng = np.random.default_rng(sim_ss)
    C = engine_config(cfg, policy, max_rollouts)
    T = new_tally(model.theta.shape[0], state.step.prompt.shape[0])
    return state, model, srng, C, T
