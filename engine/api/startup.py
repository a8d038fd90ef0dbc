"""What a fresh `phlo-tui run` starts before it imports the engine (light: the command line calls it first)."""

from __future__ import annotations

from engine.clock import clock_from_env
from engine.config import Settings
from engine.errors import PhloError


def prefetch_run(settings: Settings) -> None:
    """Read the site in a forked child while this process imports the engine (engine.ingest.prefetch)."""
    from engine.ingest import prefetch

    try:
        now = clock_from_env()()
    except PhloError:
        return  # the engine says what is wrong with PHLO_NOW
    prefetch.start(settings, now)
