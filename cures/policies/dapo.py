"""`dapo`: DAPO dynamic sampling (arXiv 2503.14476), a post-hoc zero-variance filter with refills and no memory.

Each round draws `gen_batch_size` prompts (epoch-wise shuffled) with n rollouts each and keeps the groups whose
rewards are not all equal (0 < s < n for binary rewards); rounds repeat until `prompts_per_step` groups survive, and the
step trains on exactly the first `prompts_per_step` of them (verl-recipe dapo/dapo_ray_trainer.py, volcengine/verl
FilterGroupsConfig). Where verl raises an error once `max_gen_batches` rounds are reached, this policy trains on
the groups it has and records the shortfall (`state.vars.short_steps`, `short_groups`). Every generated rollout
counts, so the expected cost per kept group is n / (1 - f0) with f0 the zero-variance fraction.
"""

from cures._jit import njit
from cures.policies.kernels import (
    finish_step,
    keep_mixed_groups,
    record_shortfall,
    uniform_round,
    update_posterior_from_round,
)
from cures.policies.spec import (
    Param,
    PolicySpec,
    default_gen_batch,
    fits_dataset,
    gen_batch_param,
    integer,
    kernel_record,
    register,
    reporting_prior,
)

PARAMS = (
    Param("prompts_per_step", 64, "mixed groups to train per step (train_batch_size)", integer(1)),
    Param("n", 8, "rollouts per prompt", integer(2)),
    gen_batch_param(3, "prompts per generation round (verl's 1536 / 512)"),
    Param("max_gen_batches", 10, "generation rounds per step before training on what there is", integer(1)),
    reporting_prior(),
)
Params = kernel_record(__name__, PARAMS, decay=1.0)


@njit(cache=True)
def plan(P, S, B, rng):
    uniform_round(S, B, rng, P.gen_batch_size, P.n)


@njit(cache=True)
def observe(P, S, B, rng):
    update_posterior_from_round(S, B, P.decay)
    keep_mixed_groups(B, P.prompts_per_step)
    if B.vars.n_groups < P.prompts_per_step and B.vars.n_rounds < P.max_gen_batches:
        return False  # refill
    record_shortfall(S, B, P.prompts_per_step)
    finish_step(S, B)
    return True


def _capacity(P, subset_size):
    return P.gen_batch_size * P.max_gen_batches


SPEC = register(PolicySpec(
    name="dapo",
    summary="DAPO dynamic sampling: drop all-equal groups, refill until prompts_per_step mixed groups (capped, no "
                           "crash).",
    params=PARAMS,
    kernel_params=Params,
    plan=plan,
    observe=observe,
    capacity=_capacity,
    loss_weighting="per-rollout",
    check=fits_dataset("gen_batch_size"),
    resolve=default_gen_batch(3),
    doc=__doc__,
))
