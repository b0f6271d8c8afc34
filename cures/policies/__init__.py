"""Every prompt-sampling / rollout-allocation policy behind one interface.

    from cures.policies import available, make_policy
    policy = make_policy("cures", prompts_per_step=64, rollouts_per_step=512, tau=0.1)
    state = policy.init(n_prompts=10_000, seed=0)
    plan = policy.plan(state)             # prompt_ids, n_rollouts for this generation round
    done = policy.observe(state, successes)
    batch = policy.training_batch(state)  # once done: which slots train, in which groups

Where each policy lives: `grpo.py` (uniform GRPO), `cures.py` (cures, cures-paper, cures-sampling,
cures-allocation), `released.py` (cures-released), and one file per peer (`dapo.py`, `gvm.py`, `speed.py`,
`mopps.py`, `greso.py`, `knapsack.py`, `vip.py`, `reinforce_ada.py`, `pods.py`, `pilot_commit.py`). Their
compiled kernels share the building blocks of `kernels.py` and the memory layout of `layout.py`, and are reached
through `dispatch.py`, the entry point of compiled callers such as the simulator.
"""

from cures.policies.core import Plan, Policy, PolicyState, TrainingBatch, make_policy, make_policy_for_budget
from cures.policies.spec import PolicySpec, available, get_spec

__all__ = ["Plan", "Policy", "PolicySpec", "PolicyState", "TrainingBatch", "available", "get_spec", "make_policy",
           "make_policy_for_budget"]
