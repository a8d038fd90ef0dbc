"""Asks before promoting, showing per table what main will gain: snapshots, rows, days, schema changes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, DataTable, Label

if TYPE_CHECKING:
    from engine.api.commands import TableDiff


def days_text(days: tuple[str, ...]) -> str:
    if not days:
        return ""
    return f"{days[0]}..{days[-1]} ({len(days)})" if len(days) > 1 else days[0]


def diff_row(d: TableDiff) -> tuple[str, str, str, str, str, str]:
    return (
        d.table,
        str(d.snapshots_ahead),
        f"+{d.rows_added}" if d.rows_added else "0",
        f"-{d.rows_removed}" if d.rows_removed else "0",
        days_text(d.days_touched),
        "; ".join(d.schema_changes),
    )


DIFF_COLUMNS = ("table", "ahead", "added", "removed", "days", "schema")


class ConfirmPromote(ModalScreen[bool]):
    """Dismisses with True to promote."""

    BINDINGS = [
        Binding("y", "confirm", "Promote", id="promote.yes"),
        Binding("n,escape", "cancel", "Cancel", id="promote.no"),
    ]

    def __init__(self, changed: tuple[TableDiff, ...]) -> None:
        super().__init__()
        self.changed = changed

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-promote"):
            yield Label(
                f"Promote dev → main? {len(self.changed)} table(s) move together to dev's snapshot.",
                id="confirm-title",
            )
            yield DataTable(id="confirm-diff", cursor_type="none")
            with Horizontal(id="confirm-buttons"):
                yield Button("Promote (y)", id="yes", variant="warning")
                yield Button("Cancel (n)", id="no", variant="primary")

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns(*DIFF_COLUMNS)
        for d in self.changed:
            table.add_row(*diff_row(d))
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_confirm(self) -> None:
        self.dismiss(True)

    def action_cancel(self) -> None:
        self.dismiss(False)
