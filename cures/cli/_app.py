"""The `cures` application object and what every command shares: one-line usage errors, the consoles, `fail`,
`user_errors` (bad input -> one line and exit 2, Ctrl-C -> exit 130, SIGTERM -> exit 143), progress bars and the
simulator's options."""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import sys
import threading
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

import cures
from cures.renamed import RENAMED_OPTIONS


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler's preemption or `kill`), raised in the main thread so that every command stops as on
    Ctrl-C: staged results are kept or dropped whole, worker processes and threads are stopped; exit 143."""


_sigterm_seen = threading.Event()


def _raise_terminated(signum, frame):
    _sigterm_seen.set()  # remembered: a library may re-raise our Terminated as a plain KeyboardInterrupt (Ray does)
    raise Terminated


def _interrupted(exc: KeyboardInterrupt) -> tuple[str, int]:
    """The error line and exit code of a stop: SIGTERM 143, Ctrl-C 130."""
    if isinstance(exc, Terminated) or _sigterm_seen.is_set():
        return "terminated (SIGTERM)", 143
    return "interrupted", 130


@contextlib.contextmanager
def sigterm_as_interrupt():
    """SIGTERM raises `Terminated` for the duration (main thread only; the previous handler comes back after).
    `cures train` replaces it while training with its own, which checkpoints first."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class OneLineUsageErrors(typer.Typer):
    """typer.Typer whose usage errors (an unknown option, a value of the wrong type, a bad choice) end in one line
    naming the option and the value, exit 2, instead of a framed block."""

    def __call__(self, *args, **kwargs):
        if "standalone_mode" in kwargs:
            return super().__call__(*args, **kwargs)
        try:  # typer vendors click from 0.2x on; older typer uses click itself
            from typer._click.exceptions import ClickException, NoArgsIsHelpError
            from typer.exceptions import Abort
        except ImportError:  # pragma: no cover
            from click.exceptions import Abort, ClickException, NoArgsIsHelpError

        try:
            with sigterm_as_interrupt():
                code = super().__call__(*args, standalone_mode=False, **kwargs)
        except NoArgsIsHelpError as exc:
            console.print(exc.ctx.get_help(), highlight=False, markup=False)
            sys.exit(exc.exit_code)
        except ClickException as exc:
            ctx = getattr(exc, "ctx", None)
            where = f" (see {ctx.command_path} --help)" if ctx is not None else ""
            new = RENAMED_OPTIONS.get(getattr(exc, "option_name", None))
            message = f"{exc.option_name} was renamed {new} in cures 0.3" if new else exc.format_message()
            err_console.print(_error_line(f"{message}{where}"), highlight=False, soft_wrap=True)
            sys.exit(exc.exit_code)
        except Abort:
            err_console.print(_error_line("interrupted"), highlight=False)
            sys.exit(130)
        sys.exit(code if isinstance(code, int) else 0)


app = OneLineUsageErrors(
    name="cures",
    help="CurES curriculum policies for RL on verifiable rewards: sample prompts by rho* and allocate rollouts by "
    "sigma (arXiv 2510.01037).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# No markup, no emoji codes: what is printed holds user text (paths, values, file contents) that must appear as
# typed; "[/]" in it would otherwise raise rich's MarkupError, "[red]" would vanish and ":fire:" become an emoji.
# Styles come from Text objects.
console = Console(markup=False, emoji=False)
err_console = Console(stderr=True, markup=False, emoji=False)


def _error_line(message: str) -> Text:
    return Text.assemble(("error:", "bold red"), " ", message)


def fail(message: str, code: int = 2):
    """Print a one-line error and exit with `code`."""
    err_console.print(_error_line(message), highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def user_errors(fn):
    """Turn the library's ValueError (bad input) and an OSError (a full disk, an unwritable path) into a one-line
    error and exit code 2, Ctrl-C into "interrupted" and exit code 130, SIGTERM into "terminated (SIGTERM)" and 143;
    never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (ValueError, FileNotFoundError) as exc:
            fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        except KeyboardInterrupt as exc:
            message, code = _interrupted(exc)
            if threading.active_count() > 1 or "ray" in sys.modules:
                # a worker thread inside a chunk of compiled steps, or compiling a kernel (minutes on a first run),
                # would hold the interpreter's exit until it finishes; and after a Ray sweep (whose cluster its own
                # `finally` has shut down) Ray's teardown at interpreter exit turned the status into 1 (seen twice
                # in CI, once for Ctrl-C, once for SIGTERM). Results are staged: nothing is lost by skipping it.
                err_console.print(_error_line(message), highlight=False)
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
            fail(message, code=code)
        except MemoryError as exc:
            fail(f"out of memory ({exc or 'allocation failed'}); choose smaller sizes")
        except OSError as exc:  # a full disk, a read-only or vanished directory: results are staged, none half-written
            where = f" ({exc.filename})" if exc.filename else ""
            reason = (exc.strerror or str(exc) or type(exc).__name__).splitlines()[0]
            fail(f"{reason}{where}; nothing half-written was kept: free the space or fix the path and run again")

    return wrapper


def _version(value: bool):
    if value:
        console.print(f"cures {cures.__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", help="Print the version and exit.", callback=_version, is_eager=True)
    ] = False,
):
    """CurES toolkit."""


ScenarioOpt = Annotated[str | None, typer.Option("--scenario", help="Named scenario (see `cures scenarios`) or a "
                                                 ".toml file.")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="Override a setting: key=value, or policy.PARAM=value;"
                                                  " repeatable.")]


def sim_config(scenario, n_prompts, steps, prompts_per_step, rollouts_per_step, seeds, seed, init_pass_rate, estimator,
               threads,
                eval_every, max_rollouts, sets):
    from cures.simulator.config import build_config, parse_overrides

    explicit = {k: v for k, v in {
        "n_prompts": n_prompts, "steps": steps, "prompts_per_step": prompts_per_step,
                                  "rollouts_per_step": rollouts_per_step, "seeds": seeds,
        "seed": seed, "init_pass_rate": init_pass_rate, "estimator": estimator, "threads": threads,
        "eval_every": eval_every, "max_rollouts": max_rollouts}.items() if v is not None}
    settings, policy = parse_overrides(sets or [])
    settings.update(explicit)
    return build_config(scenario, settings, policy)


def progress_bar(total: int, what: str = "simulating steps"):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(TextColumn("{task.description}", style="progress.description", markup=False), BarColumn(),
                   MofNCompleteColumn(), TimeElapsedColumn(), console=err_console, transient=True,
                   disable=not err_console.is_terminal)
    return bar, bar.add_task(what, total=total)


SIM_OPTIONS = dict(
    n_prompts=typer.Option("--n-prompts", help="Training prompts N."),
    steps=typer.Option("--steps", help="Training steps."),
    prompts_per_step=typer.Option("--prompts-per-step", help="Prompts per step m."),
    rollouts_per_step=typer.Option("--rollouts-per-step", help="Rollouts per step N (policies that spend a total; "
                                   "fixed-n ones get n = N / m)."),
    seeds=typer.Option("--seeds", help="Independent seeds (run in parallel threads)."),
    seed=typer.Option("--seed", help="First seed."),
    init_pass_rate=typer.Option("--init-pass-rate", help="Initial pass rates: beta:A,B; uniform; "
                                "beta:A,B+zero:W0+one:W1; or a counts file (.json counters or .csv)."),
    estimator=typer.Option("--estimator", help="grpo, dr_grpo, rloo or reinforce++."),
    threads=typer.Option("--threads", help="Worker threads for the seeds."),
    eval_every=typer.Option("--eval-every", help="Evaluate every this many steps."),
    max_rollouts=typer.Option("--max-rollouts", help="Stop each seed at this many rollouts."),
)


