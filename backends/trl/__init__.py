"""TRL backend: variable rollouts per prompt for GRPOTrainer, driven by `cures.policies`.

`trainer.CuresGRPOTrainer` runs one policy step (every screening, refill and training round) per TRL generation
batch; `run.train` is `cures train`; `score_norms` measures the per-response norms of Eq. 21.
"""
