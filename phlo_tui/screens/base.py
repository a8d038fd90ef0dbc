"""What every dashboard page shares: the screen tabs, the pipeline bar, the footer and worker error reporting."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, cast

from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import DataTable, Footer
from textual.widgets.data_table import CellDoesNotExist, RowDoesNotExist
from textual.worker import Worker

from engine.api.pages import PipelineStatus
from phlo_tui.widgets.nav import ScreenTabs
from phlo_tui.widgets.pipeline_bar import PipelineBar

if TYPE_CHECKING:
    from phlo_tui.app import PhloApp


class PhloScreen(Screen[None]):
    """A page. Subclasses compose their body in `compose_page` and start their reading worker in `reload`."""

    PAGE: ClassVar[str] = ""

    @property
    def phlo(self) -> PhloApp:
        return cast("PhloApp", self.app)

    def compose(self) -> ComposeResult:
        yield ScreenTabs(self.PAGE, note=self.phlo.note)
        yield PipelineBar()
        yield from self.compose_page()
        yield Footer()

    def compose_page(self) -> ComposeResult:
        raise NotImplementedError

    def reload(self) -> None:
        """Read what the page shows, in a worker."""

    def read_early(self) -> None:
        """Before the engine is there: read what the page can without it, in a worker (most pages wait)."""

    def redraw(self) -> None:
        """Draw the page again from what it last read (no I/O): after a switch of units."""

    def units_changed(self) -> None:
        tabs = self.query_one(ScreenTabs)
        tabs.note = self.phlo.note
        tabs.refresh()
        self.redraw()

    def on_screen_resume(self) -> None:
        self.units_changed()
        self.show_status()
        if self.phlo.ready:  # else EngineReady reloads the page on screen
            self.reload()
        else:
            self.call_after_refresh(self.read_early)  # after the first frame: it is what comes first

    def show_status(self) -> None:
        self.query_one(PipelineBar).show(self.phlo.pipeline, self.phlo.zone, self.phlo.busy)

    def status_polled(self, previous: PipelineStatus | None, status: PipelineStatus) -> None:
        """The app polled the run store; re-read the page when the lake may have changed (once the engine
        is there: EngineReady reloads the page anyway)."""
        self.show_status()
        if self.phlo.ready and (previous is None or previous.data_version != status.data_version):
            self.reload()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        self.phlo.worker_state_changed(event)


def restore_cursor(table: DataTable[object], key: str | None) -> None:
    """Put a rebuilt table's cursor back on the row it was on, by row key."""
    if key is None or table.row_count == 0:
        return
    try:
        table.move_cursor(row=table.get_row_index(key), animate=False)
    except RowDoesNotExist:
        table.move_cursor(row=0, animate=False)


def cursor_key(table: DataTable[object]) -> str | None:
    if table.row_count == 0:
        return None
    try:
        row_key, _ = table.coordinate_to_cell_key(table.cursor_coordinate)
    except CellDoesNotExist:
        return None
    return None if row_key.value is None else str(row_key.value)
