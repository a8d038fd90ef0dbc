"""Signals for the processes a test starts."""

from __future__ import annotations

import signal


def sigint_default() -> None:
    """A Popen `preexec_fn`: the child takes Ctrl-C (SIGINT) as a person's terminal gives it, even when the
    suite itself runs with SIGINT ignored. A background job of a non-interactive shell (`cmd &`) inherits
    SIGINT ignored, and Python then installs no KeyboardInterrupt handler in its children."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
