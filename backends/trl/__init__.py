"""TRL backend: variable rollouts per prompt for GRPOTrainer, driven by `cures.policies`.

`trainer.CuresGRPOTrainer` plans every generation round from the policy; `run.train` is `cures train`. Policies with
screening or refill rounds are not supported by this backend yet (they are refused with a clear error).
"""
