"""Compiled entry points that run any policy by its kind code.

Both callers go through these two functions: the simulator's compiled loop calls them directly, and
`cures.policies.Policy.plan/observe` call them from Python. A new policy adds one branch to each.
"""

from numba import njit

from cures.policies import cures, grpo, released
from cures.policies.kernels import AWAITING, CURES, CURES_RELEASED, GRPO


@njit(cache=True)
def plan_round(P, S, B, rng):
    """Write the next generation round of the current step into B."""
    if P.kind == GRPO:
        grpo.plan(P, S, B, rng)
    elif P.kind == CURES:
        cures.plan(P, S, B, rng)
    elif P.kind == CURES_RELEASED:
        released.plan(P, S, B, rng)
    else:
        raise ValueError("unknown policy kind")


@njit(cache=True)
def observe_round(P, S, B, rng):
    """Consume the successes of the last round; True when the training step is complete."""
    B.reg[AWAITING] = 0
    if P.kind == GRPO:
        return grpo.observe(P, S, B, rng)
    elif P.kind == CURES:
        return cures.observe(P, S, B, rng)
    elif P.kind == CURES_RELEASED:
        return released.observe(P, S, B, rng)
    raise ValueError("unknown policy kind")
