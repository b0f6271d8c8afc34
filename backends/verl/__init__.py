"""verl backend (in progress): what a cures policy step is in the terms of verl 0.9.1's V1 trainer.

`mapping` holds the pure functions between `cures.policies.step.run_policy_step` and verl's data (prompt rows with a
per-slot `uid` and `__rollout_n__`, TransferQueue keys, rewards read back, the trained keys and their cures groups).
They import no verl, so every policy is tested against them on any machine. The trainer subclass that calls them
(`@register_trainer`, a replay buffer running the policy's rounds, advantages from cures' groups) is not written yet:
`cures train --backend verl` says so.
"""
