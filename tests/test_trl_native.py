"""The TRL-native surface: bounded micro-batches that add up to TRL's loss, correct reward metrics, batched greedy
and avg@k evaluation, config checks, LoRA, and the README's Python example."""

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from threads import thread_env
from trl import GRPOTrainer
from trl_helpers import arith_prompts, make_trainer

from cures.backends.trl.config import CuresGRPOConfig
from cures.backends.trl.microbatch import REAL, loss_multipliers, micro_batches


def _piece(trainer):
    """One policy step's training piece, as TRL's `_prepare_inputs` serves it, with its last row made a filler."""
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1
    piece = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    piece[REAL][-1] = False
    piece["completion_mask"][-1] = 0
    piece["num_items_in_batch"] = piece["completion_mask"].sum()
    return piece


def _grads(model):
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


@pytest.mark.parametrize("loss_type", ["dapo", "grpo", "bnpo", "dr_grpo"])
def test_micro_batches_add_up_to_trls_loss_on_the_real_rows(tmp_path, loss_type):
    """The accumulated gradient of micro-batches of 3 rows equals the gradient of TRL's own loss on the piece's
    real rows (filler rows neither contribute nor dilute), for each kind of loss normalisation."""
    trainer, _, _ = make_trainer("speed", rollouts_per_step=16, prompts_per_step=4, steps=1, tmp_path=tmp_path,
                                 micro_batch=3,
                                 loss_type=loss_type, policy_params={"gen_batch_size": 6})
    piece = _piece(trainer)
    model = trainer.model
    rows = piece["completion_ids"].shape[0]
    assert rows > 3 and not piece[REAL].all()

    model.zero_grad()
    trainer._prepare_inputs = lambda batch: batch if trainer._trl.in_micro_batch else piece
    trainer.training_step(model, None, None)
    micro = _grads(model)

    model.zero_grad()
    real = piece[REAL]
    whole = {k: (v[real] if isinstance(v, torch.Tensor) and v.ndim > 0 else v) for k, v in piece.items()}
    GRPOTrainer.compute_loss(trainer, model, whole).backward()
    torch.testing.assert_close(micro, _grads(model), rtol=1e-4, atol=1e-7)


def test_micro_batches_are_contiguous_near_equal_and_complete():
    inputs = {"completion_ids": torch.arange(11)[:, None], "completion_mask": torch.ones(11, 1),
              REAL: torch.arange(11) < 10, "num_items_in_batch": torch.tensor(10), "names": list("abcdefghijk")}
    pieces = micro_batches(inputs, 4)
    assert [p["completion_ids"].shape[0] for p in pieces] == [4, 3, 4]
    assert torch.cat([p["completion_ids"] for p in pieces]).flatten().tolist() == list(range(11))
    assert "".join("".join(p["names"]) for p in pieces) == "abcdefghijk"
    assert all(p["num_items_in_batch"] is inputs["num_items_in_batch"] for p in pieces)
    assert loss_multipliers("dapo", pieces) == [1.0, 1.0, 1.0]
    np.testing.assert_allclose(loss_multipliers("grpo", pieces), [4 * 3 / 10, 3 * 3 / 10, 4 * 3 / 10])
    with pytest.raises(ValueError, match="not supported"):
        loss_multipliers("bogus", pieces)


def test_every_forward_backward_holds_at_most_the_micro_batch(tmp_path):
    """SPEED at m = 4 trains 96 rollouts per step; with per_device_train_batch_size=8 no forward with gradients
    holds more than 8 rows, and the micro-batches cover every trained row once."""
    trainer, policy, state = make_trainer("speed", rollouts_per_step=16, prompts_per_step=4, steps=2, tmp_path=tmp_path,
                                          micro_batch=8)
    rows = []
    trainer.model.register_forward_pre_hook(
        lambda mod, args, kw: rows.append(kw["input_ids"].shape[0]) if torch.is_grad_enabled() else None,
        with_kwargs=True)
    trainer.train()
    trained = [h["cures/rollouts_trained"] for h in trainer.state.log_history if "cures/rollouts_trained" in h]
    assert max(trained) > 8 and max(rows) <= 8
    assert sum(rows) >= sum(trained)  # every trained row went through a forward/backward (plus padding)


def test_logged_reward_metrics_are_those_of_the_real_rollouts(tmp_path):
    """TRL's `reward`, `reward_std`, `frac_reward_zero_std` and per-function means are replaced by the values over
    every rollout the step generated (TRL computed them over padded copies in dummy groups)."""
    from trl.trainer.utils import nanstd

    from cures.backends.trl.rewards import parity_reward

    trainer, policy, state = make_trainer("dapo", rollouts_per_step=16, prompts_per_step=4, steps=3, tmp_path=tmp_path,
                                          policy_params={"gen_batch_size": 6})
    seen = []

    def reward(completions, **kw):
        out = parity_reward(completions)
        if trainer.model.training:
            seen.append((state.steps_done, out))
        return out

    trainer.reward_funcs[0] = reward
    name = trainer.reward_func_names[0]
    trainer.train()
    logs = [h for h in trainer.state.log_history if "reward" in h]
    assert len(logs) == 3
    for step, log in enumerate(logs):
        r = torch.tensor([x for s, out in seen if s == step for x in out])
        assert r.numel() == log["cures/rollouts_generated"]
        assert log["reward"] == pytest.approx(r.mean().item()) == pytest.approx(log[f"rewards/{name}/mean"])
        assert log["reward_std"] == pytest.approx(nanstd(r).item())
        assert log["frac_reward_zero_std"] == log["cures/zero_variance_fraction"]


def test_evaluation_is_batched_greedy_and_avg_at_k(tmp_path):
    """evaluate(): greedy accuracy (deterministic, one completion per problem) and avg@k (k sampled completions per
    problem), generated in batches of per_device_eval_batch_size; metrics reach the log; sampling is restored."""
    held = arith_prompts(6)
    trainer, _, _ = make_trainer("cures", rollouts_per_step=16, prompts_per_step=4, steps=1, tmp_path=tmp_path,
                                 eval_dataset=held,
                                 num_generations_eval=3, per_device_eval_batch_size=4)
    batches, scores = [], []
    original = trainer._generate

    def spy(prompts):
        batches.append((len(prompts), trainer.generation_config.do_sample))
        return original(prompts)

    trainer._generate = spy
    reward = trainer.reward_funcs[0]

    def scored(completions, **kw):
        out = reward(completions)
        scores.append(out)
        return out

    trainer.reward_funcs[0] = scored
    first = trainer.evaluate()
    greedy = [x for out in scores[:2] for x in out]
    assert first["eval_accuracy"] == pytest.approx(np.mean(np.array(greedy) > 0.5))
    assert [b for b in batches] == [(4, False), (2, False), (4, True), (4, True), (4, True), (4, True), (2, True)]
    assert "eval_avg_at_3" in first and 0 <= first["eval_avg_at_3"] <= 1
    assert trainer.evaluate()["eval_accuracy"] == first["eval_accuracy"]  # greedy is deterministic
    assert trainer.generation_config.do_sample and trainer.model.training is False  # restored (eval before train)
    assert any("eval_accuracy" in h for h in trainer.state.log_history)


@pytest.mark.parametrize(
    ("change", "match"),
    [({"max_steps": 0}, "max_steps must be at least 1"), ({"max_steps": -4}, "max_steps must be at least 1"),
     ({"policy": "nope"}, "unknown policy"), ({"policy_params": {"rollouts_per_step": 4}}, "may not set "
                                              "'rollouts_per_step'"),
     ({"policy_params": "{oops"}, "JSON object"), ({"estimator": "ppo"}, "estimator must be one of"),
     ({"weighting": "x"}, "weighting must be one of"), ({"loss_type": "x"}, "loss_type must be one of"),
     ({"success_threshold": float("nan")}, "finite"), ({"prompts_per_step": 0}, "prompts_per_step"),
     ({"rollouts_per_step": 0}, "rollouts_per_step")],
)
def test_config_errors_name_the_field(tmp_path, change, match):
    with pytest.raises(ValueError, match=match):
        CuresGRPOConfig(output_dir=str(tmp_path), **change)


def test_config_defaults_follow_trl(tmp_path):
    args = CuresGRPOConfig(output_dir=str(tmp_path), num_generations=6, prompts_per_step=5)
    assert args.rollouts_per_step == 30  # prompts x TRL's group size
    assert args.num_generations_requested == 6 and args.max_completion_length == 512  # TRL's default


def test_the_trainer_checks_dataset_and_state(tmp_path):
    from cures.backends.trl.models import tiny_model, tiny_tokenizer
    from cures.backends.trl.rewards import parity_reward
    from cures.backends.trl.trainer import CuresGRPOTrainer

    tok = tiny_tokenizer()
    args = CuresGRPOConfig(output_dir=str(tmp_path), prompts_per_step=8, rollouts_per_step=16, max_steps=1)
    other = args.build_policy().init(5)

    def build(**kw):
        return CuresGRPOTrainer(model=tiny_model(tok), processing_class=tok, reward_funcs=parity_reward,
                                **{"args": args, "train_dataset": arith_prompts(12), **kw})

    with pytest.raises(ValueError, match="fewer than prompts_per_step=8"):
        build(train_dataset=arith_prompts(5))
    with pytest.raises(ValueError, match="covers 5 prompts but train_dataset has 12"):
        build(policy_state=other)
    with pytest.raises(ValueError, match="no 'prompt' column"):
        build(train_dataset=arith_prompts(12).remove_columns("prompt"))
    with pytest.raises(ValueError, match="CuresGRPOConfig"):
        from trl import GRPOConfig

        build(args=GRPOConfig(output_dir=str(tmp_path), bf16=False))


def test_lora_trains_the_adapter_and_refuses_score_norms(tmp_path):
    from peft import LoraConfig

    from cures.backends.trl.models import tiny_model, tiny_tokenizer
    from cures.backends.trl.rewards import parity_reward
    from cures.backends.trl.trainer import CuresGRPOTrainer

    tok = tiny_tokenizer()
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")

    def build(**kw):
        args = CuresGRPOConfig(output_dir=str(tmp_path), prompts_per_step=4, rollouts_per_step=8, max_steps=2,
                               max_completion_length=6, learning_rate=1e-2, gradient_checkpointing=False,
                               save_strategy="no", **kw)
        return CuresGRPOTrainer(model=tiny_model(tok), processing_class=tok, reward_funcs=parity_reward, args=args,
                                train_dataset=arith_prompts(12), peft_config=lora)

    trainer = build()
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    changed = {n for n, p in trainer.model.named_parameters() if not torch.equal(p, before[n])}
    assert changed and all("lora_" in n for n in changed)
    with pytest.raises(ValueError, match="frozen here"):
        build(score_norms=True)


def test_the_readme_python_example_runs_offline(tmp_path):
    """The README's training section opens with a Python example; run it as written (a real model, offline)."""
    import subprocess
    import sys

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    section = readme[readme.index("## Training with TRL"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    env = {"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", **thread_env()}
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, env=env,
                         timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    # the real 135M model answered some prompts right and some wrong, and the policy's posterior saw both
    from cures.policies import PolicyState

    state = PolicyState.load(tmp_path / "runs" / "readme" / "checkpoint-2" / "policy_state.npz")
    assert state.steps_done == 2 and state.rollouts_total == 2 * 16
    assert (state.arrays.alpha > 1).any() and (state.arrays.beta > 1).any()
    assert state.posterior_mean().min() < 0.5


@pytest.mark.parametrize("conversational", [True, False])
def test_trls_own_reward_functions_and_plain_prompts(tmp_path, conversational):
    """`trl.rewards.accuracy_reward` (reads a `solution` column; conversational completions), and a user reward on a
    plain-text prompt column."""
    import datasets
    from trl.rewards import accuracy_reward

    from cures.backends.trl.models import tiny_model, tiny_tokenizer
    from cures.backends.trl.rewards import parity_reward
    from cures.backends.trl.trainer import CuresGRPOTrainer

    tok = tiny_tokenizer()
    rows = datasets.Dataset.from_list([
        {"prompt": [{"role": "user", "content": f"{i} + 1 ="}] if conversational else f"{i} + 1 =",
         "solution": f"${i + 1}$"} for i in range(8)])
    args = CuresGRPOConfig(output_dir=str(tmp_path), policy="cures", prompts_per_step=4, rollouts_per_step=8,
                           max_steps=2, max_completion_length=4, gradient_checkpointing=False, save_strategy="no",
                           logging_steps=1)
    reward = accuracy_reward if conversational else parity_reward
    trainer = CuresGRPOTrainer(model=tiny_model(tok), processing_class=tok, reward_funcs=reward, args=args,
                               train_dataset=rows)
    trainer.train()
    logged = [h for h in trainer.state.log_history if f"rewards/{reward.__name__}/mean" in h]
    assert len(logged) == 2 and trainer.policy_state.rollouts_total == 16
