"""Names that changed in cures 0.3, so that one vocabulary holds across the policy API, the simulator, the sweep
grids and both trainers: `prompts_per_step` (m, the prompts a policy step plans) and `rollouts_per_step` (N, the
rollouts it spends; the paper's budget), as `cures train` has always called them, and the estimator `dr_grpo`, as
TRL spells Dr. GRPO. An old name is refused (never silently mapped), with a message that gives the new one."""

from __future__ import annotations

from collections.abc import Iterable

RENAMED = {"batch_size": "prompts_per_step", "budget": "rollouts_per_step"}  # setting or parameter: old -> new
RENAMED_VALUES = {"estimator": {"drgrpo": "dr_grpo"}}  # setting -> {old value: new value}
RENAMED_OPTIONS = {f"--{old.replace('_', '-')}": f"--{new.replace('_', '-')}" for old, new in RENAMED.items()}


def renamed_message(name: str, prefix: str = "", moved: bool = False) -> str | None:
    """`'<prefix>batch_size' was renamed '<prefix>prompts_per_step' in cures 0.3` for an old name, else None. `moved`:
    the old name was given as a policy parameter (`policy.budget`), and the new one is a setting of its own."""
    new = RENAMED.get(name)
    if new is None:
        return None
    if moved:
        return f"'{prefix}{name}' was renamed '{new}' in cures 0.3 (a setting of its own, not a policy parameter)"
    return f"'{prefix}{name}' was renamed '{prefix}{new}' in cures 0.3"


def refuse_renamed(names: Iterable[str], where: str = "", prefix: str = "", moved: bool = False) -> None:
    """ValueError for the first old name among `names` (in sorted order), `where` ahead of the message."""
    for name in sorted(n for n in names if isinstance(n, str)):
        message = renamed_message(name, prefix, moved)
        if message is not None:
            raise ValueError(f"{where}{message}")


def refuse_renamed_value(setting: str, value, where: str = "") -> None:
    """ValueError when `value` is an old value of `setting` (e.g. estimator 'drgrpo')."""
    new = RENAMED_VALUES.get(setting, {}).get(value) if isinstance(value, str) else None
    if new is not None:
        raise ValueError(f"{where}{setting} {value!r} was renamed {new!r} in cures 0.3")
