"""Helpers for tests that signal the processes they start."""

import signal


def default_sigint():
    """Run in the child before exec: SIGINT back to its default. A shell starts background jobs with SIGINT
    ignored, and Python then installs no KeyboardInterrupt handler, so a test run from such a job (nohup, &) would
    send Ctrl-C to a process that cannot hear it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
