"""Compiled entry points that run any policy by its kind code.

Both callers go through these two functions: the simulator's compiled loop calls them directly, and
`cures.policies.Policy.plan/observe` call them from Python. `kind` is compiled as a constant (`numba.literally`),
so each policy gets its own specialisation and compiling one policy never compiles the others; a compiled caller
takes `kind` as its own argument and calls `numba.literally(kind)` too.
"""

from numba import literally, njit, typeof, types
from numba.extending import overload

from cures.policies import cures, dapo, greso, grpo, gvm, knapsack, mopps, released, speed
from cures.policies.kernels import AWAITING, CURES, CURES_RELEASED, DAPO, GRESO, GRPO, GVM, KNAPSACK, MOPPS, SPEED

MODULES = {GRPO: grpo, CURES: cures, CURES_RELEASED: released, DAPO: dapo, GVM: gvm, SPEED: speed, MOPPS: mopps,
           GRESO: greso, KNAPSACK: knapsack}


def _policy_plan(kind, P, S, B, rng):  # typed by the overload below
    raise NotImplementedError


def _policy_observe(kind, P, S, B, rng):
    raise NotImplementedError


@overload(_policy_plan, prefer_literal=True)
def _select_plan(kind, P, S, B, rng):
    if not isinstance(kind, types.IntegerLiteral):
        return None
    plan = MODULES[kind.literal_value].plan

    def impl(kind, P, S, B, rng):
        plan(P, S, B, rng)

    return impl


@overload(_policy_observe, prefer_literal=True)
def _select_observe(kind, P, S, B, rng):
    if not isinstance(kind, types.IntegerLiteral):
        return None
    observe = MODULES[kind.literal_value].observe

    def impl(kind, P, S, B, rng):
        return observe(P, S, B, rng)

    return impl


@njit(cache=True)
def plan_round(kind, P, S, B, rng):
    """Write the next generation round of the current step into B (`kind` must equal P.kind)."""
    literally(kind)
    _policy_plan(kind, P, S, B, rng)


@njit(cache=True)
def observe_round(kind, P, S, B, rng):
    """Consume the successes of the last round; True when the training step is complete."""
    literally(kind)
    B.reg[AWAITING] = 0
    return _policy_observe(kind, P, S, B, rng)


def specialised(dispatcher, kind: int, *args):
    """The compiled `dispatcher(kind, *args)` for this constant kind and these argument types, callable from Python.

    A plain Python call would type `kind` as int64, fail the `literally` request and recompile on every call; this
    compiles (or loads from the cache) the literal specialisation once and returns its entry point.
    """
    return dispatcher.compile((types.literal(kind), *(typeof(a) for a in args)))
