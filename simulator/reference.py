"""The simulator's model written plainly, rollout by rollout, in NumPy: slow, readable, the ground truth in tests.

Every rollout gets its own reward r ~ Bernoulli(p) and score s = (r - p) a + sigma_r xi (xi ~ N(0, I_d)); advantages
are computed from each group's actual rewards; the gradient estimate is the weighted sum of A_j s_j. Policies run
through the Python interface (`Policy.plan` / `observe`), i.e. the same compiled policy code as the engine.
The engine (`simulator/engine.py`) must produce the same distributions of every output.
"""

from __future__ import annotations

import time

import numpy as np

from cures.policies.step import trained_rollouts
from cures.simulator.config import SimConfig
from cures.simulator.population import build_population, pass_rates
from cures.simulator.run import SeedRun, Stopped
from cures.simulator.world import engine_config, policy_for, seed_streams


def group_advantages(rewards: np.ndarray, estimator: str, eps: float, batch_mean: float, batch_sd: float,
                     pool: np.ndarray | None = None) -> np.ndarray:
    """Advantages of one group's rewards (GRPO: (r - mean) / (std + eps) with the unbiased std, as TRL), the
    statistics taken from `pool` (the group's baseline rollouts, which include its own) when given."""
    pool = rewards if pool is None else pool
    n = pool.size
    if estimator == "reinforce++":
        return (rewards - batch_mean) / (batch_sd + eps)
    if n < 2:
        return np.zeros(rewards.size)
    if estimator == "rloo":
        return rewards - (pool.sum() - rewards) / (n - 1)
    centred = rewards - pool.mean()
    if estimator == "dr_grpo":
        return centred
    return centred / (pool.std(ddof=1) + eps)


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


def _slot_tally(tally, k: np.ndarray, n: np.ndarray, first: bool) -> None:
    zero = int(np.sum((k == 0) | (k == n)))
    tally["slots"] += k.size
    tally["zero"] += zero
    tally["rolled"] += int(n.sum())
    tally["succ"] += int(k.sum())
    tally["slots_all"] += k.size
    tally["zero_all"] += zero
    if first:
        tally["first_slots"] += k.size
        tally["first_zero"] += zero


def _per_rollout_step(policy, state, model, cfg, C, tabular, rng, tally, first, kept):
    """One training step, every rollout its own Bernoulli reward and score vector; returns (groups, trained
    rollouts, gradient estimate). `kept` maps slot ids to the rewards of slots the policy holds for later steps."""
    d = model.theta.shape[0]
    rewards_of_slot, p_of_slot = [], []
    while True:  # the policy's generation rounds
        plan = policy.plan(state)
        successes = []
        p_plan = pass_rates(model, tabular, ids=plan.prompt_ids)
        for n, p in zip(plan.n_rollouts, p_plan, strict=True):
            r = (rng.random(n) < p).astype(float)  # one Bernoulli reward per rollout
            rewards_of_slot.append(r)
            p_of_slot.append(p)
            successes.append(r.sum())
        k = np.array(successes)
        _slot_tally(tally, k, plan.n_rollouts, first)
        if policy.observe(state, k):
            break
    batch = policy.training_batch(state)
    fresh = iter(zip(rewards_of_slot, p_of_slot, strict=True))
    rewards_of_slot, p_of_slot = [], []
    for j in range(batch.group.size):  # generated slots in plan order; re-used ones at today's pass rate
        if batch.source[j] < 0:
            r, p = next(fresh)
            kept[batch.slot_id[j]] = r
        else:
            r, p = kept[batch.source[j]], pass_rates(model, tabular, ids=batch.prompt_ids[j : j + 1])[0]
        rewards_of_slot.append(r)
        p_of_slot.append(p)
    for slot_id in set(kept) - set(state.held_slot_ids().tolist()):
        del kept[slot_id]
    # the step's training groups, rollout by rollout, read from the batch as every backend reads it
    sizes = np.array([r.size for r in rewards_of_slot], np.int64)
    rewards = np.concatenate(rewards_of_slot) if rewards_of_slot else np.zeros(0)
    t = trained_rollouts(batch, np.repeat(np.arange(sizes.size), sizes), rewards > 0)
    all_r = rewards[t.index]
    weights = t.weights(C.per_prompt) / max(all_r.size, 1)  # Eq. 16: 1 / (G n_g) per prompt, else 1 / R
    mu = all_r.mean() if all_r.size else 0.0
    sd = all_r.std(ddof=1) if all_r.size > 1 else 0.0
    grad = np.zeros(d)
    for g in range(batch.n_groups):
        rows = np.flatnonzero(t.group == g)
        last = np.flatnonzero(batch.group == g)[-1]  # the group's prompt, at its last slot's pass rate
        x, p, r = batch.prompt_ids[last], p_of_slot[last], all_r[rows]
        if not r.size:
            continue
        kb, nb = t.baseline[g]
        pool = np.r_[np.ones(int(kb)), np.zeros(int(nb - kb))] if nb > 0 else None
        adv = group_advantages(r, cfg.estimator, cfg.eps, mu, sd, pool)
        scores = rollout_scores(model, tabular, x, p, r, cfg.sigma_correct, cfg.sigma_wrong, rng)
        grad += (weights[rows] * adv) @ scores
    return batch.n_groups, all_r.size, grad


def _vectorised_step(policy, state, model, cfg, C, tabular, rng, tally, first):
    """One training step in whole arrays: k ~ Binomial(n, p) per slot, and per training group the summed score
    sum_j A_j s_j = [k A1 (1 - p) - (n - k) A0 p] a + N(0, (k A1^2 sigma_1^2 + (n - k) A0^2 sigma_0^2) I), the law
    the engine draws from (`simulator/engine.py`)."""
    d = model.theta.shape[0]
    while True:
        plan = policy.plan(state)
        k = rng.binomial(plan.n_rollouts, pass_rates(model, tabular, ids=plan.prompt_ids))
        _slot_tally(tally, k, plan.n_rollouts, first)
        if policy.observe(state, k):
            break
    batch = policy.training_batch(state)
    x = batch.prompt_ids  # slots re-using earlier rollouts included; the model has not moved within the step
    p = pass_rates(model, tabular, ids=x)
    G = batch.n_groups
    grad = np.zeros(d)
    trained = batch.group >= 0
    if G == 0 or not trained.any():
        return G, 0, grad
    g = batch.group[trained]
    kg = np.bincount(g, weights=batch.kept_successes[trained], minlength=G)
    ng = kg + np.bincount(g, weights=batch.kept_failures[trained], minlength=G)
    xg = np.zeros(G, np.int64)
    pg = np.zeros(G)
    xg[g], pg[g] = x[trained], p[trained]
    k_all, n_all = kg.sum(), ng.sum()
    if n_all == 0:
        return G, 0, grad
    mu = k_all / n_all
    sd = np.sqrt((k_all * (1 - mu) ** 2 + (n_all - k_all) * mu**2) / max(n_all - 1.0, 1.0))
    pooled = batch.baseline[:, 1] > 0  # groups whose statistics come from more rollouts than they train on
    a1, a0 = _advantages(cfg.estimator, cfg.eps, np.where(pooled, batch.baseline[:, 0], kg),
                         np.where(pooled, batch.baseline[:, 1], ng), mu, sd)
    coef = kg * a1 * (1.0 - pg) - (ng - kg) * a0 * pg
    var = kg * a1**2 * cfg.sigma_correct**2 + (ng - kg) * a0**2 * cfg.sigma_wrong**2
    w = 1.0 / (G * ng) if C.per_prompt else np.full(G, 1.0 / n_all)
    if tabular:
        np.add.at(grad, xg, w * (coef * model.a[xg, 0] + np.sqrt(var) * rng.standard_normal(G)))
    else:
        grad = (w * coef) @ model.a[xg] + np.sqrt(np.sum(w * w * var)) * rng.standard_normal(d)
    return G, int(n_all), grad


def _advantages(estimator, eps, k, n, batch_mean, batch_sd):
    """(A1, A0) per group with k of n correct, as `cures.simulator.engine.advantages`, in arrays."""
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = k / n
        if estimator == "reinforce++":
            scale = batch_sd + eps
            return np.full(k.shape, (1.0 - batch_mean) / scale), np.full(k.shape, -batch_mean / scale)
        ok = n >= 2
        if estimator == "rloo":
            a1, a0 = 1.0 - (k - 1.0) / (n - 1.0), -k / (n - 1.0)
        elif estimator == "dr_grpo":
            a1, a0 = 1.0 - mean, -mean
        else:
            sd = np.sqrt(k * (n - k) / (n * (n - 1.0)))
            a1, a0 = (1.0 - mean) / (sd + eps), -mean / (sd + eps)
    return np.where(ok, a1, 0.0), np.where(ok, a0, 0.0)


def vectorised_seed(name: str, cfg: SimConfig, seed: int, progress=None, max_rollouts: int | None = None,
                    timer: list | None = None, stop=None, chunk: int | None = None) -> SeedRun:
    """One seed of the vectorised NumPy reference (`reference_seed(..., vectorised=True)`)."""
    return reference_seed(name, cfg, seed, progress, max_rollouts, timer, stop, vectorised=True, chunk=chunk)


def reference_seed(name: str, cfg: SimConfig, seed: int, progress=None, max_rollouts: int | None = None,
                   timer: list | None = None, stop=None, vectorised: bool = False, chunk: int | None = None
                   ) -> SeedRun:
    """One seed of the per-rollout reference (or, `vectorised`, of the NumPy version that draws each slot's
    successes and each step's summed scores in whole arrays, as the engine does): same population, policy and
    schedule as `cures.simulator.run.run_seed` (`timer`, if given, receives the seconds spent stepping in each chunk of
    `chunk` steps, default `eval_every`, as the engine's does)."""
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
             "steps": 0, "groups": 0, "trained": 0, "trained_all": 0, "rolled": 0, "succ": 0}
    grad = np.zeros(d)
    kept = {}  # slot id -> rewards, for slots the policy holds across steps

    def record():
        p = pass_rates(model, tabular)
        p_hat = state.posterior_mean()
        true_grad = (p * (1 - p) / p.size) @ model.a if not tabular else p * (1 - p) * model.a[:, 0] / p.size
        est, true = np.linalg.norm(grad), np.linalg.norm(true_grad)
        held = np.nan if tabular or cfg.n_heldout == 0 else pass_rates(model, tabular, held_out=True).mean()
        steps = max(tally["steps"], 1)
        rows.append([  # cures.simulator.engine.COLUMNS
            state.steps_done, state.rollouts_total, p.mean(), held,
            tally["zero"] / tally["slots"] if tally["slots"] else np.nan, np.abs(p_hat - p).mean(), est,
            grad @ true_grad / (est * true) if est > 0 and true > 0 else np.nan,
            tally["groups"] / steps if tally["steps"] else np.nan,
            tally["trained"] / steps if tally["steps"] else np.nan,
            tally["trained_all"],
            tally["succ"] / tally["rolled"] if tally["rolled"] else np.nan,
        ])
        hists.append(np.histogram(np.minimum((p * cfg.hist_bins).astype(int), cfg.hist_bins - 1),
                                  bins=np.arange(cfg.hist_bins + 1))[0])
        for key in ("slots", "zero", "steps", "groups", "trained", "rolled", "succ"):
            tally[key] = 0

    record()
    spent = 0.0  # seconds stepping since the last evaluation
    for step in range(cfg.steps):
        if stop is not None and stop.is_set():
            raise Stopped
        if C.max_rollouts and state.rollouts_total >= C.max_rollouts:
            break
        if C.max_compute and state.rollouts_total + C.train_cost * tally["trained_all"] >= C.max_compute:
            break
        t0 = time.perf_counter()
        if vectorised:
            n_groups, n_trained, grad = _vectorised_step(policy, state, model, cfg, C, tabular, rng, tally, step == 0)
        else:
            n_groups, n_trained, grad = _per_rollout_step(policy, state, model, cfg, C, tabular, rng, tally, step == 0,
                                                          kept)
        tally["steps"] += 1
        tally["groups"] += n_groups
        tally["trained"] += n_trained
        tally["trained_all"] += n_trained
        step_size = cfg.lr
        norm = np.linalg.norm(grad)
        if cfg.clip > 0 and cfg.lr * norm > cfg.clip:
            step_size = cfg.clip / norm
        model.theta[:] += step_size * grad
        spent += time.perf_counter() - t0
        if (step + 1) % (chunk or cfg.eval_every) == 0 or step + 1 == cfg.steps:
            if timer is not None:
                timer.append(spent)
            spent = 0.0
        if (step + 1) % cfg.eval_every == 0 or step + 1 == cfg.steps:
            record()
        if progress is not None:
            progress(1)
    if tally["steps"]:
        record()
    if timer is not None and spent > 0.0:
        timer.append(spent)
    return SeedRun(seed, np.array(rows, dtype=float), np.array(hists),
                   tally["first_zero"] / max(tally["first_slots"], 1), tally["zero_all"] / max(tally["slots_all"], 1),
                   state.rollouts_total, state.steps_done)

