"""The dashboard's `keys` and `theme` settings: read from the file and the environment, refused when bad."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.config import load_settings
from engine.errors import ConfigError
from phlo_tui.app import known_binding_ids
from phlo_tui.keys import check_keymap


def test_keys_and_theme_from_the_config_file(home: Path, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('theme = "light"\n\n[keys]\npromote = "P"\nrun = "ctrl+r"\n')
    settings = load_settings(config_path=config)
    assert settings.theme == "light"
    assert settings.keymap == {"promote": "P", "run": "ctrl+r"}


def test_keys_from_the_environment_win(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PHLO_KEYS", "promote=P, units = m")
    assert load_settings().keymap == {"promote": "P", "units": "m"}
    assert load_settings().theme == "dark"


@pytest.mark.parametrize(
    ("var", "value", "message"),
    [
        ("PHLO_KEYS", "promote", "expected id=key pairs"),
        ("PHLO_KEYS", "promote=", "must be a non-empty string"),
        ("PHLO_THEME", "blue", "'blue' is not one of dark, light"),
    ],
)
def test_bad_keys_and_themes_are_refused(
    home: Path, monkeypatch: pytest.MonkeyPatch, var: str, value: str, message: str
) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert var in caught.value.message and message in caught.value.message
    assert caught.value.hint


def test_a_keys_table_must_map_to_strings(home: Path, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("[keys]\npromote = 3\n")
    with pytest.raises(ConfigError, match="the key for 'promote' must be a non-empty string"):
        load_settings(config_path=config)


def test_every_page_and_dialog_binding_has_an_id_a_keymap_can_name() -> None:
    ids = known_binding_ids()
    expected = {"screen.overview", "screen.sql", "run", "units", "theme", "refresh", "help", "quit"}
    assert expected | {"promote", "promote.yes", "charts.next", "quality.severity", "modal.copy"} <= ids
    check_keymap({"promote": "P", "units": "m"}, ids)
    with pytest.raises(ConfigError) as caught:
        check_keymap({"promot": "P", "quit": "x"}, ids)
    assert "unknown binding id 'promot'" in caught.value.message and "promote" in caught.value.hint
