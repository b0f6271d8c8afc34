"""Pieces of the TRL backend that stand alone: per-slot advantages (with TRL parity), rewards, data."""

import json

import numpy as np
import pytest
import torch

from cures.backends.advantages import slot_advantages
from cures.backends.trl.compat import TRL_VERSION, check_trl_version
from cures.backends.trl.data import arith_problems, builtin_source, load_source, to_prompts
from cures.backends.trl.rewards import MathAnswerReward, extract_answer, format_reward


def trl_group_advantages(rewards: torch.Tensor, G: int, scale: str) -> torch.Tensor:
    """TRL 1.16's own computation (GRPOTrainer._generate_and_score_completions, sum_then_normalize), with its nanstd."""
    from trl.trainer.utils import nanstd

    mean = torch.nanmean(rewards.view(-1, G), dim=1).repeat_interleave(G, dim=0)
    if scale in ("group", "none"):
        std = nanstd(rewards.view(-1, G), dim=1).repeat_interleave(G, dim=0)
    else:
        std = nanstd(rewards).expand_as(rewards)
    adv = rewards - mean
    if scale != "none":
        adv = adv / (std + 1e-4)
    return torch.nan_to_num(adv, nan=0.0)


def test_trl_is_the_pinned_release():
    check_trl_version()
    import trl

    assert trl.__version__ == TRL_VERSION


@pytest.mark.parametrize("scale", ["group", "batch", "none"])
def test_equal_groups_reproduce_trl(scale):
    gen = torch.Generator().manual_seed(0)
    G = 4
    rewards = torch.randint(0, 2, (8 * G,), generator=gen).float() + 0.1 * torch.rand(8 * G, generator=gen)
    rewards[3] = float("nan")  # an unscorable completion
    slots = torch.arange(8).repeat_interleave(G)
    torch.testing.assert_close(slot_advantages(rewards, slots, scale), trl_group_advantages(rewards, G, scale))


def test_unequal_groups_in_any_order():
    rng = np.random.default_rng(1)
    sizes = [1, 2, 3, 8, 5, 2]
    slots = np.repeat(np.arange(len(sizes)), sizes)
    r = rng.integers(0, 2, slots.size).astype(float)
    perm = rng.permutation(slots.size)
    adv = slot_advantages(torch.tensor(r[perm]), torch.tensor(slots[perm])).numpy()
    rloo = slot_advantages(torch.tensor(r[perm]), torch.tensor(slots[perm]), estimator="rloo").numpy()
    for g, n in enumerate(sizes):
        sel = slots[perm] == g
        x = r[perm][sel]
        if n == 1:
            assert adv[sel][0] == 0.0 and rloo[sel][0] == 0.0
            continue
        np.testing.assert_allclose(adv[sel], (x - x.mean()) / (x.std(ddof=1) + 1e-4), rtol=1e-6)
        np.testing.assert_allclose(rloo[sel], n / (n - 1) * (x - x.mean()), rtol=1e-6, atol=1e-12)
    # the same prompt drawn twice is two groups, told apart by slot
    twice = slot_advantages(torch.tensor([1.0, 0.0, 1.0, 1.0]), torch.tensor([0, 0, 1, 1]))
    assert twice[2] == 0 and twice[3] == 0 and twice[0] > 0


def test_advantage_argument_errors():
    with pytest.raises(ValueError, match="scale"):
        slot_advantages(torch.zeros(2), torch.zeros(2, dtype=torch.long), scale="token")
    with pytest.raises(ValueError, match="equal length"):
        slot_advantages(torch.zeros(2), torch.zeros(3, dtype=torch.long))


# ------------------------------------------------------------------------------------------------ rewards
@pytest.mark.parametrize(
    ("completion", "gold", "reward"),
    [
        ("so the result is \\boxed{42}", "42", 1.0),
        ("steps...\n#### 42", "42", 1.0),
        ("\\boxed{0.5}", "\\frac{1}{2}", 1.0),
        ("\\boxed{\\frac{3}{6}}", "0.5", 1.0),
        ("\\boxed{41}", "42", 0.0),
        ("first \\boxed{1} then \\boxed{42}", "42", 1.0),
        ("I think it is 41 or 42", "42", 1.0),  # no box: math-verify takes the last expression
        ("I think it is 42 or 41", "42", 0.0),
        ("\\boxed{42", "42", 0.0),  # unbalanced
        ("\\boxed{}", "42", 0.0),
        ([{"role": "assistant", "content": "\\boxed{-7}"}], "-7", 1.0),
    ],
)
def test_math_answer_reward(completion, gold, reward):
    assert MathAnswerReward().score(completion, gold) == reward


def test_strict_reward_needs_a_boxed_or_hashed_answer():
    strict = MathAnswerReward(fallback=False)
    assert strict.score("it is 42", "42") == 0.0 and strict.stats["no_answer"] == 1


def test_reward_never_raises_and_counts_what_it_saw():
    fn = MathAnswerReward()
    junk = ["", "\\boxed{\\frac{1}{0}}", "\\boxed{\\\\\\}", "#### ", "\x00\x01", "\\boxed{" * 50, "🙂 #### 🙂"]
    out = fn(completions=junk + ["\\boxed{3}"], answer=["3"] * (len(junk) + 1))
    assert out[-1] == 1.0 and all(v == 0.0 for v in out[:-1])
    outcomes = ("no_answer", "unparsable", "correct", "wrong")
    assert sum(fn.stats[k] for k in outcomes) == len(junk) + 1 and fn.stats["correct"] == 1
    assert format_reward(completions=["\\boxed{1}", "none"]) == [0.1, 0.0]
    assert extract_answer("a \\boxed{x^{2}} b") == "\\boxed{x^{2}}"


# ------------------------------------------------------------------------------------------------ data
def test_arith_is_deterministic_and_spans_levels():
    a, b = arith_problems(50, seed=3), arith_problems(50, seed=3)
    assert a == b and a != arith_problems(50, seed=4)
    assert {r["level"] for r in a} == {1, 2, 3, 4, 5}
    assert all(r["answer"].lstrip("-").isdigit() for r in a)
    data = builtin_source("arith", 30, 8)
    assert len(data["train"]) == 30 and len(data["test"]) == 8
    assert not set(data["train"]["question"]) & set(data["test"]["question"])  # another seed for the test split
    ds = to_prompts(data["train"], "arith")
    assert list(ds["prompt_id"]) == list(range(30))
    assert ds[0]["prompt"][-1]["role"] == "user" and ds[0]["prompt"][-1]["content"].startswith("Compute")


def test_local_files_and_directories_with_column_mapping(tmp_path):
    rows = [{"problem": f"{i}+1", "solution": f"so \\boxed{{{i + 1}}}"} for i in range(5)]
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    ds = to_prompts(load_source(str(path))["train"], "data", system_prompt="Think step by step.")
    assert ds[2]["prompt"][0] == {"role": "system", "content": "Think step by step."}
    assert ds[2]["prompt"][1]["content"].startswith("2+1") and ds["answer"][2] == "so \\boxed{3}"
    assert "solution" in ds.column_names  # kept for trl.rewards.accuracy_reward
    assert MathAnswerReward().score("\\boxed{3}", ds["answer"][2]) == 1.0  # the gold is the boxed part
    ds.to_parquet(str(tmp_path / "data.parquet"))
    assert len(load_source(str(tmp_path / "data.parquet"))["train"]) == 5
    ds.save_to_disk(str(tmp_path / "saved"))
    assert len(load_source(str(tmp_path / "saved"))["train"]) == 5
    folder = tmp_path / "gsm"  # a Hub-style directory of data files, GSM8K columns
    folder.mkdir()
    for name, n in (("train", 6), ("test", 3)):
        (folder / f"{name}.jsonl").write_text("\n".join(json.dumps({"question": f"q{i}", "answer": f"work #### {i}"})
                                                        for i in range(n)))
    data = load_source(str(folder))
    assert sorted(data) == ["test", "train"] and len(data["test"]) == 3
    gsm = to_prompts(data["train"], "gsm")
    assert MathAnswerReward().score("\\boxed{4}", gsm["answer"][4]) == 1.0
    plain = to_prompts(load_source(str(path))["train"].map(lambda r: {"prompt": "Q: " + r["problem"]}), "plain")
    assert plain["prompt"][1] == "Q: 1+1"  # a TRL-format prompt column is used as it is


@pytest.mark.parametrize(
    ("content", "name", "match"),
    [
        ('{"question": "1+1"}\n', "x.jsonl", None),
        ("", "empty.jsonl", "empty|cannot read"),
        ("not json at all {", "bad.jsonl", "cannot read"),
        ("PAR1garbage", "bad.parquet", "cannot read"),
        ("a,b\n", "x.tsv", "unsupported"),
        ('{"question": null, "answer": 1}\n{"question": "2+2", "answer": 4}\n', "null.jsonl", "null 'question'"),
        ('{"text": "hi", "answer": 1}\n', "nocol.jsonl", "no prompt or question column"),
    ],
)
def test_bad_datasets_are_one_line_errors(tmp_path, content, name, match):
    path = tmp_path / name
    path.write_text(content)
    if match is None:  # no answer column: fine for reward functions that need none
        assert "answer" not in to_prompts(load_source(str(path))["train"], name).column_names
        return
    with pytest.raises(ValueError, match=match) as info:
        to_prompts(load_source(str(path))["train"], name)
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="not found"):
        load_source(str(tmp_path / "missing.jsonl"))


def test_uncached_hub_ids_fail_at_once_offline(monkeypatch):
    from cures.backends.trl.models import resolve_model

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValueError, match="not in the Hugging Face cache, and the machine is offline"):
        load_source("nobody/no-such-dataset")
    with pytest.raises(ValueError, match="not in the Hugging Face cache, and the machine is offline"):
        resolve_model("nobody/no-such-model")
    with pytest.raises(ValueError, match="no such directory"):
        resolve_model("./no/such/model")


def test_reward_functions_by_name_or_import_path():
    from trl.rewards import accuracy_reward

    from cures.backends.trl.rewards import parity_reward, resolve_reward_funcs

    funcs = resolve_reward_funcs(["accuracy_reward", "cures.backends.trl.rewards.parity_reward"])
    assert funcs == [accuracy_reward, parity_reward]
    assert type(resolve_reward_funcs(None)[0]).__name__ == "MathAnswerReward"
    for bad, match in (("accuracy_rewrd", "unknown reward"), ("no.such.module.fn", "cannot import")):
        with pytest.raises(ValueError, match=match):
            resolve_reward_funcs([bad])


def test_vllm_server_mode_asks_one_completion_per_row(monkeypatch):
    """Rows are already repeated n_i times, so server mode must not dedupe them by TRL's group size."""
    from trl import GRPOTrainer

    from cures.backends.trl.trainer import CuresGRPOTrainer

    seen = []
    monkeypatch.setattr(GRPOTrainer, "_generate_single_turn", lambda self, ids, im, mm, num_generations, tool=False:
                        seen.append(num_generations))
    trainer = CuresGRPOTrainer.__new__(CuresGRPOTrainer)  # the override only reads these two attributes
    for use_vllm, mode, expected in ((True, "server", 1), (True, "colocate", 2), (False, "colocate", 2)):
        trainer.use_vllm, trainer.vllm_mode = use_vllm, mode
        trainer._generate_single_turn([[1, 2]], None, {}, 2)
        assert seen[-1] == expected


def test_train_and_eval_sets_from_the_command_line(tmp_path):
    """GSM8K-style training rows (question/answer) with a MATH500-format evaluation file (problem/solution/answer);
    or rows held out of training; or a test split; evaluation without any of them is a one-line error."""
    from cures.backends.trl.run import build_datasets, parse_args

    train = tmp_path / "gsm.jsonl"
    train.write_text("\n".join(json.dumps({"question": f"q{i}", "answer": f"w #### {i}"}) for i in range(10)))
    math500 = tmp_path / "math500.jsonl"
    math500.write_text("\n".join(json.dumps({"problem": f"p{i}", "solution": f"\\boxed{{{i}}}", "answer": str(i)})
                                 for i in range(4)))

    def sets(*extra):
        script, args, _, mixture = parse_args(["--dataset_name", str(train), "--question_column", "question",
                                               "--eval_strategy", "steps", "--output_dir", str(tmp_path), *extra])
        return build_datasets(script, args, mixture)

    tr, ev = sets("--eval_dataset_name", str(math500))
    assert len(tr) == 10 and len(ev) == 4 and ev["answer"][3] == "3" and ev[3]["prompt"][-1]["content"][:2] == "p3"
    tr, ev = sets("--eval_holdout_size", "3")
    assert len(tr) == 7 and len(ev) == 3 and list(tr["prompt_id"]) == list(range(7))
    with pytest.raises(ValueError, match="no 'test' split"):
        sets()


def test_counting_live_instances_survives_dead_weak_proxies():
    """The multi-process end counts DDP wrappers left over; gc also tracks dead weak proxies, on which isinstance
    raises ReferenceError (this aborted one two-process launch in seven at exit)."""
    import weakref

    from cures.backends.trl.trainer import live_instances

    class Wrapper:
        pass

    kept = [Wrapper(), Wrapper()]
    gone = Wrapper()
    proxy = weakref.proxy(gone)
    holder = [proxy]  # a container gc tracks, holding the proxy after its referent dies
    del gone
    assert live_instances(Wrapper) == 2
    assert holder and kept


def test_a_baseline_pool_replaces_the_group_statistics():
    """Group 0 trains on [1, 0] but its statistics come from 3 successes in 8 rollouts; group 1 has no pool."""
    rewards, slots = torch.tensor([1.0, 0.0, 1.0, 0.0]), torch.tensor([0, 0, 1, 1])
    baseline = torch.tensor([[3.0, 8.0], [0.0, 0.0]])
    mean, std = 3 / 8, (3 * 5 / (8 * 7)) ** 0.5
    got = slot_advantages(rewards, slots, baseline=baseline, scale="none")
    torch.testing.assert_close(got, torch.tensor([1 - mean, -mean, 0.5, -0.5]))
    got = slot_advantages(rewards, slots, baseline=baseline)
    torch.testing.assert_close(got[:2], torch.tensor([(1 - mean) / (std + 1e-4), -mean / (std + 1e-4)]))
    got = slot_advantages(rewards, slots, baseline=baseline, estimator="rloo")
    torch.testing.assert_close(got[:2], torch.tensor([1 - 2 / 7, -3 / 7]))
    no_pool = slot_advantages(rewards, slots, baseline=torch.zeros(2, 2))
    torch.testing.assert_close(no_pool, slot_advantages(rewards, slots))
