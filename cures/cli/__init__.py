"""The `cures` command line: the composition root. Each command group is one module of this package; heavy
subsystems (simulator, analysis, backends) are imported inside their commands, so `cures --help` stays fast."""

from __future__ import annotations

from cures.cli._app import app, fail, user_errors

__all__ = ["app", "fail", "user_errors"]

# each module registers its commands on `app`, in the order `cures --help` lists them
from cures.cli import policies, simulate, sweep, bench, report, train  # noqa: E402, F401, I001
