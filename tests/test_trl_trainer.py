"""The GRPOTrainer subclass on a tiny random Qwen2 on CPU: it generates exactly the policy's plan, its advantages match
TRL's on equal groups, and the posterior moves with the rewards."""

import numpy as np
import pandas as pd
import pytest
import torch
from threads import thread_env
from trl_helpers import make_trainer, record_plans

from cures.backends.trl.rewards import parity_reward
from cures.backends.trl.trainer import CuresGRPOTrainer
from cures.records import read_records


def test_generates_exactly_the_plan_and_updates_the_posterior(tmp_path):
    trainer, policy, state = make_trainer("cures", rollouts_per_step=16, prompts_per_step=4, steps=4, tmp_path=tmp_path)
    plans, seen = record_plans(policy), []
    trainer.reward_funcs[0] = lambda completions, prompt_id, **kw: (seen.append(list(prompt_id)),
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


def test_advantages_equal_trls_when_groups_are_equal(tmp_path, monkeypatch):
    """With equal groups TRL's own advantages (its `_generate_and_score_completions`, which the subclass calls) and
    the per-group ones the subclass puts in their place agree, step by step."""
    from trl import GRPOTrainer

    trainer, _, _ = make_trainer("grpo", rollouts_per_step=16, prompts_per_step=4, steps=3, tmp_path=tmp_path)
    trainer.num_generations = 4  # TRL's own grouping then matches the policy's groups of n = 16 / 4
    trls, ours = [], []
    trl_step = GRPOTrainer._generate_and_score_completions
    our_step = CuresGRPOTrainer._generate_and_score_completions

    def spy_trl(self, inputs):
        out = trl_step(self, inputs)
        trls.append(out["advantages"].clone())  # TRL's own advantages for these rows
        return out

    def spy_ours(self, inputs):
        out = our_step(self, inputs)
        ours.append(out["advantages"].clone())
        return out

    monkeypatch.setattr(GRPOTrainer, "_generate_and_score_completions", spy_trl)
    monkeypatch.setattr(CuresGRPOTrainer, "_generate_and_score_completions", spy_ours)
    trainer.train()
    assert len(ours) == len(trls) == 3
    for trl_adv, cures_adv in zip(trls, ours, strict=True):
        torch.testing.assert_close(cures_adv, trl_adv, rtol=1e-5, atol=1e-6)
    assert any(a.abs().sum() > 0 for a in ours)  # the reward did vary


PC_SMALL = {"n_pilot": 2, "n_commit": 3, "gen_batch_size": 4, "p_lower": 0.5, "p_upper": 0.0,  # many survivors,
            "p_solve": None}  # and none excluded: the test sets are tiny


@pytest.mark.parametrize("name", ["cures-paper", "dapo", "speed", "gvm", "greso", "cures-released", "reinforce-ada",
                                  "pods", "pilot-commit"])
def test_multi_round_policies_train_on_the_rollouts_they_generated(tmp_path, name):
    """Screening and refill rounds run through TRL's generation; each rollout is generated once, reaches the
    posterior, and the step trains exactly on the policy's training groups (only the kept part of a slot, for
    reinforce-ada and pods), with per-group advantages."""
    kw = {"dapo": {"gen_batch_size": 6}, "speed": {"gen_batch_size": 6},
          "reinforce-ada": {"round_repeat": 2, "max_rounds": 2}, "pods": {"n": 4},  # generate 4, train 2
          "pilot-commit": PC_SMALL}.get(name, {})
    trainer, policy, state = make_trainer(name, rollouts_per_step=16, prompts_per_step=4, steps=3, tmp_path=tmp_path,
                                          policy_params=kw)
    plans = record_plans(policy)
    generated, trained = [], []

    def counting_generate(prompts):
        if trainer._trl.replay is None:  # a real generation, not the finished step handed back to TRL's scoring
            generated.append(len(prompts))
        return CuresGRPOTrainer._generate(trainer, prompts)

    trainer._generate = counting_generate
    original = trainer._generate_and_score_completions

    def capture(inputs):
        out = original(inputs)
        trained.append((policy.training_batch(state), out))
        return out

    trainer._generate_and_score_completions = capture
    before = state.arrays.alpha + state.arrays.beta
    trainer.train()
    assert state.steps_done == 3
    assert sum(generated) == state.rollouts_total == sum(p.total for p in plans)  # nothing generated twice
    counts = state.arrays.alpha + state.arrays.beta - before
    if name != "cures-released":  # it resets the subset's counts to the pre-rollouts, as the released code does
        expected = np.zeros_like(counts)
        for plan in plans:
            np.add.at(expected, plan.prompt_ids, plan.n_rollouts)
        np.testing.assert_array_equal(counts, expected)
    logged = [h for h in trainer.state.log_history if "cures/rollouts_trained" in h]
    for (batch, out), log in zip(trained, logged, strict=True):
        mask = out["completion_mask"].sum(dim=1) > 0
        assert int(mask.sum()) == batch.rollouts_trained == log["cures/rollouts_trained"]
        assert log["cures/rollouts_generated"] == batch.rollouts_generated
        adv = out["advantages"][mask]
        if batch.rollouts_trained:
            assert adv.shape[0] == batch.rollouts_trained and torch.isfinite(adv).all()
        if name == "pods":  # m of the n generated rollouts of every prompt
            assert batch.rollouts_trained == batch.rollouts_generated // 2
    assert any(p.purpose == "screen" for p in plans) == (name in ("cures-paper", "speed", "gvm", "cures-released"))


def test_score_norms_feed_eq21_on_screening_rounds(tmp_path):
    """With score_norms=True the pre-rollouts' per-response embedding-gradient norms reach the policy: sigma_i of a
    mixed prompt is Eq. 21 with the measured statistics instead of sqrt(p(1-p))."""
    from cures.backends.trl.score_norms import response_score_norms, slot_score_stats
    from cures.theory import rollout_sigma

    trainer, policy, state = make_trainer("cures-paper", rollouts_per_step=16, prompts_per_step=4, steps=1,
                                          tmp_path=tmp_path,
                                          score_norms=True, policy_params={"n_pre": 4, "subsets": 4})
    stats, p_hat = [], []
    original = policy.observe

    def spy(s, **kw):
        stats.append(kw.get("score_stats"))
        done = original(s, **kw)
        p_hat.append(s.posterior_mean())
        return done

    policy.observe = spy
    plans = record_plans(policy)
    trainer.train()
    assert plans[0].purpose == "screen" and stats[0] is not None and stats[1] is None
    assert trainer.score_norm_seconds > 0
    mixed = np.isfinite(stats[0]).all(axis=1)
    assert mixed.any()
    ids = plans[0].prompt_ids[mixed]
    p = p_hat[0][ids]  # the pass rates right after the pre-rollouts
    want = rollout_sigma(p, stats[0][mixed, 0], stats[0][mixed, 1], stats[0][mixed, 2])
    np.testing.assert_allclose(state.arrays.sigma[ids], want)
    assert not np.allclose(want, np.sqrt(p * (1 - p)))

    # the norm is the gradient of the response's summed negative log-likelihood over the embedding matrix
    from cures.backends.trl.trainer import Rollout

    model = trainer.model
    rollout = Rollout({}, [3, 4, 5], [6, 7], "", None)
    model.zero_grad()
    ids_ = torch.tensor([[3, 4, 5, 6, 7]])
    logp = torch.log_softmax(model(input_ids=ids_).logits[0, 2:4], dim=-1)
    (-(logp[0, 6] + logp[1, 7])).backward()
    assert response_score_norms(model, [rollout])[0] == pytest.approx(
        float(model.get_input_embeddings().weight.grad.norm()), rel=1e-5)
    out = slot_score_stats(np.array([1.0, 3.0, 2.0, 2.0]), np.array([True, True, False, True]), np.array([0, 0, 0, 1]),
                           2)
    np.testing.assert_allclose(out[0], [5.0, 4.0, 0.0])
    assert out[1, 0] == 4.0 and np.isnan(out[1, 1:]).all()


@pytest.mark.parametrize("name", ["cures", "pilot-commit"])
def test_killed_and_resumed_run_continues_with_the_same_plans(tmp_path, name):
    """Train 4 steps with checkpoints every 2; resume a fresh trainer from checkpoint-2: the plans of steps 3 and 4
    equal the uninterrupted run's, and the final policy states are identical (pilot-commit: with the pilots it held
    at the checkpoint, whose rollouts the checkpoint kept)."""
    from cures.backends.trl.trainer import STATE_FILE

    def run(out, steps, resume=False):
        trainer, policy, state = make_trainer(name, rollouts_per_step=16, prompts_per_step=4, steps=4, tmp_path=out,
                                              save_strategy="steps", save_steps=2,
                                              policy_params=PC_SMALL if name == "pilot-commit" else None)
        plans = record_plans(policy)
        trainer.train(resume_from_checkpoint=True if resume else None)  # the newest checkpoint with a policy state
        return trainer.policy_state, plans

    full_state, full_plans = run(tmp_path / "full", 4)
    assert (tmp_path / "full" / "checkpoint-2" / STATE_FILE).is_file()
    out = tmp_path / "killed"
    run(out, 4)
    # simulate a kill after step 2: drop the later checkpoint, and a half-written one without policy state
    import shutil

    shutil.rmtree(out / "checkpoint-4")
    (out / "checkpoint-3").mkdir()
    stray = out / "rollouts.parquet" / "step-0000005.parquet"  # a record past the checkpoint it resumes from
    shutil.copy(out / "rollouts.parquet" / "step-0000003.parquet", stray)
    resumed_state, resumed_plans = run(out, 4, resume=True)
    assert not stray.exists()
    full, resumed = read_records(tmp_path / "full"), read_records(out)
    assert sorted(set(resumed["step"])) == [0, 1, 2, 3]
    audit = ["step", "round", "slot", "purpose", "prompt_id", "rollouts", "successes", "trained", "group",
             "reused_from"]
    pd.testing.assert_frame_equal(full[audit], resumed[audit])
    assert full["rollouts"].sum() == full_state.rollouts_total
    later = [p for p in full_plans if p.step >= 2]
    assert len(resumed_plans) == len(later) >= 2
    for a, b in zip(later, resumed_plans, strict=True):
        np.testing.assert_array_equal(a.prompt_ids, b.prompt_ids)
        np.testing.assert_array_equal(a.n_rollouts, b.n_rollouts)
    np.testing.assert_array_equal(full_state.arrays.alpha, resumed_state.arrays.alpha)
    np.testing.assert_array_equal(full_state.arrays.beta, resumed_state.arrays.beta)
    np.testing.assert_array_equal(full_state.held_slot_ids(), resumed_state.held_slot_ids())
    assert resumed_state.steps_done == full_state.steps_done == 4


class Killed(BaseException):
    """Stands for the process dying: nothing in the trainer catches it."""


@pytest.mark.parametrize("limit", [1, 2])
def test_a_run_killed_while_checkpointing_keeps_a_complete_checkpoint(tmp_path, monkeypatch, limit):
    """With save_total_limit, TRL deletes old checkpoints at the end of writing a new one; the policy state, which
    marks a checkpoint complete, comes after TRL's files. A death between the two (here the policy state's write of
    the last checkpoint) must leave the newest earlier checkpoint, complete, and a resumed run must finish from it."""
    from cures.backends.trl.trainer import resume_point
    from cures.policies import PolicyState

    saves = []
    real_save = PolicyState.save

    def dying_save(self, path):
        saves.append(path)
        if len(saves) == 3:
            raise Killed
        return real_save(self, path)

    monkeypatch.setattr(PolicyState, "save", dying_save)
    trainer, _, _ = make_trainer("cures", 16, 4, 4, tmp_path, save_strategy="steps", save_steps=1,
                                 save_total_limit=limit)
    with pytest.raises(Killed):
        trainer.train()
    found = resume_point(tmp_path)
    assert found is not None and found[0].endswith("checkpoint-2") and found[1].steps_done == 2
    assert (tmp_path / "checkpoint-3").is_dir()  # TRL's files of the incomplete one are there
    assert len(list(tmp_path.glob("checkpoint-*"))) <= limit + 1  # the rotation still runs once a save completes
    monkeypatch.setattr(PolicyState, "save", real_save)
    resumed, _, _ = make_trainer("cures", 16, 4, 4, tmp_path, save_strategy="steps", save_steps=1,
                                 save_total_limit=limit)
    resumed.train(resume_from_checkpoint=True)
    assert resumed.state.global_step == 4 and resumed.policy_state.steps_done == 4
    assert sorted(p.name for p in tmp_path.glob("checkpoint-*"))[-1] == "checkpoint-4"
    assert len(list(tmp_path.glob("checkpoint-*"))) == limit


ENV = {"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", **thread_env()}
TINY = ["--model_name_or_path", "tiny", "--dataset_name", "arith", "--reward_funcs", "parity",
        "--max_completion_length", "6", "--gradient_checkpointing", "false", "--logging_steps", "1"]


def cures_train_in_process(args):
    """`cures train ARGS` through typer's runner in this process (no interpreter and torch start-up per call); an
    exception that escapes the command is the result's `exception`."""
    from typer.testing import CliRunner

    from cures.cli import app

    return CliRunner().invoke(app, ["train", *args], env={**ENV, "NO_COLOR": "1", "COLUMNS": "300"})


def cures_train(args, timeout=600, launcher=None, env=None):
    import subprocess
    import sys

    cmd = [*(launcher or [sys.executable, "-m"]), "cures", "train", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env or ENV, timeout=timeout)


def test_cures_train_command_trains_resumes_and_reports(tmp_path):
    import json

    out = tmp_path / "run"
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("backend: trl\npolicy: cures\nrollouts_per_step: 16\nprompts_per_step: 4\n"
                      "per_device_train_batch_size: 8\nn_eval_problems: 4\nsave_steps: 2\neval_strategy: steps\n"
                      "eval_steps: 2\n"
                      "report_to: [tensorboard]\npolicy_params: {tau: 0.2}\n")
    base = ["--config", str(recipe), *TINY, "--output_dir", str(out)]
    first = cures_train(["--backend", "trl", *base, "--max_steps", "2"])
    assert first.returncode == 0, first.stderr
    resumed = cures_train([*base, "--max_steps", "4", "--resume_from_checkpoint", "true"])
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 4 and summary["rollouts_total"] == 4 * 16  # the resumed policy state kept counting
    assert summary["config"]["policy"] == "cures" and summary["config"]["per_device_train_batch_size"] == 8
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert any("cures/zero_variance_fraction" in m for m in metrics)
    assert [m["step"] for m in metrics if "eval_accuracy" in m] == [2, 4]  # periodic evaluation, kept on resume
    assert list((out / "runs").rglob("events.out.tfevents.*"))  # report_to reached TensorBoard
    for args, message in ((["--policy", "bogus"], "unknown policy 'bogus'"),
                          (["--backend", "deepspeed"], "unknown backend 'deepspeed'; choose one of trl, verl"),
                          (["--backend=verl"], "--backend verl needs verl, which this environment lacks"),
                          (["--scale_rewards", "bogus"], "scale_rewards"),
                          (["--dataset_name", str(tmp_path / "missing.jsonl")], "not found"),
                          (["--bogus", "1"], "unknown option: --bogus"),
                          (["--learning_rate", "fast"], "invalid float value: 'fast'"),
                          (["--reward_funcs", "accuracy_rewrd"], "unknown reward 'accuracy_rewrd'"),
                          (["--max_steps", "0"], "max_steps must be at least 1"),
                          (["--prompts_per_step", "9999"], "fewer than prompts_per_step=9999"),
                          (["--model_name_or_path", "someone/uncached-model"], "not in the Hugging Face cache"),
                          (["--resume_from_checkpoint", "true", "--output_dir", str(tmp_path / "empty")],
                           "no checkpoint")):
        bad = cures_train_in_process([*TINY, "--output_dir", str(tmp_path / "bad"), *args])
        assert bad.exit_code == 2 and message in bad.stderr, (args, bad.stderr)
        assert bad.exception is None or isinstance(bad.exception, SystemExit), repr(bad.exception)
        assert len(bad.stderr.strip().splitlines()) <= 2, bad.stderr


def test_score_norms_score_false_parses_as_false(tmp_path):
    from cures.backends.trl.run import parse_args

    _, args, _, _ = parse_args(["--score_norms", "no", "--output_dir", str(tmp_path)])
    assert args.score_norms is False
    _, args, _, _ = parse_args(["--score_norms", "--output_dir", str(tmp_path)])
    assert args.score_norms is True


@pytest.mark.parametrize("policy", ["cures", "pilot-commit"])
def test_two_gloo_processes_make_identical_plans(tmp_path, policy):
    """`accelerate launch --multi_gpu --num_processes 2` on a CPU-only machine runs two gloo processes; each logs
    its plans, and both must be the same (same seed, same gathered rewards, same posterior). pilot-commit adds
    several rounds per step of odd sizes, split unevenly over the two processes, and pilots committed steps later."""
    import json
    import shutil
    import sys
    from pathlib import Path

    launcher = Path(sys.executable).with_name("accelerate")
    assert launcher.exists() or shutil.which("accelerate")
    out = tmp_path / "ddp"
    env = {**ENV, "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "CUDA_VISIBLE_DEVICES": ""}
    params = ["--policy_params", json.dumps(PC_SMALL)] if policy == "pilot-commit" else []
    res = cures_train([*TINY, "--policy", policy, "--max_steps", "6", "--rollouts_per_step", "16",
                       "--prompts_per_step", "4", "--per_device_train_batch_size", "4", "--output_dir", str(out),
                       "--n_problems", "12", "--save_steps", "3", *params],
                      launcher=[str(launcher), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                                "--mixed_precision", "no", "--dynamo_backend", "no", "-m"], env=env, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    ranks = [[json.loads(x) for x in (out / f"plans.rank{r}.jsonl").read_text().splitlines()] for r in (0, 1)]
    assert len({p["step"] for p in ranks[0]}) == 6 and ranks[0] == ranks[1]  # draws depend on each rank's posterior
    summary = json.loads((out / "summary.json").read_text())
    assert summary["processes"] == 2
    assert summary["rollouts_total"] == sum(sum(p["n_rollouts"]) for p in ranks[0])
    if policy == "cures":
        assert summary["rollouts_total"] == 6 * 16
    else:  # pilots kept across steps were committed (first round of a later step), rounds of odd sizes
        assert any(p["round"] == 0 and p["step"] > 0 and p["n_rollouts"][0] == 3 for p in ranks[0])
        assert any(sum(p["n_rollouts"]) % 2 for p in ranks[0])
        from cures.policies import PolicyState

        held = PolicyState.load(out / "checkpoint-3" / "policy_state.npz").held_slot_ids()
        assert (out / "checkpoint-3" / "held_rollouts.pt").is_file() == (held.size > 0)


@pytest.mark.parametrize("name", ["cures", "pods"])
def test_every_trained_completion_gets_the_sign_of_its_own_reward_against_its_group(tmp_path, name):
    """Under unequal groups (and a prompt drawn twice in one step), the advantage TRL trains each completion with
    has the sign of that completion's own reward, recomputed from its decoded text, minus its own group's mean: a
    pairing of advantages with the wrong completions would break it (the length-drift candidate of issue 22)."""
    from cures.backends.trl.rewards import parity_reward

    trainer, _, state = make_trainer(name, rollouts_per_step=24, prompts_per_step=4, steps=4, tmp_path=tmp_path,
                                     policy_params={"n": 6} if name == "pods" else None)
    rng = np.random.default_rng(0)  # a posterior that has seen every prompt: CurES gives unequal n_i from step 1
    state.arrays.alpha[:] += rng.integers(0, 8, state.arrays.alpha.size)
    state.arrays.beta[:] += rng.integers(0, 8, state.arrays.beta.size)
    steps, outs = [], []
    run_step, generate = trainer._run_policy_step, trainer._generate_and_score_completions
    trainer._run_policy_step = lambda chunk: steps.append(run_step(chunk)) or steps[-1]
    trainer._generate_and_score_completions = lambda inputs: outs.append(generate(inputs)) or outs[-1]
    trainer.train()
    checked = 0
    sizes_seen = set()
    for step, out in zip(steps, [o for o in outs if "advantages" in o], strict=True):
        n = step.trained.index.size
        mask = out["completion_mask"][:n].bool()
        texts = trainer.processing_class.batch_decode([ids[m].tolist() for ids, m in zip(out["completion_ids"][:n],
                                                                                           mask, strict=True)],
                                                      skip_special_tokens=True)
        rewards = np.array(parity_reward(texts))
        np.testing.assert_array_equal(rewards, step.rollouts.rewards[step.trained.index])  # the rows are the rollouts
        adv = out["advantages"][:n].numpy()
        sizes_seen |= set(step.trained.group_sizes().tolist())
        for g in range(step.trained.n_groups):
            rows = step.trained.group == g
            centred = rewards[rows] - rewards[rows].mean()
            assert (np.sign(adv[rows]) == np.sign(np.round(centred, 9))).all(), (g, adv[rows], rewards[rows])
            checked += int(rows.sum())
    assert checked > 0
    if name == "cures":
        assert len(sizes_seen) > 1  # groups of several sizes were checked
    else:  # PODS trains on part of each slot: the kept rollouts, not the first ones, carry the advantages
        assert all(s.trained.index.size < len(s.rollouts) for s in steps)


def test_sigterm_checkpoints_stops_and_resumes_with_the_same_plans(tmp_path):
    """SIGTERM (a cluster's preemption notice) mid-run: the step finishes, a checkpoint with the policy state is
    written, the process exits 75 without summary.json; `--resume_from_checkpoint true` then makes exactly the
    plans an uninterrupted run makes."""
    import json
    import signal
    import subprocess
    import sys
    import time

    args = [*TINY, "--policy", "cures", "--max_steps", "8", "--prompts_per_step", "4", "--rollouts_per_step", "16",
            "--save_steps", "1000", "--n_problems", "24"]
    whole = cures_train([*args, "--output_dir", str(tmp_path / "whole")])
    assert whole.returncode == 0, whole.stderr
    out = tmp_path / "preempted"
    proc = subprocess.Popen([sys.executable, "-m", "cures", "train", *args, "--output_dir", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    plans = out / "plans.rank0.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if plans.is_file() and len(plans.read_text().splitlines()) >= 2:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 75, err[-2000:]
    assert "preempted (SIGTERM) after step" in err and not (out / "summary.json").exists()
    checkpoints = sorted(out.glob("checkpoint-*"))
    assert len(checkpoints) == 1 and (checkpoints[0] / "policy_state.npz").is_file()
    stopped = int(checkpoints[0].name.split("-")[1])
    assert 2 <= stopped < 8
    resumed = cures_train([*args, "--output_dir", str(out), "--resume_from_checkpoint", "true"])
    assert resumed.returncode == 0, resumed.stderr

    def plan_log(run):
        rows = [json.loads(x) for x in (run / "plans.rank0.jsonl").read_text().splitlines()]
        return {(r["step"], r["round"]): (r["prompt_ids"], r["n_rollouts"]) for r in rows}

    assert plan_log(out) == plan_log(tmp_path / "whole")  # the steps before and after the preemption
    assert json.loads((out / "summary.json").read_text())["steps"] == 8
