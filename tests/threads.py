"""OpenMP threads of the test processes. pytest-xdist runs one worker per core, and torch's intra-op pool (OpenMP,
whose idle threads spin) takes every core in each of them: oversubscribed, a step slows 3-4x (measured on the
2-core machine: a tiny GRPO step took 0.54 s with 2 threads beside one busy process, 0.15 s with 1). So each worker,
and each process it starts, gets cores // workers threads. Tests that compare thread counts set their own."""

import os


def limit_threads() -> None:
    """Called by conftest before anything imports torch (which reads OMP_NUM_THREADS once, at import)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1 and "OMP_NUM_THREADS" not in os.environ:
        os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // workers))


def thread_env() -> dict:
    """The thread limit, for the environment of a child process that a test builds from scratch."""
    return {"OMP_NUM_THREADS": os.environ["OMP_NUM_THREADS"]} if "OMP_NUM_THREADS" in os.environ else {}
