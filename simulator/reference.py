"""The simulator's model written plainly, rollout by rollout, in NumPy: slow, readable, the ground truth in tests.

Every rollout gets its own reward r ~ Bernoulli(p) and score s = (r - p) a + sigma_r xi (xi ~ N(0, I_d)); advantages
are computed from each group's actual rewards; the gradient estimate is the weighted sum of A_j s_j. Policies run
through the Python interface (`Policy.plan` / `observe`), i.e. the same compiled policy code as the engine.
The engine (`simulator/engine.py`) must produce the same distributions of every output.
"""

from __future__ import annotations

import time

import numpy as np

from simulator.config import SimConfig
from simulator.population import build_population, pass_rates
from simulator.run import SeedRun, Stopped, engine_config, policy_for, seed_streams


def group_advantages(rewards: np.ndarray, estimator: str, eps: float, batch_mean: float, batch_sd: float
                     ) -> np.ndarray:
    """Advantages of one group's rewards (GRPO: (r - mean) / (std + eps) with the unbiased std, as TRL)."""
    n = rewards.size
    if estimator == "reinforce++":
        return (rewards - batch_mean) / (batch_sd + eps)
    if n < 2:
        return np.zeros(n)
    if estimator == "rloo":
        return rewards - (rewards.sum() - rewards) / (n - 1)
    centred = rewards - rewards.mean()
    if estimator == "drgrpo":
        return centred
    return centred / (rewards.std(ddof=1) + eps)


def rollout_scores(model, tabular: bool, x: int, p: float, rewards: np.ndarray, sigma_correct: float,
                   sigma_wrong: float, rng: np.random.Generator) -> np.ndarray:
    """One score vector per rollout of prompt x: s_j = (r_j - p) a_x + sigma_{r_j} xi_j, xi_j ~ N(0, I)."""
    d = model.theta.shape[0]
    direction = np.zeros(d)
    if tabular:
        direction[x] = model.a[x, 0]
    else:
        direction = model.a[x]
    scores = (rewards - p)[:, None] * direction[None, :]
    noise = np.where(rewards > 0, sigma_correct, sigma_wrong)[:, None]
    if tabular:
        scores[:, x] += noise[:, 0] * rng.standard_normal(rewards.size)
    else:
        scores += noise * rng.standard_normal((rewards.size, d))
    return scores


def reference_seed(name: str, cfg: SimConfig, seed: int, progress=None, max_rollouts: int | None = None,
                   timer: list | None = None, stop=None) -> SeedRun:
    """One seed of the per-rollout reference: same population, policy and schedule as `simulator.run.run_seed`."""
    policy = policy_for(name, cfg)
    C = engine_config(cfg, policy, max_rollouts)
    tabular = cfg.mode == "tabular"
    pop_ss, pol_ss, sim_ss = seed_streams(seed)
    model, _ = build_population(cfg, np.random.default_rng(pop_ss))
    state = policy.init(cfg.n_prompts, seed=pol_ss)
    rng = np.random.default_rng(sim_ss)
    d = model.theta.shape[0]

    rows, hists = [], []
    tally = {"slots": 0, "zero": 0, "slots_all": 0, "zero_all": 0, "first_slots": 0, "first_zero": 0,
             "steps": 0, "groups": 0, "trained": 0, "trained_all": 0}
    grad = np.zeros(d)

    def record():
        p = pass_rates(model, tabular)
        p_hat = state.posterior_mean()
        true_grad = (p * (1 - p) / p.size) @ model.a if not tabular else p * (1 - p) * model.a[:, 0] / p.size
        est, true = np.linalg.norm(grad), np.linalg.norm(true_grad)
        held = np.nan if tabular or cfg.n_heldout == 0 else pass_rates(model, tabular, held_out=True).mean()
        steps = max(tally["steps"], 1)
        rows.append([  # simulator.engine.COLUMNS
            state.steps_done, state.rollouts_total, p.mean(), held,
            tally["zero"] / tally["slots"] if tally["slots"] else np.nan, np.abs(p_hat - p).mean(), est,
            grad @ true_grad / (est * true) if est > 0 and true > 0 else np.nan,
            tally["groups"] / steps if tally["steps"] else np.nan,
            tally["trained"] / steps if tally["steps"] else np.nan,
            tally["trained_all"],
        ])
        hists.append(np.histogram(np.minimum((p * cfg.hist_bins).astype(int), cfg.hist_bins - 1),
                                  bins=np.arange(cfg.hist_bins + 1))[0])
        for key in ("slots", "zero", "steps", "groups", "trained"):
            tally[key] = 0

    record()
    for step in range(cfg.steps):
        if stop is not None and stop.is_set():
            raise Stopped
        if C.max_rollouts and state.rollouts_total >= C.max_rollouts:
            break
        if C.max_compute and state.rollouts_total + C.train_cost * tally["trained_all"] >= C.max_compute:
            break
        t0 = time.perf_counter()
        rewards_of_slot, p_of_slot = [], []
        while True:  # the policy's generation rounds
            plan = policy.plan(state)
            successes = []
            for x, n in zip(plan.prompt_ids, plan.n_rollouts, strict=True):
                logit = model.a[x, 0] * model.theta[x] if tabular else model.a[x] @ model.theta
                p = 1.0 / (1.0 + np.exp(-(logit - model.b[x])))
                r = (rng.random(n) < p).astype(float)  # one Bernoulli reward per rollout
                rewards_of_slot.append(r)
                p_of_slot.append(p)
                successes.append(r.sum())
                zero = int(r.min() == r.max())
                tally["slots"] += 1
                tally["zero"] += zero
                tally["slots_all"] += 1
                tally["zero_all"] += zero
                if step == 0:
                    tally["first_slots"] += 1
                    tally["first_zero"] += zero
            if policy.observe(state, np.array(successes)):
                break
        batch = policy.training_batch(state)
        # the step's training groups, rollout by rollout
        groups = [np.flatnonzero(batch.group == g) for g in range(batch.n_groups)]
        all_r = np.concatenate([rewards_of_slot[j] for idx in groups for j in idx]) if groups else np.zeros(0)
        mu = all_r.mean() if all_r.size else 0.0
        sd = all_r.std(ddof=1) if all_r.size > 1 else 0.0
        grad = np.zeros(d)
        for idx in groups:
            x = batch.prompt_ids[idx[0]]
            r = np.concatenate([rewards_of_slot[j] for j in idx])
            p = p_of_slot[idx[0]]
            adv = group_advantages(r, cfg.estimator, cfg.eps, mu, sd)
            weight = 1.0 / (len(groups) * r.size) if C.per_prompt else 1.0 / all_r.size
            scores = rollout_scores(model, tabular, x, p, r, cfg.sigma_correct, cfg.sigma_wrong, rng)
            grad += weight * (adv @ scores)
        tally["steps"] += 1
        tally["groups"] += len(groups)
        tally["trained"] += all_r.size
        tally["trained_all"] += all_r.size
        step_size = cfg.lr
        norm = np.linalg.norm(grad)
        if cfg.clip > 0 and cfg.lr * norm > cfg.clip:
            step_size = cfg.clip / norm
        model.theta[:] += step_size * grad
        if timer is not None:
            timer.append(time.perf_counter() - t0)
        if (step + 1) % cfg.eval_every == 0 or step + 1 == cfg.steps:
            record()
        if progress is not None:
            progress(1)
    if tally["steps"]:
        record()
    return SeedRun(seed, np.array(rows, dtype=float), np.array(hists),
                   tally["first_zero"] / max(tally["first_slots"], 1), tally["zero_all"] / max(tally["slots_all"], 1),
                   state.rollouts_total, state.steps_done)

