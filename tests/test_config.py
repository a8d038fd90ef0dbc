"""Settings: defaults, the TOML file, the environment winning, and one-line errors for bad values."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import pytest

from engine.config import Secret, Settings, SettingSpec, check_ready, env_name, load_settings
from engine.errors import ConfigError


def test_environment_wins_over_file(tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text('timezone = "Europe/Berlin"\ninitial_days = 7\nunits = "mmol/L"\n')
    s = load_settings({"PHLO_HOME": str(tmp_path / "h"), "PHLO_TIMEZONE": "America/Los_Angeles"}, cfg)
    assert s.timezone == "America/Los_Angeles"
    assert s.initial_days == 7
    assert s.units == "mmol/L"
    assert s.home == tmp_path / "h"


def test_unknown_file_key_names_key_and_fix(tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text("nightscout_ulr = 'https://x'\n")
    with pytest.raises(ConfigError) as err:
        load_settings({}, cfg)
    assert "nightscout_ulr" in err.value.message
    assert "nightscout_url" in err.value.hint


def test_unknown_phlo_variable_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="PHLO_TIMEZON"):
        load_settings({"PHLO_TIMEZON": "UTC"}, tmp_path / "none.toml")


@pytest.mark.parametrize(
    ("var", "value", "fix"),
    [
        ("PHLO_TIMEZONE", "Mars/Olympus", "IANA"),
        ("PHLO_UNITS", "mmol", "mg/dL or mmol/L"),
        ("PHLO_INITIAL_DAYS", "two", "whole number"),
        ("PHLO_BACKFILL_WINDOW_DAYS", "45", "1 to 30"),
        ("PHLO_AUTO_PROMOTE", "maybe", "true or false"),
        ("NIGHTSCOUT_URL", "ftp://x", "base URL"),
    ],
)
def test_bad_value_gives_key_and_fix(tmp_path: Path, var: str, value: str, fix: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings({var: value}, tmp_path / "none.toml")
    text = str(err.value)
    assert var in text
    assert fix in text
    assert "\n" not in text


def test_invalid_toml_is_a_config_error(tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text("timezone = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings({}, cfg)


def test_secrets_never_print(tmp_path: Path) -> None:
    s = load_settings(
        {"NIGHTSCOUT_TOKEN": "tok-123456", "NIGHTSCOUT_API_SECRET": "hunter2hunter2"},
        tmp_path / "none.toml",
    )
    assert isinstance(s.nightscout_token, Secret)
    for text in (repr(s), str(s), f"{s.nightscout_token}", str(s.public())):
        assert "tok-123456" not in text
        assert "hunter2hunter2" not in text
    assert s.nightscout_token is not None and s.nightscout_token.reveal() == "tok-123456"


def test_demo_uses_demo_home_and_ignores_real_site(tmp_path: Path) -> None:
    s = load_settings(
        {"PHLO_HOME": str(tmp_path), "NIGHTSCOUT_URL": "https://real.example.org"},
        tmp_path / "none.toml",
        demo=True,
    )
    assert s.home == tmp_path / "demo"
    assert s.nightscout_url is None
    check_ready(s)


def test_not_ready_without_site(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="NIGHTSCOUT_URL"):
        check_ready(load_settings({}, tmp_path / "none.toml"))


def _declared() -> dict[str, tuple[type, SettingSpec]]:
    hints = typing.get_type_hints(Settings)
    return {f.name: (hints[f.name], f.metadata["setting"]) for f in dataclasses.fields(Settings)}


def test_every_setting_is_declared_once_with_its_spec_and_documented_in_the_readme(tmp_path: Path) -> None:
    """Each field of Settings carries its spec (variable, range or choices, hint); the README's settings
    table has a row for each configurable one, with its variable."""
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    for name, (_, spec) in _declared().items():
        assert isinstance(spec, SettingSpec), name
        if spec.configurable:
            assert f"`{name}`" in readme and f"`{env_name(name)}`" in readme, f"README lacks {name}"


@pytest.mark.parametrize("name", [n for n, (_, s) in _declared().items() if s.range is not None])
def test_a_value_outside_a_settings_range_is_refused_with_the_range_as_the_fix(
    name: str, tmp_path: Path
) -> None:
    low, high = _declared()[name][1].range  # type: ignore[misc]
    for bad in (low - 1, high + 1):
        with pytest.raises(ConfigError) as caught:
            load_settings({env_name(name): f"{bad:g}"}, tmp_path / "none.toml")
        assert name in caught.value.message and f"{high:g}" in caught.value.hint
    assert getattr(load_settings({env_name(name): f"{high:g}"}, tmp_path / "none.toml"), name) == high


@pytest.mark.parametrize("name", [n for n, (_, s) in _declared().items() if s.choices])
def test_a_choice_is_taken_in_any_case_and_anything_else_names_the_choices(name: str, tmp_path: Path) -> None:
    choices = _declared()[name][1].choices or ()
    for choice in choices:
        assert (
            getattr(load_settings({env_name(name): choice.swapcase()}, tmp_path / "none.toml"), name)
            == choice
        )
    with pytest.raises(ConfigError) as caught:
        load_settings({env_name(name): "neither"}, tmp_path / "none.toml")
    assert all(c in caught.value.hint for c in choices)
