"""What a training run meets on a cluster, beyond signals and kills (test_trl_trainer.py): reward functions that
misbehave (one that raises, returns an infinite reward or the wrong count stops the step with a message naming it
and the prompt, one line from `cures train`, exit 2; None is an unscorable rollout, counted in
`cures/unscorable_rollouts` and a failure for the posterior, never a success), and a disk that fills up while TRL
writes a checkpoint."""

import pytest
import reward_fixtures
from test_trl_trainer import TINY, cures_train_in_process
from trl_helpers import make_trainer

from cures.backends.trl.trainer import RewardFunctionError


def trainer_with(func, tmp_path):
    trainer, _, state = make_trainer("grpo", rollouts_per_step=16, prompts_per_step=4, steps=2, tmp_path=tmp_path)
    trainer.reward_funcs[0] = func
    trainer.reward_func_names[0] = func.__name__
    return trainer, state


@pytest.mark.parametrize("func, message", [
    (reward_fixtures.raising_reward, "reward function 'raising_reward' raised KeyError ('answer') on a batch of 16 "
                                     "completions, the first for prompt '"),
    (reward_fixtures.infinite_reward, "reward function 'infinite_reward' returned inf for the completion of prompt '"),
    (reward_fixtures.short_reward, "The reward function 'short_reward' returned 15 rewards, but 16 were expected"),
])
def test_a_misbehaving_reward_function_stops_the_step_naming_itself_and_the_prompt(tmp_path, func, message):
    trainer, state = trainer_with(func, tmp_path)
    with pytest.raises(RewardFunctionError) as info:
        trainer.train()
    assert message in str(info.value), str(info.value)
    assert state.steps_done == 0  # the step did not reach the posterior


def test_a_reward_function_past_reward_timeout_stops_the_step_naming_itself(tmp_path):
    import time

    trainer, state = trainer_with(reward_fixtures.slow_reward, tmp_path)
    trainer.args.reward_timeout = 0.5
    t0 = time.perf_counter()
    message = r"reward function 'slow_reward' took longer than reward_timeout=0.5 s on a batch of 16 completions"
    with pytest.raises(RewardFunctionError, match=message):
        trainer.train()
    assert time.perf_counter() - t0 < 25 and state.steps_done == 0  # stopped long before the function's 30 s


def test_unscorable_rollouts_are_counted_and_fail_for_the_posterior(tmp_path):
    trainer, state = trainer_with(reward_fixtures.half_unscorable_reward, tmp_path)
    before = state.arrays.alpha.copy(), state.arrays.beta.copy()
    trainer.train()
    logged = [h["cures/unscorable_rollouts"] for h in trainer.state.log_history if "cures/unscorable_rollouts" in h]
    assert logged == [8.0, 8.0]  # every other completion of 16 in each of 2 steps
    assert (state.arrays.alpha - before[0]).sum() == 16 and (state.arrays.beta - before[1]).sum() == 16


def test_cures_train_reports_a_raising_reward_function_in_one_line(tmp_path):
    args = [a if a != "parity" else "reward_fixtures.raising_reward" for a in TINY]  # TINY's --reward_funcs parity
    result = cures_train_in_process([*args, "--output_dir", str(tmp_path), "--max_steps", "1"])
    assert result.exit_code == 2, result.output
    errors = [line.split("error: ", 1)[1] for line in result.stderr.splitlines() if "error: " in line]
    assert len(errors) == 1 and errors[0].startswith("reward function 'raising_reward' raised KeyError"), result.stderr
    assert "Traceback" not in result.stderr


def test_a_full_disk_while_checkpointing_ends_in_one_line_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    """ENOSPC inside TRL's own checkpoint writer (the optimizer's torch.save of checkpoint-4): one line naming the
    file, exit 2; checkpoint-2 stays complete, the records keep every finished step, and a resume finishes the run."""
    import errno
    import json

    import pandas as pd
    import torch

    real_save = torch.save

    def full_disk(obj, f, *args, **kwargs):
        if "checkpoint-4" in str(f):
            raise OSError(errno.ENOSPC, "No space left on device", str(f))
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", full_disk)
    args = [*TINY, "--output_dir", str(tmp_path), "--n_problems", "12", "--policy", "grpo", "--prompts_per_step",
            "4", "--rollouts_per_step", "16", "--max_steps", "4", "--save_strategy", "steps", "--save_steps", "2",
            "--report_to", "none"]
    result = cures_train_in_process(args)
    assert result.exit_code == 2, result.output
    errors = [line.split("error: ", 1)[1] for line in result.stderr.splitlines() if "error: " in line]
    assert len(errors) == 1 and errors[0].startswith("No space left on device (") and "checkpoint-4" in errors[0]
    from cures.backends.trl.trainer import resume_point

    found = resume_point(tmp_path)
    assert found is not None and found[0].endswith("checkpoint-2") and found[1].steps_done == 2
    assert set(pd.read_parquet(tmp_path / "rollouts.parquet")["step"]) >= {0, 1, 2}
    monkeypatch.setattr(torch, "save", real_save)
    resumed = cures_train_in_process([*args, "--resume_from_checkpoint", "true"])
    assert resumed.exit_code == 0, resumed.stderr
    assert json.loads((tmp_path / "summary.json").read_text())["steps"] == 4
