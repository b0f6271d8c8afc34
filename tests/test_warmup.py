"""The compile helper of a first run (`cures.simulator.warmup`): it compiles exactly what the run would compile
itself (so the run loads it), it stops with the run, and it never starts where it cannot pay."""

import json
import os
import subprocess
import sys
import time

import pytest

from cures.simulator.config import SimConfig, build_config
from cures.simulator.warmup import compile_helper, engine_kernels, marker, signatures

SMALL = {"n_prompts": 300, "n_heldout": 20, "prompts_per_step": 8, "rollouts_per_step": 32, "steps": 4,
         "eval_every": 2, "seeds": 1}

# In a fresh interpreter: the kernels of cures that Numba compiles (not loads from the cache) while `warm` or one seed
# of the run executes.
RECORD = """
import json, sys
from numba.core import event
from cures.simulator.config import SimConfig, build_config
from cures.simulator.run import run_seed
from cures.simulator.warmup import warm
what, name, cfg = sys.argv[1], sys.argv[2], build_config(None, json.loads(sys.argv[3]))
compiled = []
class Record(event.Listener):
    def on_start(self, ev):
        f = ev.data["dispatcher"].py_func
        if f.__module__.startswith("cures."):
            compiled.append(f.__qualname__)
    def on_end(self, ev):
        pass
event.register("numba:compile", Record())
warm(name, cfg) if what == "warm" else run_seed(name, cfg, 0)
print(json.dumps(compiled))
"""


def _compiled(what: str, policy: str, overrides: dict, cache) -> list[str]:
    res = subprocess.run([sys.executable, "-c", RECORD, what, policy, json.dumps(overrides)], capture_output=True,
                         text=True, timeout=600,
                         env={**os.environ, "NUMBA_CACHE_DIR": str(cache), "CURES_COMPILE_HELPER": "0"})
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_the_run_loads_every_kernel_the_helper_compiled(tmp_path):
    helper = _compiled("warm", "grpo", SMALL, tmp_path / "warmed")
    assert {"binomial", "gradient_step", "evaluate", "observe_round", "update_counts"} <= set(helper)
    run = _compiled("run", "grpo", SMALL, tmp_path / "warmed")
    # each loaded from the cache, none compiled again, but for the policy's own `observe`: compiled into each of its
    # callers (`cures.policies.dispatch`), it has no cache entry of its own
    assert "run_steps" in run and set(run) & set(helper) == {"observe"}
    assert (tmp_path / "warmed" / "cures-warm").is_dir()
    # the control: from an empty cache the same run compiles the kernels the helper covers (the check above can fail)
    alone = _compiled("run", "grpo", SMALL, tmp_path / "empty")
    assert {"binomial", "gradient_step", "evaluate", "update_counts", "observe"} <= set(alone)


def test_marker_names_the_signatures_and_the_cache_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    cfg = build_config(None, SMALL)
    grpo, cures = marker(signatures(engine_kernels("grpo", cfg))), marker(signatures(engine_kernels("cures", cfg)))
    assert grpo.parent == cures.parent == tmp_path / "cures-warm" and grpo != cures
    big = build_config(None, {**SMALL, "n_prompts": 50_000})  # the same types at another size: the same marker
    assert marker(signatures(engine_kernels("grpo", big))) == grpo
    monkeypatch.delenv("NUMBA_CACHE_DIR")
    assert marker(signatures(engine_kernels("grpo", cfg))) is None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(") ")[1][0] != "Z"  # a zombie has ended


def test_helper_starts_only_when_it_can_pay_and_stops_with_the_body(tmp_path, monkeypatch):
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("CURES_COMPILE_HELPER", "1")
    cfg = build_config(None, SMALL)
    monkeypatch.setattr("cures.simulator.warmup._usable_cores", lambda: 2)
    with compile_helper("grpo", cfg) as helper:
        assert helper is not None and helper.poll() is None
    assert helper.poll() is not None  # terminated when the body ended
    monkeypatch.setattr("cures.simulator.warmup._usable_cores", lambda: 1)
    with compile_helper("grpo", cfg) as helper:
        assert helper is None  # one core: nothing to gain
    monkeypatch.setattr("cures.simulator.warmup._usable_cores", lambda: 2)
    monkeypatch.setenv("CURES_COMPILE_HELPER", "0")
    with compile_helper("grpo", cfg) as helper:
        assert helper is None
    monkeypatch.setenv("CURES_COMPILE_HELPER", "1")
    done = marker(signatures(engine_kernels("grpo", cfg)))
    done.parent.mkdir(parents=True)
    done.touch()
    with compile_helper("grpo", cfg) as helper:
        assert helper is None  # warmed before


ORPHAN = """
import subprocess, sys
import os
p = subprocess.Popen([sys.executable, "-m", "cures.simulator.warmup", "grpo", sys.argv[1], str(os.getpid())])
print(p.pid, flush=True)
"""


def test_helper_ends_when_its_parent_is_gone(tmp_path):
    cfg = build_config(None, SMALL)
    res = subprocess.run([sys.executable, "-c", ORPHAN, json.dumps(cfg.to_dict())], capture_output=True, text=True,
                         timeout=60, env={**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)})
    pid = int(res.stdout.split()[0])  # the parent has exited without waiting for it
    deadline = time.monotonic() + 20
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(pid)


@pytest.mark.parametrize("scenario", ["default", "paper-1.5b"])
def test_the_helper_rebuilds_the_runs_config_from_its_command_line(scenario):
    cfg = build_config(scenario, {"policy_params": {"tau": 0.2}, "init_pass_rate": "beta:0.3,0.3+zero:0.3"})
    assert SimConfig(**json.loads(json.dumps(cfg.to_dict()))) == cfg
