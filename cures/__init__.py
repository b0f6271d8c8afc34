"""cures: curriculum policies for reinforcement learning on verifiable rewards.

The core of the toolkit: the Beta pass-rate posterior (`cures.posterior`), the closed forms of the CurES paper
(`cures.theory`, arXiv 2510.01037) and every prompt-sampling / rollout-allocation policy behind one interface
(`cures.policies`). Nothing here imports the simulator, the analysis code or the training backends.
"""

from pathlib import Path

from cures import _numba_cache

_CHECKOUT = Path(__file__).resolve().parent.parent
if (_CHECKOUT / "pyproject.toml").is_file() and (_CHECKOUT / "simulator" / "__init__.py").is_file():
    # Run from a source checkout (PYTHONPATH=checkout, or an editable install): its top-level simulator/, analysis/
    # and backends/ are cures.simulator, cures.analysis and cures.backends, as pyproject.toml's package-dir installs
    # them in a wheel.
    __path__.append(str(_CHECKOUT))

__version__ = "0.3.2"

_numba_cache.configure()  # before any kernel is defined: Numba's cache directory for these sources

__all__ = ["__version__"]
