"""Compiled entry points that run any policy by its kind code.

Both callers go through these two functions: the simulator's compiled loop calls them directly, and
`cures.policies.Policy.plan/observe` call them from Python. A new policy adds one branch to each.
"""

from numba import njit

from cures.policies import cures, dapo, greso, grpo, gvm, knapsack, mopps, released, speed
from cures.policies.kernels import AWAITING, CURES, CURES_RELEASED, DAPO, GRESO, GRPO, GVM, KNAPSACK, MOPPS, SPEED


@njit(cache=True)
def plan_round(P, S, B, rng):
    """Write the next generation round of the current step into B."""
    k = P.kind
    if k == GRPO:
        grpo.plan(P, S, B, rng)
    elif k == CURES:
        cures.plan(P, S, B, rng)
    elif k == CURES_RELEASED:
        released.plan(P, S, B, rng)
    elif k == DAPO:
        dapo.plan(P, S, B, rng)
    elif k == GVM:
        gvm.plan(P, S, B, rng)
    elif k == SPEED:
        speed.plan(P, S, B, rng)
    elif k == MOPPS:
        mopps.plan(P, S, B, rng)
    elif k == GRESO:
        greso.plan(P, S, B, rng)
    elif k == KNAPSACK:
        knapsack.plan(P, S, B, rng)
    else:
        raise ValueError("unknown policy kind")


@njit(cache=True)
def observe_round(P, S, B, rng):
    """Consume the successes of the last round; True when the training step is complete."""
    B.reg[AWAITING] = 0
    k = P.kind
    if k == GRPO:
        return grpo.observe(P, S, B, rng)
    elif k == CURES:
        return cures.observe(P, S, B, rng)
    elif k == CURES_RELEASED:
        return released.observe(P, S, B, rng)
    elif k == DAPO:
        return dapo.observe(P, S, B, rng)
    elif k == GVM:
        return gvm.observe(P, S, B, rng)
    elif k == SPEED:
        return speed.observe(P, S, B, rng)
    elif k == MOPPS:
        return mopps.observe(P, S, B, rng)
    elif k == GRESO:
        return greso.observe(P, S, B, rng)
    elif k == KNAPSACK:
        return knapsack.observe(P, S, B, rng)
    raise ValueError("unknown policy kind")
