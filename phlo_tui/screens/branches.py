"""Page 4: dev against main per table, the gate that guards main, and promotion after a confirmation."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import DataTable, Label
from textual.worker import get_current_worker

from engine.api.pages import BranchesSnapshot, load_branches
from phlo_tui.screens.base import PhloScreen
from phlo_tui.screens.confirm_promote import DIFF_COLUMNS, ConfirmPromote, diff_row
from phlo_tui.screens.text_modal import TextModal


class DiffComputed(Message):
    def __init__(self, snapshot: BranchesSnapshot) -> None:
        super().__init__()
        self.snapshot = snapshot


class BranchesScreen(PhloScreen):
    PAGE = "branches"
    BINDINGS = [Binding("p", "promote", "Promote", tooltip="Promote dev → main", id="promote")]

    def __init__(self) -> None:
        super().__init__()
        self.snapshot: BranchesSnapshot | None = None
        self.promote_when_computed = False
        """p (or the palette, which opens this page first) came before the diff: ask once it is there."""

    def compose_page(self) -> ComposeResult:
        with Vertical(id="branches-page"):
            yield Label("computing the diff…", id="gate-state")
            yield Label("", id="promotion-state")
            yield DataTable(id="diff-table", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        self.query_one(DataTable).add_columns(*DIFF_COLUMNS)

    @work(thread=True, exclusive=True, exit_on_error=False, group="branches")
    def load(self) -> None:
        snapshot = load_branches(self.phlo.engine)
        if not get_current_worker().is_cancelled:
            self.post_message(DiffComputed(snapshot))

    def reload(self) -> None:
        self.load()

    def on_diff_computed(self, message: DiffComputed) -> None:
        self.snapshot = snapshot = message.snapshot
        gate = self.query_one("#gate-state", Label)
        gate.set_class(bool(snapshot.gate_errors), "error")
        gate.set_class(not snapshot.gate_errors, "ok")
        if snapshot.gate_errors:
            gate.update(
                "✗ gate held: promotion refused while these error checks fail:\n  "
                + "\n  ".join(snapshot.gate_errors)
            )
        else:
            gate.update("✓ gate passed: the last gate on dev found no error")
        promotion = self.query_one("#promotion-state", Label)
        last = snapshot.last_promotion
        when = (
            f"promotion {last.id} at {last.created_at.astimezone(ZoneInfo(self.phlo.zone)):%Y-%m-%d %H:%M}"
            if last
            else "never promoted"
        )
        if snapshot.diff_error:
            promotion.update(f"main: {when} · ✗ {snapshot.diff_error}")
        elif snapshot.changed and snapshot.gate_errors:
            promotion.update(
                f"main: {when} · dev is ahead in {len(snapshot.changed)} table(s): "
                "promotion waits for the gate (see Quality)"
            )
        elif snapshot.changed:
            promotion.update(f"main: {when} · dev is ahead in {len(snapshot.changed)} table(s): p promotes")
        else:
            promotion.update(f"main: {when} · main equals dev")
        table = self.query_one(DataTable)
        table.clear()
        for d in snapshot.diffs:
            table.add_row(*diff_row(d), key=d.table)
        if self.promote_when_computed:
            self.promote_when_computed = False
            self.action_promote()

    def action_promote(self) -> None:
        if not self.phlo.engine_started():
            return
        snapshot = self.snapshot
        status = self.phlo.pipeline
        gate_errors = status.gate_errors if status else snapshot.gate_errors if snapshot else ()
        if gate_errors:
            reasons = "\n".join(f"- {e}" for e in gate_errors)
            self.app.push_screen(
                TextModal(
                    "Promotion refused",
                    f"error checks of the last gate on dev still fail:\n{reasons}\n\n"
                    "see the Quality page (5); fix the source and run again (r)",
                    error=True,
                )
            )
            return
        if snapshot is None:
            self.promote_when_computed = True
            self.notify("computing the diff; promotion asks once it is there")
            return
        if not snapshot.changed:
            self.notify("nothing to promote: main already equals dev")
            return

        def confirmed(yes: bool | None) -> None:
            if yes:
                self.phlo.promote()

        self.app.push_screen(ConfirmPromote(snapshot.changed), confirmed)
