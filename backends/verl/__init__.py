"""verl backend: a cures policy inside verl 0.9.1's V1 trainer (sync mode), `cures train --backend verl`.

`mapping` holds the pure functions between `cures.policies.step.run_policy_step` and verl's data (prompt rows with a
per-slot `uid` and `__rollout_n__`, TransferQueue keys, rewards read back, the trained keys with cures' groups and
their advantages); it imports no verl, so every policy is tested against it on any machine. `trainer` (verl needed)
holds `CuresTrainer`, registered as trainer mode `cures`, and its replay buffer, which runs each policy step; `main`
composes and checks a verl config and launches verl's task runner with it.
"""
