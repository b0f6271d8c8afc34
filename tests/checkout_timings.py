"""Timings of several checkouts measured side by side, to show that a change of the policy core costs nothing.

    python tests/checkout_timings.py compile /path/to/old/checkout . --repeats 3
    python tests/checkout_timings.py steps /path/to/old/checkout . --repeats 5
    python tests/checkout_timings.py pieces /path/to/old/checkout . --repeats 3
    python tests/checkout_timings.py startup . --repeats 5
    python tests/checkout_timings.py cold . --repeats 2
    python tests/checkout_timings.py first-use . --repeats 1
    python tests/checkout_timings.py first-use /path/to/old/checkout . --policies vip,mopps --repeats 3

`compile`: cold compile time of the twelve first policies through both of their callers. Each run is a fresh
interpreter with an empty NUMBA_CACHE_DIR that plans and observes one step of each through the Python interface and
runs a few
steps of the simulator's compiled loop for each (IRT and tabular): what the test suite compiles for the policies.

`pieces`: the best of five timings of two CurES pieces in compiled loops: 256 draws from a sum tree of 10,000 Eq. 14
weights, and Eq. 20's exact allocation of 2,048 rollouts over 256 prompts (64 varied weight vectors).

`steps`: per-step cost of `grpo` and `cures` at 10,000 prompts, 256 prompts and 2,048 rollouts per step, one
thread, in the compiled engine and in the vectorised NumPy reference (which calls the policy from Python), measured
as `cures bench` does (marginal seconds per step, compiled code warm).

`startup`: wall seconds of whole commands, each a fresh `python -m cures` process with a warm Numba cache: `--help`,
`policies`, and `simulate --policy cures --n-prompts 10000` (the README's demo).

`cold`: the same demo with an empty NUMBA_CACHE_DIR (what it compiles), then `simulate --policy grpo` in that cache
(the first use of another policy, compiling what `cures` did not).

`first-use`: the demo with an empty NUMBA_CACHE_DIR, then `simulate --policy P` for every other policy in that cache,
each the first use of P (the aim: at most 10 s each); `--policies` times only those, so that a few can be compared
over several alternating rounds.

Checkouts alternate within each repeat, so machine noise hits them alike; the table gives each checkout's median and
its ratio to the first checkout's.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMPILE = """
import numpy as np
from cures.policies import make_policy_for_budget
try:
    from cures.simulator.config import build_config
    from cures.simulator.run import run_seed
except ImportError:  # a checkout from before the one namespace (0.2)
    from simulator.config import build_config
    from simulator.run import run_seed
for name in ("cures", "cures-allocation", "cures-paper", "cures-released", "cures-sampling", "dapo", "greso", "grpo",
             "gvm", "knapsack", "mopps", "speed"):  # the policies every compared checkout has
    policy = make_policy_for_budget(name, 8, 32)
    state = policy.init(200, seed=0)
    while not policy.observe(state, np.zeros(policy.plan(state).prompt_ids.size)):
        pass
    for mode in ("irt", "tabular"):
        cfg = build_config(overrides={"n_prompts": 200, "n_heldout": 20, "prompts_per_step": 8, "rollouts_per_step": 32,
                                      "steps": 3, "eval_every": 3, "seeds": 1, "mode": mode})
        run_seed(name, cfg, seed=0)
"""

STEPS = """
import json
try:
    from cures.simulator.bench import _measure
except ImportError:  # a checkout from before the one namespace (0.2)
    from simulator.bench import _measure
out = {}
for policy in ("grpo", "cures"):
    for which, steps in (("engine", 300), ("vectorised", 60)):
        r = _measure(which, policy, None, 10_000, steps, 0, {"prompts_per_step": 256, "rollouts_per_step": 2048})
        out[f"{policy} {which} us/step"] = 1e6 * r["seconds_per_step"]
print(json.dumps(out))
"""

PIECES = """
import json, time
import numpy as np
from numba import njit
from cures.sumtree import leaves, new_tree, tree_draws, tree_rebuild
from cures.theory import allocate_into, sampling_weight_nb

@njit
def draw_loop(tree, h, rng, out, reps):
    for _ in range(reps):
        tree_draws(tree, h, rng, out)

@njit
def allocation_loop(W, out, reps):
    for _ in range(reps):
        for k in range(W.shape[0]):
            allocate_into(W[k], 2048, 2, 0, out[k])

def best_of(f, args, calls):
    f(*args, 1)
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        f(*args, calls)
        times.append((time.perf_counter() - t0) / calls)
    return 1e6 * min(times)

rng = np.random.default_rng(0)
tree, h = new_tree(10_000)  # Eq. 14 weights (tau 0.1) of Beta(0.5, 0.5) pass rates
leaves(tree, h, 10_000)[:] = [sampling_weight_nb(p, 0.1) for p in rng.beta(0.5, 0.5, 10_000)]
tree_rebuild(tree, h)
k = rng.integers(0, 30, (64, 256))  # 64 varied weight vectors: sqrt(p_hat (1 - p_hat)) of Beta counts
p_hat = (k + 1) / (k + rng.integers(0, 30, (64, 256)) + 2)
W = np.sqrt(p_hat * (1 - p_hat))
out = {"256 sum-tree draws us": best_of(draw_loop, (tree, h, np.random.default_rng(1), np.empty(256, np.int64)), 2000),
       "Eq. 20 allocation of 256 us": best_of(allocation_loop, (W, np.empty((64, 256), np.int64)), 30) / 64}
print(json.dumps(out))
"""


def _run(root: Path, args: list[str], env: dict) -> str:
    """stdout of `python ARGS` in checkout `root`; on failure (e.g. an old checkout without what is timed) its last
    error line, exit 2."""
    res = subprocess.run([sys.executable, *args], cwd=root, env={**os.environ, "PYTHONPATH": str(root), **env},
                         capture_output=True, text=True)
    if res.returncode != 0:
        last = (res.stderr.strip().splitlines() or ["no output"])[-1]
        print(f"checkout_timings.py: error: {root}: {' '.join(args[:1] if args[0] == '-c' else args)}: {last}",
              file=sys.stderr)
        sys.exit(2)
    return res.stdout


DEMO = ("simulate", "--policy", "cures", "--n-prompts", "10000")
STARTUP = {"--help s": ("--help",), "policies s": ("policies",), "warm simulate s": DEMO}


def _wall(root: Path, args: tuple[str, ...], env: dict) -> float:
    """Wall seconds of the whole command `cures ARGS` in a fresh process."""
    t0 = time.perf_counter()
    _run(root, ["-m", "cures", *args], env)
    return time.perf_counter() - t0


def measure(what: str, root: Path, only: list[str] | None = None) -> dict[str, float]:
    if what == "startup":
        return {key: _wall(root, args, {}) for key, args in STARTUP.items()}
    if what == "cold":
        with tempfile.TemporaryDirectory() as cache:
            first = _wall(root, DEMO, {"NUMBA_CACHE_DIR": cache})
            other = _wall(root, ("simulate", "--policy", "grpo", "--n-prompts", "10000"), {"NUMBA_CACHE_DIR": cache})
        return {"cold simulate cures s": first, "then grpo s": other}
    if what == "first-use":
        policies = _run(root, ["-c", "from cures.policies import available; print(' '.join(available()))"], {})
        unknown = sorted(set(only or ()) - set(policies.split()))
        if unknown:
            print(f"checkout_timings.py: error: --policies: {root} has no policy {', '.join(unknown)}", file=sys.stderr)
            sys.exit(2)
        with tempfile.TemporaryDirectory() as cache:
            times = {"cold simulate cures s": _wall(root, DEMO, {"NUMBA_CACHE_DIR": cache})}
            for name in policies.split():
                if name != "cures" and (only is None or name in only):
                    times[f"then {name} s"] = _wall(root, ("simulate", "--policy", name, "--n-prompts", "10000"),
                                                    {"NUMBA_CACHE_DIR": cache})
        return times
    if what == "compile":
        with tempfile.TemporaryDirectory() as cache:
            t0 = time.perf_counter()
            _run(root, ["-c", COMPILE], {"NUMBA_CACHE_DIR": cache})
            return {"cold compile s": time.perf_counter() - t0}
    code = STEPS if what == "steps" else PIECES
    return json.loads(_run(root, ["-c", code], {"NUMBA_NUM_THREADS": "1"}).strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("compile", "steps", "pieces", "startup", "cold", "first-use"))
    parser.add_argument("roots", nargs="+", type=Path, help="checkouts to compare (the first is the reference)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--policies", help="first-use: only these policies (comma-separated)")
    args = parser.parse_args()
    for root in args.roots:
        if not (root / "cures" / "sumtree.py").is_file():
            parser.error(f"{root} is not a checkout of this project (no cures/sumtree.py)")
    if args.what not in ("compile", "cold", "first-use"):
        for root in args.roots:  # compile (or load) each checkout's kernels before timing anything
            measure(args.what, root.resolve())
    runs: dict[Path, list[dict]] = {root: [] for root in args.roots}
    for _ in range(args.repeats):
        for root in args.roots:
            runs[root].append(measure(args.what, root.resolve(), args.policies and args.policies.split(",")))
    ref = {k: statistics.median(r[k] for r in runs[args.roots[0]]) for k in runs[args.roots[0]][0]}
    for key in ref:
        print(key)
        for root, rs in runs.items():
            values = [r[key] for r in rs]
            med = statistics.median(values)
            digits = 2 if key.endswith(" s") else 1
            print(f"  {str(root):36s} median {med:10.{digits}f}  ({', '.join(f'{v:.{digits}f}' for v in values)})  "
                  f"ratio {med / ref[key]:.3f}")


if __name__ == "__main__":
    main()
