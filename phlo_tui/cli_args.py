"""Argument types and actions of the `phlo-tui` command line (phlo_tui.cli)."""

from __future__ import annotations

import argparse
from typing import Any


class _VersionAction(argparse.Action):
    """--version, looked up only when asked (importlib.metadata costs every other command nothing)."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            number = version("phlo-tui")
        except PackageNotFoundError:
            number = "unknown (not installed)"
        print(f"phlo-tui {number}")
        parser.exit()


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port: use a number from 1 to 65535")
    return port
