"""The one-line list of screens at the top of every page, the current one highlighted, each clickable."""

from __future__ import annotations

from rich.text import Text
from textual import events
from textual.widget import Widget

PAGES = (
    ("1", "overview", "Overview"),
    ("2", "charts", "Charts"),
    ("3", "runs", "Runs"),
    ("4", "branches", "Branches"),
    ("5", "quality", "Quality"),
    ("6", "sql", "SQL"),
)


def _width(key: str, label: str) -> int:
    return len(key) + len(label) + 3


class ScreenTabs(Widget):
    """Shows `1 Overview  2 Charts ...`, marks the page it sits on, and a note at the right (home, units)."""

    COMPONENT_CLASSES = {
        "screen-tabs--current",
        "screen-tabs--key",
        "screen-tabs--label",
        "screen-tabs--note",
    }

    def __init__(self, current: str, note: str = "") -> None:
        super().__init__()
        self.current = current
        self.note = note

    def render(self) -> Text:
        key_style = self.get_component_rich_style("screen-tabs--key")
        line = Text(no_wrap=True, overflow="ellipsis")
        for key, mode, label in PAGES:
            current = mode == self.current
            style = self.get_component_rich_style("screen-tabs--current" if current else "screen-tabs--label")
            line.append(f" {key}", key_style + style if current else key_style)
            line.append(f" {label} ", style)
        if self.note:
            gap = self.size.width - line.cell_len - len(self.note) - 1
            if gap > 0:
                line.append(" " * gap)
                line.append(self.note, self.get_component_rich_style("screen-tabs--note"))
        return line

    def on_click(self, event: events.Click) -> None:
        offset = 0
        for key, mode, label in PAGES:
            width = _width(key, label)
            if offset <= event.x < offset + width:
                self.app.switch_mode(mode)
                return
            offset += width
