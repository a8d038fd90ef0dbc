"""The real `phlo-tui --demo` in a real terminal (tmux): a fresh home fills itself, pages switch, q exits 0."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from engine.clock import NOW_ENV
from tests.simclock import START

TIMEOUT_S = 120.0


class Terminal:
    """A detached tmux session running one command; reads the screen with capture-pane."""

    def __init__(self, name: str) -> None:
        self.name = name

    def screen(self) -> str:
        return subprocess.run(
            ["tmux", "capture-pane", "-p", "-t", self.name], capture_output=True, text=True, check=True
        ).stdout

    def press(self, *keys: str) -> None:
        subprocess.run(["tmux", "send-keys", "-t", self.name, *keys], check=True)

    def wait_for(self, shown: Callable[[str], bool], what: str) -> str:
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline:
            text = self.screen()
            if shown(text):
                return text
            time.sleep(0.2)
        raise AssertionError(f"the terminal never showed {what}:\n{self.screen()}")


@pytest.fixture
def terminal(tmp_path: Path) -> Iterator[tuple[Terminal, Path]]:
    with demo_session(tmp_path, tmp_path / "home") as session:
        yield session


@contextmanager
def demo_session(
    tmp_path: Path, home: Path, size: tuple[int, int] = (100, 32)
) -> Iterator[tuple[Terminal, Path]]:
    """`phlo-tui --demo` on `home` in a new tmux session; the file gets its exit code."""
    assert shutil.which("tmux"), "this test needs tmux"
    name = f"phlo-test-{uuid.uuid4().hex[:8]}"
    exit_file = tmp_path / "exit-code"
    env = {
        "PHLO_HOME": str(home),
        "PHLO_CONFIG": str(tmp_path / "no-config.toml"),
        "PHLO_MANAGE_POSTGRES": "false",
        "PHLO_TIMEZONE": "UTC",
        "RUNTIME__DLTHUB_TELEMETRY": "false",
        NOW_ENV: START.isoformat(),  # the demo's simulator and engine share it
    }
    exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    command = (
        # Without the COLUMNS and LINES pytest may export: Textual would take them over the terminal size.
        f"env -u COLUMNS -u LINES {exports} {shlex.quote(sys.executable)} -m phlo_tui.cli --demo; "
        f"echo $? > {shlex.quote(str(exit_file))}; sleep 60"
    )
    subprocess.run(
        ["tmux", "new-session", "-d", "-s", name, "-x", str(size[0]), "-y", str(size[1]), command],
        check=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    try:
        yield Terminal(name), exit_file
    finally:
        subprocess.run(["tmux", "kill-session", "-t", name], capture_output=True)


def test_demo_in_a_real_terminal(terminal: tuple[Terminal, Path]) -> None:
    term, exit_file = terminal
    overview = term.wait_for(lambda s: "GMI" in s and "mg/dL · " in s, "glucose figures")
    assert "Time in range" in overview and "14 d" in overview and "last 24 h" in overview
    term.press("2")
    term.wait_for(lambda s: "% of readings per day" in s, "the Charts page")
    term.press("3")
    runs = term.wait_for(lambda s: "backfill" in s and "fetch" in s, "the Runs page with the backfill")
    assert "succeeded" in runs
    term.press("u")
    term.press("1")
    term.wait_for(lambda s: "mmol/L · " in s and "3.9–10.0" in s, "the Overview in mmol/L")
    term.press("q")
    deadline = time.monotonic() + TIMEOUT_S
    while not exit_file.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert exit_file.read_text().strip() == "0"


def wait_for_exit(exit_file: Path) -> str:
    deadline = time.monotonic() + TIMEOUT_S
    while not exit_file.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    return exit_file.read_text().strip()


def test_an_engine_that_cannot_start_exits_with_its_message(tmp_path: Path) -> None:
    """The frame paints before the engine is constructed; its error still ends the app with the message
    on the restored terminal and the error's exit code."""
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    with demo_session(tmp_path, blocked / "home") as (term, exit_file):
        screen = term.wait_for(lambda s: "phlo-tui: error:" in s, "the error")
        assert "cannot use the phlo home" in screen and "hint:" in screen and "Traceback" not in screen
        assert wait_for_exit(exit_file) == "1"


def legend_lines(screen: str) -> list[str]:
    """The screen's lines that hold the five bands' squares (the Overview's legend, the TIR chart's)."""
    return [line for line in screen.splitlines() if line.count("■") == 5]


def assert_fits(screen: str, what: str) -> None:
    lines = screen.splitlines()
    assert "Traceback" not in screen, screen
    assert "? Help" in lines[-1] and "q Quit" in lines[-1], f"{what}: the footer is cut:\n{screen}"
    assert legend_lines(screen), f"{what}: the band legend is not on one line:\n{screen}"


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
def test_the_demo_fits_80x24_and_120x40(tmp_path: Path, size: tuple[int, int]) -> None:
    """Issue 14 in a real terminal: on each page the footer shows ? Help and q Quit, the band legends stay
    on one line in both units, and no traceback shows."""
    with demo_session(tmp_path, tmp_path / "home", size) as (term, exit_file):
        overview = term.wait_for(lambda s: "GMI" in s and legend_lines(s), "the Overview's figures")
        assert_fits(overview, "Overview in mg/dL")
        term.press("u")
        overview = term.wait_for(lambda s: "mmol/L · " in s and ">13.9 " in s, "the Overview in mmol/L")
        assert_fits(overview, "Overview in mmol/L")
        term.press("2")
        charts = term.wait_for(lambda s: "% of readings per day" in s and "│" in s, "the daily TIR chart")
        assert_fits(charts, "Charts in mmol/L")
        assert ">13.9 mmol/L" in legend_lines(charts)[0]
        for page in "345":  # not 6: its query box takes q
            term.press(page)
            time.sleep(0.5)
            screen = term.screen()
            assert "Traceback" not in screen and "q Quit" in screen.splitlines()[-1], screen
        term.press("q")
        assert wait_for_exit(exit_file) == "0"
