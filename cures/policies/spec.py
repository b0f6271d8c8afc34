"""Policy specifications: validated public parameters, fixed kernel switches and the registry of names."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

Check = Callable[[str, Any], Any]


def integer(lo: int | None = None, hi: int | None = None, optional: bool = False) -> Check:
    def check(name, v):
        if v is None and optional:
            return None
        if isinstance(v, bool) or not isinstance(v, int | np.integer) and not (isinstance(v, float) and v.is_integer()):
            raise ValueError(f"{name} must be an integer; got {v!r}")
        v = int(v)
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            rng = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
            raise ValueError(f"{name} must be an integer {rng}; got {v}")
        return v

    return check


def real(lo: float | None = None, hi: float | None = None, lo_open: bool = False) -> Check:
    def check(name, v):
        try:
            v = float(v)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be a number; got {v!r}") from None
        bad_lo = lo is not None and (v <= lo if lo_open else v < lo)
        if math.isnan(v) or bad_lo or (hi is not None and v > hi):
            lo_txt = "" if lo is None else (f"> {lo}" if lo_open else f">= {lo}")
            hi_txt = "" if hi is None else f"<= {hi}"
            raise ValueError(f"{name} must be {' and '.join(t for t in (lo_txt, hi_txt) if t)}; got {v}")
        return v

    return check


def choice(*options: str) -> Check:
    def check(name, v):
        if v not in options:
            raise ValueError(f"{name} must be one of {', '.join(options)}; got {v!r}")
        return v

    return check


def boolean() -> Check:
    def check(name, v):
        if isinstance(v, bool | np.bool_):
            return bool(v)
        if isinstance(v, str) and v.lower() in ("true", "false", "1", "0", "yes", "no"):
            return v.lower() in ("true", "1", "yes")
        raise ValueError(f"{name} must be true or false; got {v!r}")

    return check


def prior_pair() -> Check:
    def check(name, v):
        if isinstance(v, str):
            v = v.split(",")
        try:
            a, b = (float(x) for x in v)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be a pair alpha0,beta0; got {v!r}") from None
        if not (a >= 0 and b >= 0 and math.isfinite(a) and math.isfinite(b)) or a + b == 0:
            raise ValueError(f"{name} must be two finite counts >= 0, not both 0; got {v!r}")
        return (a, b)

    return check


@dataclass(frozen=True)
class Param:
    """A public parameter; `field` names the `kernels.Params` field it sets (default: the same name)."""

    name: str
    default: Any
    help: str
    check: Check
    field: str | None = None
    display: str | None = None  # how listings show the default, when not its value


def common_params(budget_help: str = "rollouts per training step N (default 8 x batch_size)") -> tuple[Param, ...]:
    """Parameters every budgeted policy shares: batch size, budget, group clamps and the Beta posterior."""
    return (
        Param("batch_size", 64, "prompts drawn per training step m", integer(1)),
        Param("budget", None, budget_help, integer(1, optional=True), display="8*batch_size"),
        Param("n_min", 2, "fewest rollouts of a prompt that gets any (a group of 1 has no advantage)", integer(1)),
        Param("n_max", None, "most rollouts of one prompt (None: no limit)", integer(1, optional=True)),
        Param("prior", (1.0, 1.0), "Beta prior (alpha0, beta0) of every pass rate", prior_pair()),
        Param("decay", 1.0, "posterior forgetting per update, alpha <- decay alpha + (1-decay) alpha0 + s",
              real(0.0, 1.0)),
    )


def reporting_prior() -> Param:
    """The prior of a policy that keeps a posterior only so that callers can report p_hat."""
    return Param("prior", (1.0, 1.0), "Beta prior of the reported pass-rate estimates", prior_pair())


def gen_batch_param(factor: int, help: str) -> Param:
    return Param("gen_batch_size", None, f"{help} (default {factor} x batch_size)", integer(1, optional=True),
                 display=f"{factor}*batch_size")


def default_gen_batch(factor: int) -> Callable[[dict], dict]:
    """`resolve` hook: gen_batch_size defaults to factor x batch_size."""

    def resolve(v: dict) -> dict:
        if v["gen_batch_size"] is None:
            v["gen_batch_size"] = factor * v["batch_size"]
        return v

    return resolve


def fits_dataset(key: str = "batch_size") -> Callable[[dict, int], None]:
    """`check` hook: v[key] distinct prompts must exist."""

    def check(v: dict, n_prompts: int) -> None:
        if v[key] > n_prompts:
            raise ValueError(f"{key} {v[key]} exceeds n_prompts {n_prompts} (a batch holds distinct prompts)")

    return check


@dataclass(frozen=True)
class PolicySpec:
    """A named policy: its kernel kind, public parameters and fixed kernel switches."""

    name: str
    kind: int
    summary: str
    params: tuple[Param, ...]
    fixed: dict = dataclasses.field(default_factory=dict)
    loss_weighting: str = "per-prompt"  # "per-prompt" (paper Eq. 16) or "per-rollout" (token-mean)
    check: Callable[[dict, int], None] | None = None  # checks that need n_prompts
    capacity: Callable[[Any, int], int] | None = None  # slots one step can hold (default: see Policy._capacity)
    per_prompt_history: bool = False  # allocate State.streak / State.last
    resolve: Callable[[dict], dict] | None = None  # fills defaults that depend on other parameters
    doc: str = ""

    def defaults(self) -> dict:
        return {p.name: p.default for p in self.params}


_REGISTRY: dict[str, PolicySpec] = {}


def register(spec: PolicySpec) -> PolicySpec:
    if spec.name in _REGISTRY:
        raise ValueError(f"policy {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def available() -> list[str]:
    """Names of every registered policy."""
    return sorted(_REGISTRY)


def get_spec(name: str) -> PolicySpec:
    if name not in _REGISTRY:
        raise ValueError(f"unknown policy {name!r}; available: {', '.join(available())}")
    return _REGISTRY[name]
