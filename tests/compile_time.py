"""Cold compile time of every policy through both of its callers, measured side by side for several checkouts.

    python tests/compile_time.py /path/to/old/checkout . --repeats 3

Each run is a fresh interpreter with an empty NUMBA_CACHE_DIR that plans and observes one step of every policy
through the Python interface and runs a few steps of the simulator's compiled loop for each (IRT and tabular);
that is what the test suite compiles for the policies. Checkouts alternate within each repeat, so machine noise
hits them alike; the table gives each checkout's median and its ratio to the first.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORKLOAD = """
import numpy as np
from cures.policies import available, make_policy_for_budget
from simulator.config import build_config
from simulator.run import run_seed
for name in available():
    policy = make_policy_for_budget(name, 8, 32)
    state = policy.init(200, seed=0)
    while not policy.observe(state, np.zeros(policy.plan(state).prompt_ids.size)):
        pass
    for mode in ("irt", "tabular"):
        cfg = build_config(overrides={"n_prompts": 200, "n_heldout": 20, "batch_size": 8, "budget": 32, "steps": 3,
                                      "eval_every": 3, "seeds": 1, "mode": mode})
        run_seed(name, cfg, seed=0)
"""


def cold_compile_seconds(root: Path) -> float:
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache, "PYTHONPATH": str(root)}
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", WORKLOAD], cwd=root, env=env, check=True)
        return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("roots", nargs="+", type=Path, help="checkouts to compare (the first is the reference)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    times = {root: [] for root in args.roots}
    for _ in range(args.repeats):
        for root in args.roots:
            times[root].append(cold_compile_seconds(root.resolve()))
    ref = statistics.median(times[args.roots[0]])
    for root, ts in times.items():
        med = statistics.median(ts)
        print(f"{str(root):40s} median {med:6.1f} s  ({', '.join(f'{t:.1f}' for t in ts)})  ratio {med / ref:.3f}")


if __name__ == "__main__":
    main()
