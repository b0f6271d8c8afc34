"""Test-wide settings: no network model hubs, no Hypothesis deadline (first calls compile Numba kernels), and each
xdist worker's share of OpenMP threads."""

import os
import subprocess
import sys

import pytest
from hypothesis import settings
from threads import limit_threads

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
# The first-run compile helper (cures.simulator.warmup) uses a spare core; the suite already runs one worker per core,
# so it stays off here except where tests/test_warmup.py turns it on.
os.environ.setdefault("CURES_COMPILE_HELPER", "0")
limit_threads()  # one worker per core: each gets its share of OpenMP threads (tests/threads.py)

settings.register_profile("cures", deadline=None)
settings.load_profile("cures")


@pytest.fixture
def outputs_by_thread_count():
    """`run(script, timeout)`: the stdout of `python -c script THREADS` with 1 and then 2 Numba/OpenMP threads (the
    thread count is also argv[1]); each run must succeed."""

    def run(script: str, timeout: int) -> list[str]:
        outputs = []
        for threads in ("1", "2"):
            env = {"PATH": "/usr/bin:/bin", "NUMBA_NUM_THREADS": threads, "OMP_NUM_THREADS": threads}
            res = subprocess.run([sys.executable, "-c", script, threads], capture_output=True, text=True, env=env,
                                 timeout=timeout)
            assert res.returncode == 0, res.stderr
            outputs.append(res.stdout)
        return outputs

    return run
