"""`cures policies` and `cures scenarios`: what can be run."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from cures.cli._app import app, console, user_errors


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
        console.print(Text.assemble("Details: ", ("cures policies NAME", "bold")))
        return
    spec = get_spec(name)
    console.print(Text.assemble((spec.name, "bold cyan"), f": {spec.summary}\n"), highlight=False)
    console.print(spec.doc.strip(), highlight=False, markup=False, soft_wrap=True)
    console.print(f"\nloss weighting: {spec.loss_weighting}")
    table = Table(title=f"{spec.name} parameters")
    table.add_column("parameter", style="bold", no_wrap=True)
    table.add_column("default", no_wrap=True)
    table.add_column("meaning")
    for p in spec.params:
        table.add_row(p.name, p.display or _fmt(p.default), p.help)
    console.print(table)



@app.command()
def scenarios():
    """List the named simulation scenarios."""
    from cures.simulator.config import SCENARIO_DIR, available_scenarios

    for name in available_scenarios():
        first = (SCENARIO_DIR / f"{name}.toml").read_text().splitlines()[0]
        console.print(Text.assemble((name, "bold"), f": {first.removeprefix('description = ').strip(chr(34))}"))
