"""Compiled entry points that run any policy, chosen by the type of its parameters.

Both callers go through these two functions: the simulator's compiled loop calls them directly, and
`cures.policies.Policy.plan/observe` call them from Python. Each policy's kernel parameters are a NamedTuple class of
its own (`PolicySpec.kernel_params`), so Numba compiles one specialisation per policy and compiling one policy
never compiles the others.

Compile time: Numba optimises and emits machine code for every compiled function together with everything it calls,
so each level of wrappers around a policy costs about as much as the policy again. Here there are none: the two
entry points are inlined into their caller (the simulator's loop, or the entry compiled for a call from Python), and
the overloads' implementation is the policy's own `plan`/`observe` (its Python function), not a function calling its
compiled dispatcher. That took the first `cures simulate` from 27 s to 22 s (`python tests/checkout_timings.py cold`).
"""

import importlib
import pkgutil
from pathlib import Path

from numba import typeof, types
from numba.extending import overload

from cures._jit import njit
from cures.policies.spec import kernels_of

# Every module of this package except the shared machinery below is one policy file, which registers its policies
# when imported: adding a policy is adding its file.
MACHINERY = frozenset({"core", "dispatch", "kernels", "layout", "spec", "step"})
POLICY_MODULES = tuple(sorted(m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)])
                              if m.name not in MACHINERY and not m.name.startswith("_")))
for _module in POLICY_MODULES:
    importlib.import_module(f"cures.policies.{_module}")


def _policy_plan(P, S, B, rng):  # typed by the overloads below
    raise NotImplementedError


def _policy_observe(P, S, B, rng):
    raise NotImplementedError


@overload(_policy_plan)
def _select_plan(P, S, B, rng):  # the policy's plan itself, compiled here (see the module's note on compile time)
    if not isinstance(P, types.BaseNamedTuple):
        return None
    return kernels_of(P.instance_class)[0].py_func


@overload(_policy_observe)
def _select_observe(P, S, B, rng):
    if not isinstance(P, types.BaseNamedTuple):
        return None
    return kernels_of(P.instance_class)[1].py_func


@njit(cache=True, inline="always")
def plan_round(P, S, B, rng):
    """Write the next generation round of the current step into B."""
    _policy_plan(P, S, B, rng)


@njit(cache=True, inline="always")
def observe_round(P, S, B, rng):
    """Consume the successes of the latest round; True when the training step is complete."""
    B.vars.awaiting = False
    return _policy_observe(P, S, B, rng)


def specialised(dispatcher, *args):
    """The compiled `dispatcher(*args)` for these argument types, callable from Python without re-typing the
    arguments at every call (compiled, or loaded from the cache, once)."""
    return dispatcher.compile(tuple(typeof(a) for a in args))
