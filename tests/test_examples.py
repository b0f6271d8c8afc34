"""Every recipe in examples/ parses with `cures train`'s parser: each key is a real option with a valid value."""

from pathlib import Path

import pytest
import yaml

from cures.backends.trl.run import parse_args

EXAMPLES = Path(__file__).parent.parent / "examples"


@pytest.mark.parametrize("recipe", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_recipe_parses(recipe):
    script, args, model_args, _ = parse_args(["--config", str(recipe)])
    raw = yaml.safe_load(recipe.read_text())
    assert args.policy == raw["policy"] and model_args.model_name_or_path == raw["model_name_or_path"]
    assert script.dataset_name == raw["dataset_name"]
    assert "NOT RUN" in recipe.read_text() or "run on" in recipe.read_text()  # each says whether it was run


@pytest.mark.parametrize("config", sorted((EXAMPLES / "accelerate").glob("*.yaml")), ids=lambda p: p.name)
def test_accelerate_configs_load_and_launch_eight_processes_a_node(config):
    """accelerate's own loader reads each (an unknown key or value fails there), 8 GPUs a machine."""
    from accelerate.commands.config.config_args import ClusterConfig

    loaded = ClusterConfig.from_yaml_file(str(config))
    assert loaded.num_processes == 8 * loaded.num_machines
    assert loaded.distributed_type in ("DEEPSPEED", "FSDP") and "NOT RUN" in config.read_text()
    if loaded.num_machines > 1:
        assert loaded.main_process_ip and loaded.main_process_port
