"""Where a sweep's cells run: `processes` (this machine, `jobs` spawned processes) or `ray` (Ray tasks: a local Ray
started for the sweep, or an existing cluster at `address`).

Both take the same picklable function and argument list, call `on_result(result)` in the driver as each call
finishes (in finishing order), and stop every pending call on Ctrl-C / SIGTERM or the first failure (the exception
is re-raised as the task raised it). The driver writes the results, so Ray workers need no shared filesystem: every
node needs only the same version of cures installed (checked per task).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import socket
from collections.abc import Callable, Sequence

EXECUTORS = ("processes", "ray")
RAY_INSTALL = "pip install 'cures[ray]'"


def _ignore_sigint():
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver handles Ctrl-C and stops the workers


def run_in_processes(fn: Callable, args: Sequence, jobs: int, on_result: Callable) -> None:
    """`fn(a)` for each of `args` in at most `jobs` spawned processes on this machine."""
    pool = multiprocessing.get_context("spawn").Pool(max(1, min(jobs, len(args))), initializer=_ignore_sigint)
    try:
        for result in pool.imap_unordered(fn, args):
            on_result(result)
        pool.close()
    except BaseException:
        pool.terminate()  # Ctrl-C or a failed call: stop every worker now; what finished has been handed over
        raise
    finally:
        pool.join()


def check_ray_address(address: str | None, option: str = "--address") -> None:
    """One-line ValueError for an address Ray would retry for minutes: `host:port` (or `ray://host:port`) that does
    not accept a TCP connection within 5 s. `auto` and None are left to Ray (None: RAY_ADDRESS or a local Ray)."""
    if address is None or address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"{option} {address}: expected HOST:PORT (a Ray head's GCS address), ray://HOST:PORT or "
                         "auto")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as exc:
        raise ValueError(f"{option} {address}: no Ray head answers there ({exc.strerror or exc})") from None


def check_executor(executor: str, address: str | None) -> None:
    """One-line ValueErrors, before any work: an unknown executor, an address without Ray, an unreachable head
    (`address`, else RAY_ADDRESS)."""
    if executor not in EXECUTORS:
        raise ValueError(f"--executor must be one of {', '.join(EXECUTORS)}; got {executor!r}")
    if address is not None and executor != "ray":
        raise ValueError("--address is the Ray cluster to run on: give it with --executor ray")
    if executor == "ray":
        check_ray_address(address or os.environ.get("RAY_ADDRESS") or None, "--address" if address else "RAY_ADDRESS")


def _versioned(fn: Callable, version: str):
    """`fn` as a Ray task body that first checks the worker's cures version against the driver's."""

    def call(a):
        import cures

        if cures.__version__ != version:
            raise ValueError(f"node {socket.gethostname()} runs cures {cures.__version__}, the driver "
                             f"{version}: install the same version on every node")
        return fn(a)

    return call


def run_on_ray(fn: Callable, args: Sequence, jobs: int | None, on_result: Callable, address: str | None = None) \
        -> None:
    """`fn(a)` for each of `args` as Ray tasks (one CPU each), at most `jobs` in flight (None: as many as the cluster
    has CPUs). Connects to `address` (a running cluster; None: RAY_ADDRESS if set, else a local Ray with `jobs`
    CPUs started for this call and shut down after it); `run_sweep` has checked it with `check_executor`."""
    try:
        import ray
    except ImportError:
        raise ValueError(f"--executor ray needs Ray, which is not installed: {RAY_INSTALL}") from None
    import logging

    import cures

    started_here = not ray.is_initialized()
    if started_here:
        local = address is None and not os.environ.get("RAY_ADDRESS")
        handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        ray_log = logging.getLogger("ray")
        level = ray_log.level
        ray_log.setLevel(logging.ERROR)  # its start-up notes (token auth on, ...) are not the sweep's output
        try:
            ray.init(address=address, num_cpus=jobs if local else None, include_dashboard=False,
                     log_to_driver=False, logging_level=logging.ERROR, configure_logging=False)
        finally:
            ray_log.setLevel(level)
        for sig, handler in handlers.items():  # Ray's core worker installs C handlers that abort on SIGTERM:
            if handler is not None:              # the caller's (Ctrl-C / SIGTERM stop the sweep cleanly) come back
                signal.signal(sig, handler)
    try:
        if jobs is None:
            jobs = max(1, int(ray.cluster_resources().get("CPU", 1)))
        task = ray.remote(num_cpus=1, max_retries=0)(_versioned(fn, cures.__version__))
        waiting, pending = list(args), []
        try:
            while waiting or pending:
                while waiting and len(pending) < jobs:
                    pending.append(task.remote(waiting.pop(0)))
                done, pending = ray.wait(pending, num_returns=1)
                try:
                    result = ray.get(done[0])
                except ray.exceptions.RayTaskError as exc:  # the task's own exception, not Ray's wrapper of it
                    raise (exc.cause if isinstance(exc.cause, BaseException) else exc) from None
                on_result(result)
        except BaseException:
            for ref in pending:  # Ctrl-C or a failed cell: stop what is still running; finished cells are saved
                ray.cancel(ref, force=True)
            # let the cancelled tasks' replies arrive before the shutdown below: one landing during it aborted the
            # driver in Ray's task manager (a C++ check in CompletePendingTask, 1 of 8 local runs)
            with contextlib.suppress(Exception):
                ray.wait(pending, num_returns=len(pending), timeout=5)
            raise
    finally:
        if started_here:
            ray.shutdown()
