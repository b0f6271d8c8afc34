"""cures: curriculum policies for reinforcement learning on verifiable rewards.

The core of the toolkit: the Beta pass-rate posterior (`cures.posterior`), the closed forms of the CurES paper
(`cures.theory`, arXiv 2510.01037) and every prompt-sampling / rollout-allocation policy behind one interface
(`cures.policies`). Nothing here imports the simulator, the analysis code or the training backends.
"""

from cures._numba_cache import invalidate_stale_kernels

__version__ = "0.1.0"

invalidate_stale_kernels()

__all__ = ["__version__"]
