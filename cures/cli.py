"""The `cures` command line. Heavy subsystems (simulator, analysis, backends) are imported inside their commands."""

from __future__ import annotations

import functools
import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

import cures

app = typer.Typer(
    name="cures",
    help="CurES curriculum policies for RL on verifiable rewards: sample prompts by rho* and allocate rollouts by "
    "sigma (arXiv 2510.01037).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)


def fail(message: str, code: int = 2):
    """Print a one-line error and exit with `code`."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def user_errors(fn):
    """Turn the library's ValueError (bad input) into a one-line error and exit code 2, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (ValueError, FileNotFoundError) as exc:
            fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)

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


def _fmt(value) -> str:
    if value is None:
        return "none"
    if isinstance(value, tuple):
        return ",".join(f"{v:g}" for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


@app.command()
@user_errors
def policies(
    name: Annotated[str | None, typer.Argument(help="Show one policy in full: its rule and every parameter.")] = None,
):
    """List every policy: name, one-line description, parameters with defaults."""
    from cures.policies import available, get_spec

    if name is None:
        table = Table(title="cures policies", show_lines=True)
        table.add_column("policy", style="bold cyan", no_wrap=True)
        table.add_column("description")
        table.add_column("parameters (defaults)")
        for n in available():
            spec = get_spec(n)
            params = "\n".join(f"{p.name}={p.display or _fmt(p.default)}" for p in spec.params)
            table.add_row(n, spec.summary, params)
        console.print(table)
        console.print("Details: [bold]cures policies NAME[/]")
        return
    spec = get_spec(name)
    console.print(f"[bold cyan]{spec.name}[/]: {spec.summary}\n", highlight=False)
    console.print(spec.doc.strip(), highlight=False, markup=False, soft_wrap=True)
    console.print(f"\nloss weighting: {spec.loss_weighting}")
    table = Table(title=f"{spec.name} parameters")
    table.add_column("parameter", style="bold", no_wrap=True)
    table.add_column("default", no_wrap=True)
    table.add_column("meaning")
    for p in spec.params:
        table.add_row(p.name, p.display or _fmt(p.default), p.help)
    console.print(table)


def run():  # pragma: no cover - console-script convenience
    sys.exit(app())


if __name__ == "__main__":  # pragma: no cover
    app()
