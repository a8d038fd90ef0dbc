"""A modal with text the user must read and may copy: an error with its hint, failing sample rows, a payload."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label, TextArea


class TextModal(ModalScreen[None]):
    """Escape closes; `c` copies the whole text, or `copy_text` (OSC 52); the text area also selects
    and copies parts."""

    BINDINGS = [
        Binding("escape", "dismiss", "Close", id="modal.close"),
        Binding("c", "copy", "Copy all", id="modal.copy"),
    ]

    def __init__(self, title: str, text: str, *, error: bool = False, copy_text: str | None = None) -> None:
        super().__init__(classes="error" if error else "")
        self.title_text = title
        self.text = text
        self.copy_text = text if copy_text is None else copy_text

    def compose(self) -> ComposeResult:
        with Vertical(id="text-modal"):
            yield Label(self.title_text, id="text-modal-title")
            yield TextArea(self.text, read_only=True, soft_wrap=True, id="text-modal-body")
            with Horizontal(id="text-modal-buttons"):
                yield Button("Copy", id="copy")
                yield Button("Close", id="close", variant="primary")

    def on_mount(self) -> None:
        self.query_one(TextArea).cursor_blink = False
        self.query_one("#close", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "copy":
            self.action_copy()
        else:
            self.dismiss()

    def action_copy(self) -> None:
        self.app.copy_to_clipboard(self.copy_text)
        self.notify("copied to the clipboard")
