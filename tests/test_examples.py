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
def test_accelerate_configs_are_eight_process_launches(config):
    raw = yaml.safe_load(config.read_text())
    assert raw["num_processes"] == 8 and raw["distributed_type"] in ("DEEPSPEED", "FSDP")
