"""TRL backend: a drop-in `GRPOTrainer` whose prompts and rollouts per prompt come from a `cures` policy.

`CuresGRPOConfig` (config.py) is TRL's `GRPOConfig` plus the policy; `CuresGRPOTrainer` (trainer.py) runs one policy
step (every screening, refill and training round) per TRL generation batch; `run.train` is `cures train`;
`score_norms` measures the per-response norms of Eq. 21.
"""

from cures.backends.trl.config import CuresGRPOConfig
from cures.backends.trl.trainer import CuresGRPOTrainer

__all__ = ["CuresGRPOConfig", "CuresGRPOTrainer"]
