"""`python -m cures` runs the command line."""

from cures.cli import app

app(prog_name="cures")
