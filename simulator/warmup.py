"""Compile the engine's own kernels in a second process while the first compiles the policy's loop.

Numba compiles one function at a time in a process (a global compiler lock), so a first `cures simulate` keeps one
core busy compiling for most of its wall time while the other waits. Of what a first run compiles, the kernels
below do not depend on what the policy's `plan` compiles, and `run_steps` reaches them only after that plan: the
binomial draw of the simulated rollouts, the pass rates, the score statistics, the kernels of the policy's
`observe` (through the entry that `Policy.observe` calls), the gradient step, and the evaluation that follows the
first chunk of steps. `simulate` starts this module in a helper process that compiles exactly those, with the
argument types of the run (built by the same `cures.simulator.world.seed_world`), into the same on-disk cache; when
the main process reaches one of them, Numba finds it in the cache and loads it instead of compiling it. The helper
takes them in the reverse of the order the main process needs them, so that the two meet at most once.

Nothing here changes a result: the helper writes the same machine code the main process would have compiled, and
the main process compiles anything the helper has not finished. The helper runs only when it can pay: with a Numba
cache directory of this source tree (`cures._numba_cache`), at least two usable cores, a signature set not warmed
before (a marker file in that cache directory), and `CURES_COMPILE_HELPER` not set to 0. It ends with its parent.

    python -m cures.simulator.warmup POLICY CONFIG_JSON PARENT_PID     # what `simulate` runs
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np

from cures.simulator.config import SimConfig

SMALL = 2_048  # prompts of the world whose argument types the kernels are compiled for (types do not depend on it)
MARKER_DIR = "cures-warm"


def small_config(cfg: SimConfig) -> SimConfig:
    """The same world at a size that builds in milliseconds: every array keeps its dtype and number of dimensions."""
    return dataclasses.replace(cfg, n_prompts=min(cfg.n_prompts, SMALL), n_heldout=min(cfg.n_heldout, 16))


def engine_kernels(name: str, cfg: SimConfig) -> list[tuple[object, tuple]]:
    """(dispatcher, argument values) for each kernel the helper compiles, in the order it compiles them: the reverse
    of the order in which `run_steps` and `run_seed` first reach them."""
    from cures.policies.dispatch import observe_round
    from cures.simulator.engine import (
        COLUMNS,
        binomial,
        evaluate,
        gradient_step,
        pass_rates_of,
        score_statistics,
    )
    from cures.simulator.world import seed_world

    state, model, srng, C, T = seed_world(name, small_config(cfg), cfg.seed)
    P, S, B, prng = state.kernel, state.arrays, state.step, state.rng
    return [
        (evaluate, (S, model, C, T, np.empty(len(COLUMNS)), np.zeros(cfg.hist_bins, np.int64))),
        (gradient_step, (model, C, B, T, srng)),
        (observe_round, (P, S, B, prng)),  # the entry `Policy.observe` calls: the policy's observe and its kernels
        (score_statistics, (model, C, B.prompt[0], T.slot_p[0])),
        (pass_rates_of, (model, B.prompt[:1], C.tabular, T.slot_p[:1])),
        (binomial, (srng, B.n[0], T.slot_p[0])),
    ]


def signatures(kernels) -> list[tuple[object, tuple]]:
    """(dispatcher, Numba argument types) of each kernel."""
    from numba import typeof

    return [(dispatcher, tuple(typeof(a) for a in args)) for dispatcher, args in kernels]


def marker(sigs) -> Path | None:
    """The file that says these signatures were compiled into this cache directory (None: no cache directory)."""
    folder = os.environ.get("NUMBA_CACHE_DIR")
    if not folder:
        return None
    text = "\n".join(f"{d.py_func.__module__}.{d.py_func.__qualname__}{s}" for d, s in sigs)
    return Path(folder) / MARKER_DIR / hashlib.sha256(text.encode()).hexdigest()[:24]


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@contextlib.contextmanager
def compile_helper(name: str, cfg: SimConfig):
    """Run the body (the seeds of one policy) with the helper process compiling the engine's kernels beside it,
    when that can pay (see the module's note); the helper is stopped when the body ends, however it ends."""
    helper = None
    if os.environ.get("CURES_COMPILE_HELPER", "1") != "0" and _usable_cores() >= 2:
        try:
            done = marker(signatures(engine_kernels(name, cfg)))
        except Exception:  # a world this check cannot build small: the run itself will say what is wrong
            done = None
        if done is not None and not done.exists():
            try:
                helper = subprocess.Popen(
                    [sys.executable, "-m", "cures.simulator.warmup", name, json.dumps(cfg.to_dict()),
                     str(os.getpid())],
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            except OSError:  # no interpreter to start: the run compiles everything itself, as without a helper
                helper = None
    try:
        yield helper
    finally:
        if helper is not None and helper.poll() is None:
            helper.terminate()  # what it compiled is saved; Numba replaces cache files whole
            with contextlib.suppress(subprocess.TimeoutExpired):
                helper.wait(timeout=5)


def warm(name: str, cfg: SimConfig) -> Path | None:
    """Compile (or load) every kernel of `engine_kernels` for this run's types, then write the marker. A kernel that
    fails to compile here still gets the marker written: the run compiles it itself (and says why, if it fails
    there too), and no later run starts a helper that can only fail again."""
    sigs = signatures(engine_kernels(name, cfg))
    done = marker(sigs)
    try:
        for dispatcher, sig in sigs:
            dispatcher.compile(sig)
    except Exception:
        _touch(done)
        raise
    _touch(done)
    return done


def _touch(path: Path | None) -> None:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()


def _exit_with_parent(parent: int) -> None:
    """Leave as soon as the process that started this one (pid `parent`) is gone (killed, or finished without
    waiting): this process is then someone else's child."""
    while os.getppid() == parent:
        threading.Event().wait(0.2)
    os._exit(0)


def main(argv: list[str]) -> int:
    threading.Thread(target=_exit_with_parent, args=(int(argv[2]),), daemon=True).start()
    name, cfg = argv[0], SimConfig(**json.loads(argv[1]))
    try:
        warm(name, cfg)
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
