"""Synthetic prompt populations: initial pass-rate distributions and the item-response model's parameters."""

from __future__ import annotations

import csv
import math
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np

from cures.posterior import BetaPosterior

Sampler = Callable[[np.random.Generator, int], np.ndarray]


class Model(NamedTuple):
    """p_i(theta) = sigmoid(a_i . theta - b_i); tabular mode: a is (N, 1) and theta holds one logit per prompt."""

    a: np.ndarray  # float64[N, d] (tabular: [N, 1])
    b: np.ndarray  # float64[N]
    a_held: np.ndarray  # float64[M, d] held-out prompts (tabular: [0, 1])
    b_held: np.ndarray
    theta: np.ndarray  # float64[d] (tabular: [N]); updated in place by training


def parse_pass_rate_spec(spec: str) -> tuple[Sampler, int | None]:
    """Parse an initial pass-rate distribution. Returns (sampler, fixed pool size or None).

    Forms: `beta:A,B`; `uniform`; a mixture `beta:A,B+zero:W0+one:W1` (point masses at 0 and 1 with weights W0, W1,
    the Beta taking the rest); `file:PATH` or a path ending in .json / .csv with per-prompt counts (the reference
    code's `[{"Accepted": s, "All": n}]` counters or a CSV with columns prompt_id,successes,attempts), from which each
    prompt's initial pass rate is drawn from Beta(s + 1, n - s + 1); a CSV with columns prompt_id,alpha,beta gives
    each prompt's Beta as it is (`cures calibrate` writes one: the profile's counts under their fitted
    Beta-binomial prior).
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError("init pass-rate spec is empty")
    spec = spec.strip()
    if spec.startswith("file:") or spec.endswith((".json", ".csv")):
        return _file_sampler(Path(spec.removeprefix("file:")))
    parts = [p.strip() for p in spec.split("+")]
    beta_ab, w0, w1 = None, 0.0, 0.0
    for part in parts:
        kind, _, arg = part.partition(":")
        try:
            if kind == "uniform" and not arg:
                beta_ab = (1.0, 1.0)
            elif kind == "beta":
                a, b = (float(v) for v in arg.split(","))
                if not (0 < a < math.inf and 0 < b < math.inf):
                    raise ValueError
                beta_ab = (a, b)
            elif kind == "zero":
                w0 = float(arg)
            elif kind == "one":
                w1 = float(arg)
            else:
                raise KeyError(kind)
        except KeyError:
            raise ValueError(f"init pass-rate spec {spec!r}: unknown part {part!r} (use beta:A,B, uniform, zero:W, "
                             "one:W, file:PATH)") from None
        except ValueError:
            raise ValueError(f"init pass-rate spec {spec!r}: malformed part {part!r} (beta:A,B needs finite A, B > 0; "
                             "zero:W and one:W a weight)") from None
    if not (0 <= w0 <= 1 and 0 <= w1 <= 1 and w0 + w1 <= 1):
        raise ValueError(f"init pass-rate spec {spec!r}: point-mass weights must be >= 0 and sum to <= 1")
    if beta_ab is None and w0 + w1 < 1:
        raise ValueError(f"init pass-rate spec {spec!r}: the weights leave {1 - w0 - w1:g} with no Beta part")

    def sample(rng: np.random.Generator, n: int) -> np.ndarray:
        u = rng.random(n)
        p = rng.beta(*beta_ab, size=n) if beta_ab is not None else np.zeros(n)
        p[u < w0] = 0.0
        p[(u >= w0) & (u < w0 + w1)] = 1.0
        return p

    return sample, None


def _file_sampler(path: Path) -> tuple[Sampler, int]:
    if not path.is_file():
        raise ValueError(f"pass-rate file not found: {path}")
    if path.suffix == ".json":
        post = BetaPosterior.from_counter_json(path)
        alpha, beta = post.alpha, post.beta
    else:
        try:
            with path.open(newline="") as fh:
                rows = list(csv.DictReader(fh))
            if rows and "alpha" in rows[0] and "beta" in rows[0]:  # each prompt's Beta given as it is
                alpha = np.array([float(r["alpha"]) for r in rows])
                beta = np.array([float(r["beta"]) for r in rows])
                if not (np.all(np.isfinite(alpha) & (alpha > 0)) and np.all(np.isfinite(beta) & (beta > 0))):
                    raise ValueError(f"{path}: alpha and beta must be finite and > 0")
            else:
                s = np.array([float(r["successes"]) for r in rows])
                n = np.array([float(r["attempts"]) for r in rows])
        except (KeyError, ValueError, TypeError, csv.Error) as exc:
            if str(exc).startswith(str(path)):
                raise
            raise ValueError(f"{path}: expected a CSV with columns prompt_id,successes,attempts or prompt_id,alpha,"
                             f"beta ({exc!r})") from None
        if not rows:
            raise ValueError(f"{path}: no rows")
        if "alpha" not in rows[0] or "beta" not in rows[0]:
            post = BetaPosterior(len(rows)).update(np.arange(len(rows)), s, n)  # validates the counts
            alpha, beta = post.alpha, post.beta

    def sample(rng: np.random.Generator, n_draw: int) -> np.ndarray:
        idx = np.arange(alpha.size) if n_draw == alpha.size else rng.integers(0, alpha.size, n_draw)
        return rng.beta(alpha[idx], beta[idx])

    return sample, alpha.size


def _logits(p: np.ndarray, edge: float) -> np.ndarray:
    with np.errstate(divide="ignore"):
        z = np.log(p) - np.log1p(-p)
    z = np.clip(z, -30.0, 30.0)  # continuous draws that rounded to 0 or 1
    z[p == 0.0] = -edge  # point masses
    z[p == 1.0] = edge
    return z


def _discriminations(cfg, rng: np.random.Generator, n: int) -> np.ndarray:
    mags = cfg.a_scale * np.exp(cfg.a_spread * rng.standard_normal(n))
    mags[rng.random(n) < cfg.unlearnable] = 0.0  # no purchase: learning never moves these prompts
    return mags


def build_population(cfg, rng: np.random.Generator) -> tuple[Model, np.ndarray]:
    """Draw the training and held-out prompts. theta0 = 0, so b_i = -logit(p_i0) makes p_i(theta0) follow the
    configured distribution exactly. Returns the model and the training prompts' initial pass rates."""
    sampler, _ = parse_pass_rate_spec(cfg.init_pass_rate)
    n, m, d = cfg.n_prompts, cfg.n_heldout, cfg.dim
    p0 = sampler(rng, n)
    b = -_logits(p0, cfg.edge_logit)
    mags = _discriminations(cfg, rng, n)
    if cfg.mode == "tabular":
        return Model(a=mags[:, None].copy(), b=b, a_held=np.zeros((0, 1)), b_held=np.zeros(0),
                     theta=np.zeros(n)), p0

    def directions(k):
        z = np.abs(rng.standard_normal((k, d)))  # positive orthant: every skill helps, so learning transfers
        return z / np.linalg.norm(z, axis=1, keepdims=True)

    a = mags[:, None] * directions(n)
    p_held = sampler(rng, m)
    a_held = _discriminations(cfg, rng, m)[:, None] * directions(m)
    return Model(a=a, b=b, a_held=a_held, b_held=-_logits(p_held, cfg.edge_logit), theta=np.zeros(d)), p0


def pass_rates(model: Model, tabular: bool, held_out: bool = False, ids: np.ndarray | None = None) -> np.ndarray:
    """p(theta) = sigmoid(a . theta - b) of every training (or held-out) prompt, or of the training prompts `ids`
    (for the NumPy reference simulator; the engine computes it in its kernels)."""
    from scipy.special import expit  # here, not at the top: `cures simulate` imports this module and never needs it

    a, b = (model.a_held, model.b_held) if held_out else (model.a, model.b)
    theta = model.theta
    if ids is not None:
        a, b = a[ids], b[ids]
        theta = theta[ids] if tabular else theta
    return expit(a[:, 0] * theta - b if tabular else a @ theta - b)
