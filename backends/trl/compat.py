"""The one place that knows which TRL this backend was written against."""

from __future__ import annotations

TRL_VERSION = "1.16.0"


def check_trl_version() -> None:
    """The backend overrides private GRPOTrainer methods of exactly this TRL release."""
    import trl

    if trl.__version__ != TRL_VERSION:
        raise ValueError(f"cures' TRL backend needs trl=={TRL_VERSION} (it overrides private GRPOTrainer methods); "
                         f"found trl {trl.__version__}: pip install 'cures[train]'")
