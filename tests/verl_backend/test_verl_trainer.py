"""The verl backend (`cures.backends.verl.trainer`) against verl 0.9.1 itself, on CPU: the replay buffer running whole
policy steps on a real TransferQueue, with a fake agent loop that writes trajectories as verl's `AgentLoopWorkerTQ`
does (keys `{uid}_{session}_0`, `rm_scores` with the reward on the last token, tags, then the prompt's terminal
status); the trainer's hooks through verl's CPU-stub pattern (`Trainer.__new__` and an OmegaConf config, as in verl's
`tests/trainer/ppo/v1/test_trainer_base_on_cpu.py`). Runs in the verl environment (`make test-verl`); skipped
elsewhere. Not covered, because it needs GPUs: `fit()` end to end, weight sync, the FSDP update, vLLM."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

for _module in ("verl", "transfer_queue"):
    pytest.importorskip(_module, reason="the verl backend's tests run in the verl environment (make test-verl)")

import ray  # noqa: E402
import torch  # noqa: E402
import transfer_queue as tq  # noqa: E402
from tensordict import NonTensorData  # noqa: E402
from verl.trainer.ppo.v1.replay_buffer import ReplayBuffer  # noqa: E402
from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync  # noqa: E402
from verl.utils.tensordict_utils import list_of_dict_to_tensordict  # noqa: E402

from cures.backends.verl.main import compose_config  # noqa: E402
from cures.backends.verl.mapping import PROMPT_ID, ROLLOUT_N  # noqa: E402
from cures.backends.verl.trainer import CHECKPOINT_DIR, CuresSettings, CuresTrainer  # noqa: E402
from cures.policies import available  # noqa: E402
from cures.records import read_records  # noqa: E402

ROOT = Path(__file__).parent.parent.parent
N_PROMPTS, M, N = 40, 4, 4  # prompts, prompts per step, GRPO's group size: 16 rollouts a step
POLICIES = tuple(available())  # all sixteen


@pytest.fixture(scope="module")
def transfer_queue():
    ray.init(num_cpus=8, include_dashboard=False, log_to_driver=False)  # TransferQueue hangs on < 3 logical CPUs
    tq.init()
    yield
    tq.close()
    ray.shutdown()


class FakeAgentLoop:
    """Writes `__rollout_n__` trajectories per prompt row into TransferQueue with Bernoulli(p[prompt]) rewards and
    response lengths of 3-9 tokens; `fail` holds prompt ids whose last session fails (no trajectory, status
    failure), as a crashed agent loop leaves them."""

    def __init__(self, p: np.ndarray, seed: int = 0, fail=()):
        self.p, self.rng, self.fail = p, np.random.default_rng(seed), set(fail)
        self.rows = 0

    def generate_sequences(self, batch) -> None:
        keys, fields, tags = [], [], []
        statuses = []
        for i in range(len(batch)):
            uid = str(cell(batch["uid"], i))
            prompt = int(cell(batch[PROMPT_ID], i))
            n = int(cell(batch[ROLLOUT_N], i))
            failed = prompt in self.fail
            for s in range(n - 1 if failed else n):
                length = int(self.rng.integers(3, 10))
                scores = torch.zeros(length)
                scores[-1] = float(self.rng.random() < self.p[prompt])
                keys.append(f"{uid}_{s}_0")
                fields.append({"rm_scores": scores, "response_mask": torch.ones(length, dtype=torch.int64)})
                tags.append({"status": "success", "prompt_len": 5, "response_len": length, "seq_len": 5 + length,
                             "global_steps": 1})
            statuses.append((uid, "failure" if failed else "finished"))
        self.rows += len(batch)
        if keys:
            tq.kv_batch_put(keys=keys, partition_id="train", fields=list_of_dict_to_tensordict(fields), tags=tags)
        for uid, status in statuses:
            tq.kv_put(key=uid, partition_id="train", tag={"status": status})


def cell(column, i):
    """Row i of a prompt-batch column (verl's TensorDicts hold non-tensor columns as NonTensorStack)."""
    value = column[i]
    return value.data if isinstance(value, NonTensorData) else value


def make_trainer(tmp_path, policy: str, *overrides, loop: FakeAgentLoop | None = None) -> CuresTrainer:
    """verl's stub pattern: the trainer without __init__'s workers, with a real config and a list as dataset."""
    config = compose_config([f"data.train_batch_size={M}", f"actor_rollout_ref.rollout.n={N}",
                             f"cures.policy={policy}", f"trainer.default_local_dir={tmp_path}",
                             "data.max_response_length=8", "+cures.poll_seconds=0.01", *overrides])
    trainer = CuresTrainer.__new__(CuresTrainer)
    trainer.config = config
    trainer.cures = CuresSettings.from_config(config)
    trainer.trainer_mode = "sync"
    trainer.global_steps = 1
    trainer.replay_buffer = trainer._build_replay_buffer()
    trainer.train_dataset = [{"raw_prompt": [{"role": "user", "content": f"q{i}"}], "index": i,
                              "data_source": "fake"} for i in range(N_PROMPTS)]
    trainer.agent_loop_manager = loop or FakeAgentLoop(np.linspace(0.0, 1.0, N_PROMPTS))
    trainer._bind_policy()
    return trainer


def train_keys() -> dict[str, dict]:
    return (tq.kv_list("train") or {}).get("train", {})


def clear_train() -> None:
    if train_keys():
        tq.kv_clear(keys=list(train_keys()), partition_id="train")


def one_step(trainer: CuresTrainer):
    """What verl's fit does with our hooks in one sync step: sample, advantages, clear the trained keys."""
    assert trainer.prepare_step() == {}  # no dataloader batch: the policy chooses every prompt
    batch, metrics = trainer.replay_buffer.sample(trainer.global_steps, "train", M)
    trainer._compute_advantage(batch, metrics)
    got = tq.kv_batch_get(keys=batch.keys, partition_id="train", select_fields=["advantages", "rm_scores"])
    adv = [float(a[0]) if a.numel() else 0.0 for a in list(got["advantages"])]
    rewards = [float(r.sum()) for r in list(got["rm_scores"])]
    tq.kv_clear(keys=batch.keys, partition_id="train")
    trainer.global_steps += 1
    return batch, metrics, np.array(adv), np.array(rewards)


@pytest.mark.parametrize("policy", POLICIES)
def test_policy_steps_on_transfer_queue(transfer_queue, tmp_path, policy):
    trainer = make_trainer(tmp_path, policy)
    buffer = trainer.replay_buffer
    for _ in range(4):
        batch, metrics, adv, rewards = one_step(trainer)
        step = buffer.last_step
        trained = buffer.current
        assert batch.keys == trained.keys or not trained.keys  # exactly the policy's training batch
        assert metrics["cures/rollouts_generated"] == step.rollouts_generated == sum(p.total for p in step.plans)
        assert sum(v for k, v in metrics.items() if k.startswith("cures/rollouts/")) == step.rollouts_generated
        assert metrics["cures/rollouts_trained"] == len(trained.keys)
        # every trained rollout's advantage has the sign of its own reward minus its own group's mean (no pooled
        # baseline here), and the reward read back is the one the policy observed
        observed = dict(zip(step.rollouts.rollouts, step.rollouts.rewards, strict=True))
        assert np.array_equal(rewards[: len(trained.keys)], [observed[k] for k in trained.keys])
        for g in np.unique(trained.group):
            rows = np.flatnonzero(trained.group == g)
            n_pool, k_pool = trained.baseline[g, 1], trained.baseline[g, 0]
            mean = k_pool / n_pool if n_pool > 0 else rewards[rows].mean()
            assert np.all(np.sign(np.round(adv[rows], 6)) == np.sign(np.round(rewards[rows] - mean, 6))), policy
        # nothing leaks: what stays in TransferQueue is exactly the rollouts the policy holds for a later step
        held = {k for r in buffer.held.values() for k in r.rollouts}
        assert set(train_keys()) == held, policy
    records = read_records(tmp_path)
    assert set(records["step"]) == {0, 1, 2, 3}
    assert records["rollouts"].sum() == buffer.state.rollouts_total
    assert (records["clipped"] <= records["rollouts"]).all() and records["clipped"].sum() > 0  # lengths 8-9 of cap 8
    clear_train()


def test_failed_sessions_are_failures_and_do_not_train(transfer_queue, tmp_path):
    loop = FakeAgentLoop(np.full(N_PROMPTS, 1.0), fail=range(N_PROMPTS))  # every prompt loses its last session
    trainer = make_trainer(tmp_path, "grpo", loop=loop)
    batch, _, adv, rewards = one_step(trainer)
    step = trainer.replay_buffer.last_step
    assert np.isnan(step.rollouts.rewards).sum() == M  # one missing trajectory per slot: NaN, a failure
    assert len(batch.keys) == M * (N - 1) and np.all(rewards == 1.0) and np.all(adv == 0.0)
    assert not train_keys()


def test_checkpoint_round_trip_keeps_policy_state_and_held_rollouts(transfer_queue, tmp_path):
    trainer = make_trainer(tmp_path, "pilot-commit")
    one_step(trainer)
    buffer = trainer.replay_buffer
    while not buffer.held:  # a step that holds pilots for the next one
        one_step(trainer)
    held_keys = sorted(k for r in buffer.held.values() for k in r.rollouts)
    before = tq.kv_batch_get(keys=held_keys, partition_id="train", select_fields=["rm_scores"])
    saved_at = trainer.global_steps
    order = []
    parent = PPOTrainerSync._save_checkpoint
    PPOTrainerSync._save_checkpoint = lambda self: order.append(
        (tmp_path / f"global_step_{saved_at}" / CHECKPOINT_DIR / "policy_state.npz").is_file())
    try:
        trainer._save_checkpoint()
    finally:
        PPOTrainerSync._save_checkpoint = parent
    assert order == [True]  # the policy's files exist before verl writes latest_checkpointed_iteration.txt
    state_then = buffer.state.copy()
    one_step(trainer)  # the run goes on, then dies: a fresh process resumes from the checkpoint
    clear_train()

    resumed = make_trainer(tmp_path, "pilot-commit")
    resumed.global_steps = saved_at
    resumed._load_policy(tmp_path / f"global_step_{saved_at}")
    state = resumed.replay_buffer.state
    assert state.steps_done == state_then.steps_done and state.rollouts_total == state_then.rollouts_total
    assert np.array_equal(state.arrays.alpha, state_then.arrays.alpha)
    assert sorted(train_keys()) == held_keys
    after = tq.kv_batch_get(keys=held_keys, partition_id="train", select_fields=["rm_scores"])
    assert all(torch.equal(a, b) for a, b in zip(list(before["rm_scores"]), list(after["rm_scores"]), strict=True))
    assert set(read_records(tmp_path)["step"]) == set(range(state.steps_done))  # later steps' records dropped
    one_step(resumed)  # the held pilots are re-used by the resumed run
    clear_train()


def test_verl_dapo_and_cures_dapo_differ_where_documented(transfer_queue, tmp_path):
    """Every prompt unsolvable: cures' `dapo` stops at its cap of generation batches and trains on what it has (a
    no-op step here); verl's built-in sync DAPO (`filter_groups`) ignores max_num_gen_batches and refills without
    end (stopped here after 6 refills)."""
    loop = FakeAgentLoop(np.zeros(N_PROMPTS))
    trainer = make_trainer(tmp_path, "dapo", "+cures.params.max_gen_batches=3", loop=loop)
    batch, metrics, adv, _ = one_step(trainer)
    assert metrics["cures/rollouts_trained"] == 0 and np.all(adv == 0.0) and len(batch.keys) == 1
    assert metrics["cures/rollouts_generated"] <= 3 * trainer.replay_buffer.state.kernel.gen_batch_size * N

    class Stop(Exception):
        pass

    refills = []

    def refill(k):
        if len(refills) >= 6:
            raise Stop
        refills.append(k)
        rows = {"uid": np.array([f"verl-{len(refills)}-{i}" for i in range(k)], dtype=object),
                PROMPT_ID: np.arange(k, dtype=np.int64), ROLLOUT_N: np.full(k, N, np.int64)}
        for uid in rows["uid"]:
            tq.kv_put(key=uid, partition_id="train", tag={"is_prompt": True, "status": "pending", "global_steps": 1})
        loop.generate_sequences(Rows(rows))
        return k

    verl_dapo = ReplayBuffer(trainer_mode="sync", trainer_config={}, max_off_policy_threshold=None,
                             max_off_policy_strategy="drop", sampler_kwargs={}, poll_interval=0.01, refill_fn=refill,
                             filter_groups_metric="reward", train_batch_size=M, gen_batch_size=1)
    refill(M)
    with pytest.raises(Stop):
        verl_dapo.sample(1, "train", M)
    assert refills[1:] and all(k % 2 == 0 for k in refills[1:])  # 2 refills per evicted group, never a cap
    clear_train()


class Rows(dict):
    """Plain columns as the fake agent loop reads a TensorDict of prompt rows."""

    def __len__(self):
        return len(self["uid"])


@pytest.mark.parametrize("override, message", [
    ("cures.policy=bogus", "unknown policy 'bogus'"),
    ("cures.weighting=bogus", "cures.weighting must be one of"),
    ("algorithm.adv_estimator=gae", "adv_estimator=gae is not supported"),
    ("algorithm.use_kl_in_reward=true", "use_kl_in_reward is not supported"),
    ("trainer.v1.trainer_mode=sync", "needs 'cures'"),
    ("+cures.bogus=1", "unknown cures.bogus"),
    ("+cures.budget=64", "'cures.budget' was renamed 'cures.rollouts_per_step' in cures 0.3"),
    ("+cures.uid_prefix=a_b", "hold no '_'"),
    ("nonexistent_key=1", "--config"),
])
def test_bad_settings_fail_before_ray_starts(override, message):
    with pytest.raises(ValueError, match=None) as info:
        compose_config([override])
    assert message in str(info.value), str(info.value)


@pytest.mark.parametrize("recipe", sorted((ROOT / "examples" / "verl").glob("*.yaml")), ids=lambda p: p.name)
def test_example_recipes_pass_verls_own_config_checks(recipe):
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import validate_config

    config = compose_config(["--config", str(recipe)])
    validate_config(config=config, use_reference_policy=need_reference_policy(config), use_critic=need_critic(config))
    assert config.trainer.v1.trainer_mode == "cures" and config.backend == "verl"
    CuresSettings.from_config(config).make_policy()


@pytest.mark.parametrize("args, message", [
    (["--backend", "verl", "cures.policy=bogus"], "error: unknown policy 'bogus'"),
    (["--backend=verl", "--config", "missing.yaml"], "error: --config missing.yaml: file not found"),
    (["--backend", "verl", "--learning_rate", "1"], "error: unknown option --learning_rate"),
    (["--backend", "verl", "data.train_batch_size=4"], "error: verl rejected the config: "),
])
def test_cures_train_backend_verl_rejects_bad_input_in_one_line(args, message):
    from typer.testing import CliRunner

    from cures.cli import app

    result = CliRunner().invoke(app, ["train", *args])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and lines[0].startswith(message), result.stderr


def test_trainer_mode_cures_is_registered_and_validation_keeps_verls_sampling(transfer_queue, tmp_path):
    from verl.trainer.ppo.v1 import get_trainer_cls

    assert get_trainer_cls("cures") is CuresTrainer
    trainer = make_trainer(tmp_path, "cures")
    keys = ["val0_0_0", "val0_1_0"]
    fields = [{"rm_scores": torch.ones(3), "response_mask": torch.ones(3, dtype=torch.int64)} for _ in keys]
    tags = [{"status": "success", "prompt_len": 5, "response_len": 3, "seq_len": 8, "global_steps": 1} for _ in keys]
    tq.kv_put(key="val0", partition_id="val", tag={"is_prompt": True, "status": "pending", "global_steps": 1})
    tq.kv_batch_put(keys=keys, partition_id="val", fields=list_of_dict_to_tensordict(fields), tags=tags)
    tq.kv_put(key="val0", partition_id="val", tag={"status": "finished"})
    batch, _ = trainer.replay_buffer.sample(1, "val", 1)  # verl's own sync sampling, untouched by the policy
    assert sorted(batch.keys) == keys and trainer.replay_buffer.state.steps_done == 0
    tq.kv_clear(keys=keys, partition_id="val")


def test_a_one_node_run_without_its_gpus_is_refused_before_ray_starts(monkeypatch):
    from cures.backends.verl.main import check_local_gpus

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    recipe = str(ROOT / "examples" / "verl" / "qwen2.5-math-1.5b-cures.yaml")
    with pytest.raises(ValueError, match=r"trainer.n_gpus_per_node=8 but this machine has 0 GPU\(s\) visible"):
        check_local_gpus(compose_config(["--config", recipe]), visible=0)
    check_local_gpus(compose_config(["--config", recipe]), visible=8)
    check_local_gpus(compose_config(["--config", recipe, "trainer.nnodes=2"]), visible=0)  # Ray places the workers
    check_local_gpus(compose_config(["--config", recipe, "+ray_kwargs.ray_init.address=auto"]), visible=0)
