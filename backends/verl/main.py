"""`cures train --backend verl` (or `python -m cures.backends.verl.main`): verl 0.9.1's PPO entry point with the
cures trainer.

    cures train --backend verl --config examples/verl/qwen2.5-math-1.5b-cures.yaml [key=value ...]

`--config` names a Hydra primary config in verl's style (`defaults: [ppo_trainer, _self_]`, searched in
`pkg://verl.trainer.config`, plus a `cures:` section); without it, `config/cures_trainer.yaml` of this package.
The `key=value` arguments are Hydra overrides, as `python -m verl.trainer.main_ppo` takes them (`+key=value` adds a
key, e.g. `+cures.params.tau=0.2`). The composed config is checked here, before Ray starts (one line, exit 2 for a
bad setting); then verl's `run_ppo` runs `CuresTaskRunner`, verl's V1 task runner, in whose Ray actor the cures
trainer registers itself.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

warnings.filterwarnings("ignore", message=r".* engine is not available", category=UserWarning)  # optional engines

import ray  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.errors import HydraException  # noqa: E402
from omegaconf import DictConfig  # noqa: E402
from omegaconf.errors import OmegaConfBaseException  # noqa: E402
from verl.trainer.main_ppo import TaskRunnerV1, run_ppo  # noqa: E402

DEFAULT_CONFIG = Path(__file__).parent / "config" / "cures_trainer.yaml"


def compose_config(argv: list[str]) -> DictConfig:
    """verl's config for these arguments (`--config FILE` and Hydra overrides), checked for the cures trainer."""
    from cures.backends.verl.trainer import MODE, CuresSettings

    argv = list(argv)
    path = DEFAULT_CONFIG
    if "--config" in argv:
        i = argv.index("--config")
        if i + 1 >= len(argv):
            raise ValueError("--config needs a file: a Hydra config with defaults [ppo_trainer, _self_]")
        path = Path(argv[i + 1])
        del argv[i : i + 2]
        if not path.is_file():
            raise ValueError(f"--config {path}: file not found")
    flags = [a for a in argv if a.startswith("--")]
    if flags:
        raise ValueError(f"unknown option {flags[0]}: the verl backend takes --config FILE and Hydra overrides "
                         "key=value (see python -m verl.trainer.main_ppo --help)")
    try:
        with initialize_config_dir(config_dir=str(path.resolve().parent), version_base=None):
            config = compose(config_name=path.stem, overrides=argv)
    except (HydraException, OmegaConfBaseException) as exc:
        raise ValueError(f"--config {path}: {str(exc).splitlines()[0]}") from None
    if config.trainer.v1.trainer_mode != MODE:
        raise ValueError(f"--config {path}: trainer.v1.trainer_mode is {config.trainer.v1.trainer_mode!r}; the cures "
                         f"backend needs {MODE!r}")
    if not config.trainer.get("use_v1", True):
        raise ValueError(f"--config {path}: trainer.use_v1 must be true (the cures trainer is a V1 trainer)")
    settings = CuresSettings.from_config(config)
    settings.make_policy()  # an unknown policy or a bad parameter fails here, before Ray starts
    return config


@ray.remote
class CuresTaskRunner(TaskRunnerV1.__ray_actor_class__):
    """verl's V1 task runner; importing the trainer module in its actor registers trainer mode `cures` there."""

    def run(self, config: DictConfig):
        import cures.backends.verl.trainer  # noqa: F401  (registers the trainer)

        return super().run(config)


def train(argv: list[str]) -> None:
    """Compose and check the config, then train with verl (GPUs needed: verl's resource pool and rollout servers)."""
    config = compose_config(argv)
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import validate_config
    from verl.utils.device import auto_set_device

    auto_set_device(config)
    try:
        validate_config(config=config, use_reference_policy=need_reference_policy(config),
                        use_critic=need_critic(config))
    except (AssertionError, ValueError, HydraException) as exc:  # verl checks its settings with asserts
        lines = [line for line in str(exc).splitlines() if line.strip()] or [repr(exc)]
        raise ValueError(f"verl rejected the config: {lines[-2] if len(lines) > 1 else lines[0]}") from None
    check_local_gpus(config)
    run_ppo(config, task_runner_class=CuresTaskRunner)


def check_local_gpus(config: DictConfig, visible: int | None = None) -> None:
    """A one-node run that starts its own Ray needs trainer.n_gpus_per_node GPUs on this machine: without them
    verl's resource pool waits for GPUs that never come (and TransferQueue's start can hang on a small CPU-only
    machine), so say so before Ray starts. A run joining a Ray cluster (ray_kwargs.ray_init.address or RAY_ADDRESS)
    or spanning several nodes is left to Ray, whose driver need not hold GPUs."""
    import os

    ray_init = config.get("ray_kwargs", {}).get("ray_init", {}) or {}
    if int(config.trainer.nnodes) != 1 or ray_init.get("address") or os.environ.get("RAY_ADDRESS"):
        return
    if visible is None:
        import torch

        visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
    want = int(config.trainer.n_gpus_per_node)
    if visible < want:
        raise ValueError(f"trainer.n_gpus_per_node={want} but this machine has {visible} GPU(s) visible; verl's "
                         "trainer needs them (its rollout runs on vLLM or SGLang servers): set trainer.n_gpus_per_node "
                         "or run on a GPU machine")


def main() -> None:
    try:
        train(sys.argv[1:])
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
