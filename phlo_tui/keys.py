"""The app's keys: bindings with ids, the rows of the help screen and the command palette, and the keymap
check that turns an unknown id in the config into a readable start-up error."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from textual.binding import Binding, BindingType
from textual.screen import Screen

from engine.errors import ConfigError
from phlo_tui.screens.help import KeyRow

SCREENS = Binding.Group("Screens", compact=True)

APP_BINDINGS: list[BindingType] = [
    Binding("1", "switch_mode('overview')", "Overview", id="screen.overview", group=SCREENS),
    Binding("2", "switch_mode('charts')", "Charts", id="screen.charts", group=SCREENS),
    Binding("3", "switch_mode('runs')", "Runs", id="screen.runs", group=SCREENS),
    Binding("4", "switch_mode('branches')", "Branches", id="screen.branches", group=SCREENS),
    Binding("5", "switch_mode('quality')", "Quality", id="screen.quality", group=SCREENS),
    Binding("6", "switch_mode('sql')", "SQL", id="screen.sql", group=SCREENS),
    Binding("r", "run_now", "Run", id="run"),
    # Footer words are short so that q Quit shows at 80 columns; the help and the palette say more.
    Binding("u", "toggle_units", "Units", tooltip="Units: switch mg/dL ↔ mmol/L", id="units"),
    Binding("e", "export_report", "Clinic report (PDF)", id="report", show=False),
    Binding("t", "toggle_theme", "Dark/light", id="theme", show=False),
    Binding("ctrl+r,f5", "refresh", "Refresh", id="refresh", show=False),
    Binding("question_mark", "help", "Help", key_display="?", id="help"),
    Binding("q", "quit", "Quit", id="quit"),
]


def binding_ids(owners: Iterable[type[object]]) -> set[str]:
    """Every binding id of these classes (the app, its pages and dialogs): what a keymap may name."""
    ids: set[str] = set()
    for owner in owners:
        for binding in getattr(owner, "BINDINGS", []):
            if isinstance(binding, Binding) and binding.id:
                ids.add(binding.id)
    return ids


def check_keymap(keymap: Mapping[str, str], known: set[str]) -> None:
    """Raise ConfigError naming the ids the dashboard does not have."""
    unknown = sorted(set(keymap) - known)
    if unknown:
        raise ConfigError(
            f"keys: unknown binding id{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}",
            f"use one of {', '.join(sorted(known))}",
        )


def key_rows(screen: Screen[object]) -> list[KeyRow]:
    """(key, what it does, id) of each binding active on `screen`, for the help screen: the app's and its
    pages' keys (those with an id) first, then Textual's own (focus, copy)."""
    ours: list[KeyRow] = []
    textual: list[KeyRow] = []
    for key, active in screen.active_bindings.items():
        binding = active.binding
        if binding.description and not binding.system:
            rows = ours if binding.id else textual
            rows.append(
                (binding.key_display or key, binding.tooltip or binding.description, binding.id or "")
            )
    return ours + textual
