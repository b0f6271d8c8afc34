"""TRL backend: variable rollouts per prompt for GRPOTrainer, driven by `cures.policies`.

Work in progress (see the README's status): per-slot advantages, rewards and data are here; the trainer subclass
and `cures train` are not yet.
"""
