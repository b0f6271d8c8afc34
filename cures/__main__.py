"""`python -m cures` runs the command line."""

from cures._entry import main

main()
