"""Page 6: DuckDB SQL over the lake's tables on dev or main, results in a table, errors in a modal."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import DataTable, Input, Label, Select
from textual.worker import get_current_worker

from phlo_tui.screens.base import PhloScreen

if TYPE_CHECKING:
    from engine.api.commands import QueryResult

MAX_ROWS = 1000
EXAMPLE = "select reading_date, round(time_in_range_pct, 1) as tir from gold.fct_daily_glucose_metrics order by 1 desc"


class QueryFinished(Message):
    def __init__(self, result: QueryResult, branch: str, seconds: float) -> None:
        super().__init__()
        self.result = result
        self.branch = branch
        self.seconds = seconds


class SqlScreen(PhloScreen):
    PAGE = "sql"
    BINDINGS = [Binding("escape", "leave_input", "Leave the query box", id="sql.leave", show=False)]

    def compose_page(self) -> ComposeResult:
        with Vertical(id="sql-page"):
            with Horizontal(id="sql-bar"):
                yield Select(
                    (("main", "main"), ("dev", "dev")), value="main", allow_blank=False, id="sql-branch"
                )
                yield Input(placeholder=EXAMPLE, id="sql-query")
            yield Label(
                "enter runs the query · escape leaves the box so number keys switch pages", id="sql-status"
            )
            yield DataTable(id="sql-result", zebra_stripes=True)

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    @on(Input.Submitted, "#sql-query")
    def submitted(self, event: Input.Submitted) -> None:
        if not self.phlo.engine_started():
            return
        sql = event.value.strip() or EXAMPLE
        branch = str(self.query_one(Select).value)
        self.query_one("#sql-status", Label).update(f"running on {branch}…")
        self.run_query(sql, branch)

    @work(thread=True, exclusive=True, exit_on_error=False, group="sql")
    def run_query(self, sql: str, branch: str) -> None:
        started = time.perf_counter()
        result = self.phlo.engine.query(sql, branch)
        if not get_current_worker().is_cancelled:
            self.post_message(QueryFinished(result, branch, time.perf_counter() - started))

    def on_query_finished(self, message: QueryFinished) -> None:
        result = message.result
        table = self.query_one(DataTable)
        table.clear(columns=True)
        table.add_columns(*result.columns)
        for row in result.rows[:MAX_ROWS]:
            table.add_row(*("" if v is None else str(v) for v in row))
        more = f" (first {MAX_ROWS} shown)" if len(result.rows) > MAX_ROWS else ""
        self.query_one("#sql-status", Label).update(
            f"{len(result.rows)} row(s){more} on {message.branch} in {message.seconds:.2f} s"
        )

    def action_leave_input(self) -> None:
        self.query_one(DataTable).focus()
