"""`grpo`: uniform GRPO, the baseline every curriculum must beat at equal rollouts (arXiv 2402.03300).

Each step takes the next m prompts of an epoch-wise shuffled pass over the data (TRL's RepeatSampler: one random
permutation per pass, incomplete last chunk dropped) and gives each the same n = N / m rollouts. The Beta posterior is
updated with the results (Eq. 23-24) only so that callers can report p_hat; it never influences the plan.
"""

from cures._jit import njit
from cures.policies.kernels import complete_single_round_step, uniform_round
from cures.policies.spec import (
    Param,
    PolicySpec,
    batch_capacity,
    fits_dataset,
    integer,
    kernel_record,
    register,
    reporting_prior,
)

PARAMS = (
    Param("prompts_per_step", 64, "prompts per training step m", integer(1)),
    Param("rollouts_per_step", None, "rollouts per training step N (default 8 x prompts_per_step)", integer(2,
                                                                                                            optional=True),
          display="8*prompts_per_step"),
    reporting_prior(),
)
Params = kernel_record(__name__, PARAMS, decay=1.0)  # the reported posterior never forgets


@njit(cache=True)
def plan(P, S, B, rng):
    uniform_round(S, B, rng, P.prompts_per_step, P.rollouts_per_step // P.prompts_per_step)


@njit(cache=True)
def observe(P, S, B, rng):
    return complete_single_round_step(S, B, P.decay)


def _check(v, n_prompts):
    m, rollouts_per_step = v["prompts_per_step"], v["rollouts_per_step"]
    fits_dataset()(v, n_prompts)
    if rollouts_per_step % m or rollouts_per_step // m < 2:
        raise ValueError(f"rollouts_per_step {rollouts_per_step} must be a multiple of prompts_per_step {m} with at "
                         f"least 2 rollouts per prompt")


SPEC = register(PolicySpec(
    name="grpo",
    summary="Uniform GRPO: epoch-shuffled prompts, fixed n = rollouts_per_step / prompts_per_step rollouts each.",
    params=PARAMS,
    kernel_params=Params,
    plan=plan,
    observe=observe,
    capacity=batch_capacity,
    loss_weighting="per-rollout",
    check=_check,
    doc=__doc__,
))
