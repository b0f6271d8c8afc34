"""Beta-Bernoulli pass-rate posterior (paper Sec. 4.3, Eq. 22-24), with optional MoPPS-style forgetting.

The update is one Numba kernel, `update_counts`, which `BetaPosterior` and the compiled policies share.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from cures._io import atomic_save_npz, load_npz
from cures._jit import njit

__all__ = ["BetaPosterior", "successes_from_rewards"]

FORMAT = "cures.BetaPosterior"
VERSION = 1


@njit(cache=True)
def update_counts(alpha, beta, alpha0, beta0, ids, successes, trials, decay, mark):
    """Eq. 23-24 with forgetting: per distinct id, alpha <- decay*alpha + (1-decay)*alpha0 + S (beta with F).

    S and F are the summed successes and failures of every entry of `ids` equal to that id, so repeated ids in one
    call are merged and decayed once. With decay = 1 this is the plain conjugate update. `mark` is a zeroed uint8
    scratch array over all prompts (left zeroed).
    """
    if decay != 1.0:
        for x in ids:  # forget once per distinct id, before any new evidence
            if mark[x] == 0:
                mark[x] = 1
                alpha[x] = decay * alpha[x] + (1.0 - decay) * alpha0[x]
                beta[x] = decay * beta[x] + (1.0 - decay) * beta0[x]
        for x in ids:
            mark[x] = 0
    for j in range(ids.shape[0]):
        x = ids[j]
        alpha[x] += successes[j]
        beta[x] += trials[j] - successes[j]


@njit(cache=True, inline="always")
def posterior_mean(alpha, beta, x):
    """alpha / (alpha + beta); 1/2 when both counts are 0 (the improper Beta(0, 0) before any data)."""
    t = alpha[x] + beta[x]
    return alpha[x] / t if t > 0.0 else 0.5


def successes_from_rewards(rewards, threshold: float = 0.5) -> np.ndarray:
    """A rollout succeeds when its reward is strictly above `threshold` (the reference code's rule, 0.5)."""
    r = np.asarray(rewards, dtype=np.float64)
    if np.isnan(r).any():
        raise ValueError("rewards contain NaN")
    if not isinstance(threshold, int | float | np.number) or not np.isfinite(threshold):
        raise ValueError(f"threshold must be a finite number; got {threshold!r}")
    return (r > threshold).astype(np.float64)


def _check_prior(prior) -> tuple[float, float]:
    try:
        a0, b0 = (float(v) for v in prior)
    except (TypeError, ValueError):
        raise ValueError(f"prior must be a pair (alpha0, beta0); got {prior!r}") from None
    if not (a0 >= 0 and b0 >= 0 and np.isfinite(a0) and np.isfinite(b0)):
        raise ValueError(f"prior counts must be finite and >= 0; got {prior!r}")
    return a0, b0


def _check_decay(decay) -> float:
    decay = float(decay)
    if not 0.0 <= decay <= 1.0:
        raise ValueError(f"decay must lie in [0, 1]; got {decay}")
    return decay


def beta_binomial_fit(successes: np.ndarray, attempts: np.ndarray) -> dict:
    """Maximum-likelihood Beta(a, b) of the pass rates behind Binomial(attempts, p) counts (the Beta-binomial), by
    scipy over log a, log b; a histogram concentrated at 0 and N' gives small a, b (a U-shaped Beta)."""
    from scipy.optimize import minimize
    from scipy.stats import betabinom

    def nll(z):
        a, b = np.exp(np.clip(z, -12, 12))
        return -float(np.sum(betabinom.logpmf(successes, attempts, a, b)))

    mean = float(np.clip(successes.sum() / max(attempts.sum(), 1), 0.01, 0.99))
    res = minimize(nll, x0=np.log([mean, 1 - mean]), method="Nelder-Mead", options={"xatol": 1e-6, "fatol": 1e-9})
    a, b = (float(v) for v in np.exp(np.clip(res.x, -12, 12)))
    return {"a": a, "b": b, "log_likelihood": -float(res.fun)}


class BetaPosterior:
    """Independent Beta(alpha_i, beta_i) posteriors over the pass rates of `n_prompts` prompts.

    alpha and beta start at the prior (alpha0, beta0); `update` adds successes and failures (Eq. 23-24), optionally
    forgetting old evidence with `decay` (MoPPS: alpha <- decay alpha + (1 - decay) alpha0 + s). The point estimate is
    the posterior mean (the paper's p_hat).
    """

    def __init__(self, n_prompts: int, prior=(1.0, 1.0), decay: float = 1.0):
        if int(n_prompts) != n_prompts or n_prompts < 1:
            raise ValueError(f"n_prompts must be an integer >= 1; got {n_prompts}")
        a0, b0 = _check_prior(prior)
        self.prior = (a0, b0)
        self.decay = _check_decay(decay)
        self.alpha0 = np.full(int(n_prompts), a0)
        self.beta0 = np.full(int(n_prompts), b0)
        self.alpha = self.alpha0.copy()
        self.beta = self.beta0.copy()

    @property
    def n_prompts(self) -> int:
        return self.alpha.shape[0]

    def __repr__(self) -> str:
        return f"BetaPosterior(n_prompts={self.n_prompts}, prior={self.prior}, decay={self.decay})"

    # -- updates ------------------------------------------------------------------------------------------------
    def _check_ids(self, ids) -> np.ndarray:
        arr = np.asarray(ids)
        if arr.ndim != 1:
            raise ValueError(f"ids must be 1-D; got shape {arr.shape}")
        if arr.size and not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"ids must be integers; got dtype {arr.dtype}")
        arr = arr.astype(np.int64)
        if arr.size and (arr.min() < 0 or arr.max() >= self.n_prompts):
            raise ValueError(f"ids must lie in [0, {self.n_prompts - 1}]; got [{arr.min()}, {arr.max()}]")
        return arr

    def update(self, ids, successes, trials) -> BetaPosterior:
        """Add `successes` out of `trials` for each entry of `ids` (repeated ids are merged). Returns self."""
        ids = self._check_ids(ids)
        s = np.asarray(successes, dtype=np.float64).reshape(-1)
        n = np.asarray(trials, dtype=np.float64).reshape(-1)
        if not (s.shape == n.shape == ids.shape):
            raise ValueError(f"ids, successes and trials differ in length: {ids.size}, {s.size}, {n.size}")
        if not (np.isfinite(s).all() and np.isfinite(n).all()):
            raise ValueError("successes and trials must be finite numbers")
        if (s < 0).any() or (n < 0).any():
            raise ValueError("successes and trials must be >= 0")
        if (s > n).any():
            raise ValueError("successes must not exceed trials")
        mark = np.zeros(self.n_prompts, np.uint8)
        update_counts(self.alpha, self.beta, self.alpha0, self.beta0, ids, s, n, self.decay, mark)
        return self

    def update_from_rewards(self, ids, rewards, threshold: float = 0.5) -> BetaPosterior:
        """One trial per (id, reward) pair; a reward above `threshold` is a success (0/1 rewards pass through)."""
        succ = successes_from_rewards(rewards, threshold)
        return self.update(ids, succ, np.ones_like(succ))

    def reset(self, ids=None) -> BetaPosterior:
        """Return the given prompts (all when None) to the prior."""
        sel = slice(None) if ids is None else self._check_ids(ids)
        self.alpha[sel] = self.alpha0[sel]
        self.beta[sel] = self.beta0[sel]
        return self

    # -- summaries ----------------------------------------------------------------------------------------------
    def mean(self) -> np.ndarray:
        """Posterior mean alpha / (alpha + beta) (1/2 where both counts are 0)."""
        t = self.alpha + self.beta
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(t > 0, self.alpha / t, 0.5)

    def var(self) -> np.ndarray:
        """Posterior variance alpha beta / ((alpha + beta)^2 (alpha + beta + 1))."""
        t = self.alpha + self.beta
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(t > 0, self.alpha * self.beta / (t * t * (t + 1.0)), 1.0 / 12.0)

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        """One Thompson draw p_i ~ Beta(alpha_i, beta_i) per prompt."""
        return rng.beta(np.maximum(self.alpha, 1e-12), np.maximum(self.beta, 1e-12))

    # -- persistence --------------------------------------------------------------------------------------------
    def save(self, path) -> Path:
        """Write a versioned .npz (no pickle) atomically."""
        meta = {"format": FORMAT, "version": VERSION, "prior": list(self.prior), "decay": self.decay}
        arrays = {"alpha": self.alpha, "beta": self.beta, "alpha0": self.alpha0, "beta0": self.beta0}
        return atomic_save_npz(path, meta, arrays)

    @classmethod
    def load(cls, path) -> BetaPosterior:
        """Read a file written by `save`; a missing or malformed key, array or value is a ValueError naming the
        file."""
        meta, arrays = load_npz(path, FORMAT, (VERSION,))
        names = ("alpha", "beta", "alpha0", "beta0")
        try:
            if set(arrays) != set(names):
                raise ValueError(f"arrays must be exactly {', '.join(names)}; found {', '.join(sorted(arrays))}")
            n = arrays["alpha"].shape[0] if arrays["alpha"].ndim == 1 else 0
            for name in names:
                a = arrays[name]
                if a.dtype != np.float64 or a.shape != (n,) or n < 1:
                    raise ValueError(f"array {name} must be a non-empty float64 vector as long as alpha; got "
                                     f"{a.dtype} {a.shape}")
                if not (np.isfinite(a).all() and (a >= 0).all()):
                    raise ValueError(f"array {name} must be finite and >= 0")
            if "prior" not in meta or "decay" not in meta:
                raise ValueError("metadata lacks prior or decay")
            post = cls(n, prior=meta["prior"], decay=meta["decay"])
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{path}: {exc}") from None
        for name in names:
            getattr(post, name)[:] = arrays[name]
        return post

    @classmethod
    def from_counter_json(cls, path, prior=(1.0, 1.0), decay: float = 1.0) -> BetaPosterior:
        """Read the reference code's counters, `[{"Accepted": s, "All": n}, ...]`, one entry per prompt."""
        path = Path(path)
        try:
            records = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"cannot read counter JSON {path}: {exc}") from None
        if not isinstance(records, list) or not records:
            raise ValueError(f"{path}: expected a non-empty JSON list of {{'Accepted': s, 'All': n}} records")
        try:
            s = np.array([float(r["Accepted"]) for r in records])
            n = np.array([float(r["All"]) for r in records])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}: every record needs numeric 'Accepted' and 'All' ({exc!r})") from None
        post = cls(len(records), prior=prior, decay=1.0)
        post.update(np.arange(len(records)), s, n)
        post.decay = _check_decay(decay)
        return post
