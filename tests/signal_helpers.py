"""Helpers for tests that signal the processes they start."""

import signal


def default_sigint():
    """Run in the child before exec: SIGINT back to its default. A shell starts background jobs with SIGINT
    ignored, and Python then installs no KeyboardInterrupt handler, so a test run from such a job (nohup, &) would
    send Ctrl-C to a process that cannot hear it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def signal_sweep_after_first_cell(args, out, sig, env, wait_for_cell=240):
    """Start `python -m cures sweep ARGS` (its --out is `out`), send `sig` a second after its first cell is saved,
    and return (exit code, seconds from the signal to the exit, stderr, cells saved)."""
    import subprocess
    import sys
    import time

    def finished():
        return len(list((out / "cells").glob("*.policies.parquet"))) if (out / "cells").is_dir() else 0

    proc = subprocess.Popen([sys.executable, "-m", "cures", "sweep", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, preexec_fn=default_sigint)
    deadline = time.time() + wait_for_cell
    while time.time() < deadline and finished() == 0 and proc.poll() is None:
        time.sleep(0.5)
    time.sleep(1.0)
    t0 = time.perf_counter()
    proc.send_signal(sig)
    try:
        proc.wait(timeout=60)
    finally:
        proc.kill()
    return proc.returncode, time.perf_counter() - t0, proc.stderr.read(), finished()
