"""What a fresh `phlo-tui` command does around its import of the engine (light: the command line calls it
first): the prefetch of a `run`, and the cyclic garbage collector kept out of the import."""

from __future__ import annotations

import gc
import sys
from typing import TYPE_CHECKING

from engine.clock import clock_from_env
from engine.config import Settings
from engine.errors import PhloError

if TYPE_CHECKING:
    from engine.api.facade import Engine

PIPELINE_COMMANDS = ("run", "backfill", "import")
"""Commands whose Engine runs the pipeline (engine.pipeline is imported with the facade)."""

_collector_paused = False


def prefetch_run(settings: Settings) -> None:
    """Read the site in a forked child while this process imports the engine (engine.ingest.prefetch)."""
    from engine.ingest import prefetch

    try:
        now = clock_from_env()()
    except PhloError:
        return  # the engine says what is wrong with PHLO_NOW
    prefetch.start(settings, now)


def pause_collector() -> None:
    """Turn the cyclic garbage collector off until `engine_class` has imported the engine.

    Importing pyiceberg, pandas, pandera and the rest makes some 300 000 objects that live as long as the
    process, and the collector, woken by every few hundred new ones, walks them again and again: half a
    second and more of a run's CPU, for almost no garbage. For the command line's own process only (the
    program calls it; a library caller's collector is left alone)."""
    global _collector_paused
    if gc.isenabled():
        gc.disable()
        _collector_paused = True


UNUSED_MODULES = ("hypothesis", "geopandas")
"""Modules the program never uses that a library imports when it can: pandera imports hypothesis (in a
development environment, beside the test suite) for its data-synthesis strategies, a fifth of a second,
and tries to import geopandas at every dtype lookup it does not know at once (some 250 times a run, each
failed attempt searching sys.path again)."""


def leave_out_unused() -> None:
    """Have every import of `UNUSED_MODULES` fail at once, as if they were not installed (as they are not in
    a user's install). For the command line's own process only (the program calls it; a library caller's
    imports are left alone), and only for modules not imported already."""
    for name in UNUSED_MODULES:
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]


def engine_class(command: str | None) -> type[Engine]:
    """The facade, imported (with the pipeline for PIPELINE_COMMANDS); then, if `pause_collector` turned
    the collector off, what the imports made is frozen (gc.freeze: never walked again) and it is back on,
    for the command's own work."""
    global _collector_paused
    from engine.api.facade import Engine

    if command in PIPELINE_COMMANDS:
        from engine.lake.scratch import warm_up

        warm_up()  # DuckDB opens beside the rest of the import
        import engine.pipeline  # noqa: F401  (what the facade's first run would import)
    if _collector_paused:
        _collector_paused = False
        gc.freeze()
        gc.enable()
    return Engine
