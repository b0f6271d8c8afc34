"""Policy specifications: validated public parameters, fixed kernel switches and the registry of names."""

from __future__ import annotations

import collections
import dataclasses
import math
from collections.abc import Callable, Sequence
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


def real(lo: float | None = None, hi: float | None = None, lo_open: bool = False, optional: bool = False) -> Check:
    def check(name, v):
        if v is None and optional:
            return None
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


def text(optional: bool = False) -> Check:
    def check(name, v):
        if v is None and optional:
            return None
        if not isinstance(v, str) or not v:
            raise ValueError(f"{name} must be a non-empty string; got {v!r}")
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
    """A public parameter; the policy's kernel parameters hold it under the same name (unless `resolve` turns it
    into others, or only `init` uses it: `prior`, `subsets`)."""

    name: str
    default: Any
    help: str
    check: Check
    display: str | None = None  # how listings show the default, when not its value


def common_params(budget_help: str = "rollouts per training step N (default 8 x prompts_per_step)") -> tuple[Param,
                                                                                                             ...]:
    """Parameters every budgeted policy shares: prompts and rollouts per step, group clamps and the Beta posterior."""
    return (
        Param("prompts_per_step", 64, "prompts drawn per training step m", integer(1)),
        Param("rollouts_per_step", None, budget_help, integer(1, optional=True), display="8*prompts_per_step"),
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
    return Param("gen_batch_size", None, f"{help} (default {factor} x prompts_per_step)", integer(1, optional=True),
                 display=f"{factor}*prompts_per_step")


def default_gen_batch(factor: int) -> Callable[[dict, int], dict]:
    """`resolve` hook: gen_batch_size defaults to factor x prompts_per_step."""

    def resolve(v: dict, n_prompts: int) -> dict:
        if v["gen_batch_size"] is None:
            v["gen_batch_size"] = factor * v["prompts_per_step"]
        return v

    return resolve


def fits_dataset(key: str = "prompts_per_step") -> Callable[[dict, int], None]:
    """`check` hook: v[key] distinct prompts must exist."""

    def check(v: dict, n_prompts: int) -> None:
        if v[key] > n_prompts:
            raise ValueError(f"{key} {v[key]} exceeds n_prompts {n_prompts} (a batch holds distinct prompts)")

    return check


def auto_subsets(v: dict, n_prompts: int) -> dict:
    """`resolve` hook: subsets = 0 means subsets of about steps_per_subset x prompts_per_step prompts (the released
    code)."""
    if v["subsets"] == 0:
        v["subsets"] = max(1, round(n_prompts / (v["steps_per_subset"] * v["prompts_per_step"])))
    return v


INIT_ONLY = ("prior", "subsets")  # public parameters that shape the initial state, not the kernel parameters


def kernel_record(module: str, params: Sequence[Param], *, derived: Sequence[str] = (), consumed: Sequence[str] = (),
                  **constants) -> type:
    """The kernels' parameter record (what `plan` and `observe` receive as P), derived from the public parameters,
    so that a policy declares each parameter once: a NamedTuple class `Params` of `module` whose fields are

    - `derived`: values the policy's `resolve` computes from others (no default);
    - every public parameter, its default the `Param`'s, except those only `init` reads (`INIT_ONLY`) and those
      `resolve` turns into derived fields (`consumed`);
    - `constants`: the kernel's switches and fixed numbers, with these values unless a named policy's
      `PolicySpec.fixed` sets them.

    Numba types P by its values, so one class per family of kernels is one compiled specialisation; the class is
    importable as `module.Params`, which Numba's on-disk cache needs."""
    public = [p for p in params if p.name not in INIT_ONLY and p.name not in consumed]
    fields = [*derived, *(p.name for p in public), *constants]
    repeated = sorted({f for f in fields if fields.count(f) > 1})
    if repeated:
        raise ValueError(f"{module}: kernel fields declared twice: {', '.join(repeated)}")
    defaults = (*(p.default for p in public), *constants.values())
    return collections.namedtuple("Params", fields, defaults=defaults, module=module)


@dataclass(frozen=True)
class PolicySpec:
    """A named policy: public parameters, compiled kernels, and the state they need.

    `kernel_params` (a NamedTuple class, made by `kernel_record` from the declared parameters) is what `plan` and
    `observe` receive as P: its fields are the public parameters of the same names, after `resolve`, with `fixed`
    values and the record's defaults for the rest.
    `group_size_params(n)` says how a policy without a `rollouts_per_step` spends GRPO's n rollouts per prompt (used by
    `make_policy_for_budget`). `arrays` names the optional per-prompt arrays of `layout.State` the kernels use
    (`load(values, n_prompts)` may supply some of them, e.g. features read from a file, instead of their zero
    start); `state_vars` and `step_vars` add (name, dtype) scalars to S.vars and B.vars, with starting values from
    `init_vars(P)`; `capacity(P, subset_size)` is the most slots one step can generate when the largest subset holds
    `subset_size` prompts.
    """

    name: str
    summary: str
    params: tuple[Param, ...]
    kernel_params: type
    plan: Callable
    observe: Callable
    capacity: Callable[[Any, int], int]
    fixed: dict = dataclasses.field(default_factory=dict)
    arrays: tuple[str, ...] = ()
    state_vars: tuple[tuple[str, Any], ...] = ()
    step_vars: tuple[tuple[str, Any], ...] = ()
    init_vars: Callable[[Any], dict] | None = None
    load: Callable[[dict, int], dict] | None = None
    load_params: tuple[str, ...] = ()  # public parameters only `load` reads (not kernel fields)
    loss_weighting: str = "per-prompt"  # "per-prompt" (paper Eq. 16) or "per-rollout" (token-mean)
    resolve: Callable[[dict, int], dict] | None = None  # fills values that depend on others or on n_prompts
    check: Callable[[dict, int], None] | None = None  # checks that need n_prompts
    group_size_params: Callable[[int],
                                dict] | None = None  # its parameters at GRPO's group size n (rollouts_per_step / m)
    doc: str = ""

    def defaults(self) -> dict:
        return {p.name: p.default for p in self.params}


def batch_capacity(P, subset_size: int) -> int:
    """`capacity` of a one-round step of prompts_per_step slots."""
    return P.prompts_per_step


def screening_capacity(P, subset_size: int) -> int:
    """`capacity` of a screening round over the largest subset and one training round."""
    return subset_size + P.prompts_per_step


_REGISTRY: dict[str, PolicySpec] = {}


def register(spec: PolicySpec) -> PolicySpec:
    """Add a policy to the registry after checking that its declarations fit its kernel parameters."""
    if spec.name in _REGISTRY:
        raise ValueError(f"policy {spec.name!r} is already registered")
    loose = [k for k in spec.fixed if k not in spec.kernel_params._fields]
    if loose:
        raise ValueError(f"policy {spec.name!r}: {', '.join(loose)} not fields of {spec.kernel_params.__name__}")
    for other in _REGISTRY.values():
        if other.kernel_params is spec.kernel_params and (other.plan, other.observe) != (spec.plan, spec.observe):
            raise ValueError(f"policies {other.name!r} and {spec.name!r} share parameters but not kernels")
    _REGISTRY[spec.name] = spec
    return spec


def available() -> list[str]:
    """Names of every registered policy."""
    return sorted(_REGISTRY)


def get_spec(name: str) -> PolicySpec:
    if name not in _REGISTRY:
        raise ValueError(f"unknown policy {name!r}; available: {', '.join(available())}")
    return _REGISTRY[name]


def kernels_of(params_class: type) -> tuple[Callable, Callable]:
    """The (plan, observe) kernels that take parameters of this class (several policies may share them)."""
    for spec in _REGISTRY.values():
        if spec.kernel_params is params_class:
            return spec.plan, spec.observe
    raise KeyError(f"no registered policy takes {params_class.__name__} parameters")
