"""The overhead benchmark (`python -m cures.backends.trl.bench overhead|gpu`): the settings it refuses, the random
model built from a config, and the prepared GPU check run end to end on a CPU with a tiny architecture."""

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("trl")

from cures.backends.trl.models import random_model_from_config  # noqa: E402
from cures.backends.trl.overhead import QWEN25_15B, Measured, Setting  # noqa: E402

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
TINY = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": 32, "intermediate_size": 64,
        "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1, "vocab_size": 300,
        "tie_word_embeddings": True, "max_position_embeddings": 512}


@pytest.mark.parametrize("change, message", [
    ({"rollouts": 18}, "multiple of --prompts"),
    ({"rollouts": 4, "prompts": 4}, "at least 2 each"),
    ({"micro": 5}, "multiple of --micro"),
    ({"steps": 2}, "--steps must be at least 3"),
    ({"completion": 0}, "--completion must be at least 1"),
])
def test_settings_that_cannot_be_compared_are_refused(change, message):
    with pytest.raises(ValueError, match=message):
        Setting(**change).check()


def test_the_shipped_config_is_qwen25_15b_and_every_sampled_id_decodes(tmp_path):
    config = json.loads(QWEN25_15B.read_text())
    assert (config["hidden_size"], config["num_hidden_layers"], config["vocab_size"]) == (1536, 28, 151936)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(TINY))
    model, tok = random_model_from_config(str(path), seed=3)
    assert len(tok) == model.config.vocab_size == 300
    assert model.config.eos_token_id == tok.eos_token_id and model.config.pad_token_id == tok.pad_token_id
    pieces = [tok.decode([i]) for i in range(len(tok))]
    assert all(pieces[3:]) and len(set(pieces[3:])) == len(tok) - 3  # one distinct piece per non-special id
    again, _ = random_model_from_config(str(path), seed=3)
    assert all((a == b).all() for a, b in zip(model.parameters(), again.parameters(), strict=True))


def test_a_missing_config_is_one_line(tmp_path):
    with pytest.raises(ValueError, match="model config"):
        random_model_from_config(str(tmp_path / "nope.json"))


def test_medians_leave_out_the_warm_up_step():
    m = Measured("grpo", [{"step_seconds": [9.0, 1.0, 2.0, 3.0], "peak_mb": 10.0, "tokens_per_step": [5, 6, 6, 6]},
                          {"step_seconds": [9.0, 4.0, 4.0, 4.0], "peak_mb": 30.0, "tokens_per_step": [5, 8, 8, 8]}])
    assert m.step_seconds == 3.0  # median of the runs' medians 2 and 4
    assert m.peak_mb == 20.0
    assert m.tokens_per_second == pytest.approx((3.0 + 2.0) / 2)  # 18 / 6 and 24 / 12


def test_gpu_check_runs_on_a_cpu_with_a_tiny_architecture(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(TINY))
    proc = subprocess.run([sys.executable, "-m", "cures.backends.trl.bench", "gpu", "--config", str(path),
                           "--allow-cpu", "--policies", "grpo"], env=ENV, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [line.split() for line in proc.stdout.splitlines() if line.startswith(("GRPOTrainer", "CuresGRPO"))]
    assert [r[1] for r in rows] == ["(TRL's)", "grpo"]
    assert float(rows[0][3]) == 1.0 and float(rows[0][5]) == 1.0  # TRL against itself
    assert all(float(r[2]) > 0 and float(r[4]) > 0 for r in rows)
    assert float(rows[1][7]) == 8.0  # rollouts per step: the shrunk setting's budget
    assert "GPU check finished" in proc.stdout


def test_gpu_check_without_a_gpu_says_so():
    proc = subprocess.run([sys.executable, "-m", "cures.backends.trl.bench", "gpu"], env=ENV, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 2 and "no CUDA device" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["--model", "/no/such/model"], "--model /no/such/model: model '/no/such/model' not found"),
    (["--model", "/no/such/config.json"], "--model /no/such/config.json:"),
    (["--policies", "grpo,nope"], "unknown policy 'nope'"),
    (["--rollouts", "18"], "multiple of --prompts"),
    (["--repeats", "0"], "--repeats must be at least 1; got 0"),
    (["--steps", "x"], "option --steps: invalid int value: 'x'"),
])
def test_bad_overhead_settings_are_one_line_errors(args, message, capsys):
    """In this process (each case would otherwise pay torch's import again); the command line itself is run once
    below."""
    from cures.backends.trl.bench import main

    with pytest.raises(SystemExit) as exit_info:
        main(["overhead", *args])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and message in err, err[-2000:]
    assert err.strip().count("\n") == 0


def test_a_bad_overhead_setting_on_the_command_line_is_one_line():
    proc = subprocess.run([sys.executable, "-m", "cures.backends.trl.bench", "overhead", "--rollouts", "18"],
                          env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "multiple of --prompts" in proc.stderr, proc.stderr[-2000:]
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr
