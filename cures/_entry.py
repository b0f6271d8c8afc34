"""The `cures` console script and `python -m cures`.

Starting the command line imports numpy, Numba and the command modules, which takes most of a second; a Ctrl-C or
SIGTERM in that window would otherwise surface as a traceback from inside some import. Until the command line is
up, either ends the process at once with the same one line and exit status as later (130 / 143); nothing has been
written yet. Then the command line's own handling takes over (`cures.cli._app.user_errors`).
"""

import os
import signal

EARLY = {signal.SIGINT: ("interrupted", 130), signal.SIGTERM: ("terminated (SIGTERM)", 143)}


def _exit_during_start_up(signum, frame):
    message, code = EARLY[signum]
    os.write(2, f"error: {message}\n".encode())
    os._exit(code)


def main() -> None:
    previous = {s: signal.signal(s, _exit_during_start_up) for s in EARLY}
    from cures.cli import app

    for s, handler in previous.items():
        signal.signal(s, handler)
    app(prog_name="cures")
