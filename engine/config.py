"""Settings: one typed, frozen object from defaults, the TOML config file and the environment (which wins)."""

from __future__ import annotations

import dataclasses
import logging
import os
import stat
import tomllib
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import platformdirs

from engine.clock import NOW_ENV, parse_instant
from engine.errors import ConfigError
from engine.lake.catalog_uri import check_catalog_uri

log = logging.getLogger(__name__)

APP_NAME = "phlo-tui"
UNITS = ("mg/dL", "mmol/L")
THEMES = ("dark", "light")
PAPERS = ("A4", "Letter")


class Secret(str):
    """A string that never shows itself in a repr, a log line or an f-string by accident."""

    def __repr__(self) -> str:
        return "Secret('***')"

    def __format__(self, spec: str) -> str:
        return "***"

    def reveal(self) -> str:
        return str.__str__(self)

    def __str__(self) -> str:
        return "***"


def _system_timezone() -> str:
    try:
        import tzlocal

        return str(tzlocal.get_localzone_name() or "UTC")
    except Exception:  # no zone configured on the machine: UTC is the honest fallback
        return "UTC"


def _check_zone(value: str) -> None:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise ValueError(f"unknown time zone {value!r}") from e


def _check_url(value: str) -> None:
    if not value.startswith(("http://", "https://")):
        raise ValueError("must start with http:// or https://")


@dataclass(frozen=True)
class SettingSpec:
    """How one setting is read and checked, declared beside its field in `Settings` (by `setting`)."""

    env: str | None = None
    """Its environment variable when not PHLO_<NAME>."""
    range: tuple[float, float] | None = None
    choices: tuple[str, ...] | None = None
    """The values it takes, matched in any case (mmol/l is mmol/L)."""
    check: Callable[[Any], None] | None = None
    """Raises ValueError for a value it refuses."""
    unit: str | None = None
    hint: str | None = None
    """How to fix a bad value; by default said from the kind, the range or the choices."""
    configurable: bool = True
    """False: set by the program (--demo), never by the file or the environment."""


def setting(
    default: Any = dataclasses.MISSING,
    *,
    factory: Callable[[], Any] | None = None,
    env: str | None = None,
    range: tuple[float, float] | None = None,
    choices: tuple[str, ...] | None = None,
    check: Callable[[Any], None] | None = None,
    unit: str | None = None,
    hint: str | None = None,
    configurable: bool = True,
) -> Any:
    """A field of `Settings` with everything about it in one place: default, variable, range or choices,
    check and hint. Its kind is the field's type."""
    spec = SettingSpec(env, range, choices, check, unit, hint, configurable)
    if factory is not None:
        return field(default_factory=factory, metadata={"setting": spec})
    return field(default=default, metadata={"setting": spec})


@dataclass(frozen=True)
class Settings:
    """Everything the engine can be told. Each field documents its key in the file and its variable."""

    home: Path = setting(env="PHLO_HOME")
    """Where the lake, run store, logs and private PostgreSQL live. PHLO_HOME."""
    nightscout_url: str | None = setting(
        None,
        env="NIGHTSCOUT_URL",
        check=_check_url,
        hint="use the site's base URL, e.g. https://my-site.example.org",
    )
    """Base URL of the Nightscout site. NIGHTSCOUT_URL."""
    nightscout_token: Secret | None = setting(None, env="NIGHTSCOUT_TOKEN")
    """Access token, sent as ?token=. NIGHTSCOUT_TOKEN."""
    nightscout_api_secret: Secret | None = setting(None, env="NIGHTSCOUT_API_SECRET")
    """API_SECRET of the site, sent as its SHA-1 in the api-secret header. NIGHTSCOUT_API_SECRET."""
    postgres_dsn: Secret | None = setting(None, env="PHLO_POSTGRES_DSN")
    """PostgreSQL to publish the marts to. PHLO_POSTGRES_DSN."""
    catalog_uri: Secret | None = setting(
        None,
        check=check_catalog_uri,
        hint="use postgresql://user:password@host:port/database, or leave it unset for the catalog file in the home",
    )
    """Where the lake's Iceberg catalog lives: unset, PHLO_HOME/lake/catalog.sqlite; a
    postgresql://user:password@host:port/database URI keeps it in PostgreSQL, in the tables of
    Iceberg's JDBC catalog, for Trino or Spark (docs/scale-out.md). PHLO_CATALOG_URI."""
    manage_postgres: bool = setting(True)
    """Without PHLO_POSTGRES_DSN, run a private PostgreSQL under PHLO_HOME/postgres when its server
    binaries are installed; false skips publishing instead. PHLO_MANAGE_POSTGRES."""
    timezone: str = setting(
        factory=_system_timezone,
        check=_check_zone,
        hint="use an IANA zone name such as Europe/Berlin or America/Los_Angeles",
    )
    """IANA zone that defines a person's days and hours. PHLO_TIMEZONE."""
    units: str = setting("mg/dL", choices=UNITS)
    """Display units, mg/dL or mmol/L. PHLO_UNITS."""
    initial_days: int = setting(14, range=(1, 3650), unit="days")
    """How much history a first run without a watermark fetches. PHLO_INITIAL_DAYS."""
    backfill_window_days: int = setting(30, range=(1, 30), unit="days")
    """Largest window one Nightscout query asks for. PHLO_BACKFILL_WINDOW_DAYS."""
    page_size: int = setting(10000, range=(10, 100000))
    """Entries per Nightscout request (its `count`). PHLO_PAGE_SIZE."""
    lookback_minutes: int = setting(60, range=(0, 1440), unit="minutes")
    """An incremental run re-reads this much before its watermark, to pick up late uploads. PHLO_LOOKBACK_MINUTES."""
    reread_hours: int = setting(48, range=(0, 720), unit="hours")
    """Every run also re-reads the last this many hours, to see records the site changed or deleted
    since (isValid false) after they were stored (docs/closed-loop.md); 0 turns it off. PHLO_REREAD_HOURS."""
    request_timeout_s: float = setting(30.0, range=(1, 600), unit="seconds")
    """Seconds before a Nightscout request times out. PHLO_REQUEST_TIMEOUT_S."""
    max_attempts: int = setting(5, range=(1, 20))
    """Attempts per Nightscout request on timeouts, 5xx and 429. PHLO_MAX_ATTEMPTS."""
    auto_promote: bool = setting(True)
    """Promote dev to main after a run whose gates pass. PHLO_AUTO_PROMOTE."""
    schedule_minute: int = setting(5, range=(0, 59), hint="use a minute from 0 to 59")
    """Minute of the hour the scheduled run fires. PHLO_SCHEDULE_MINUTE."""
    schedule_interval_seconds: int = setting(
        0,
        range=(0, 86400),
        hint="use 0 (hourly) or a number of seconds up to 86400",
    )
    """Run every N seconds instead of hourly at schedule_minute (0: hourly). PHLO_SCHEDULE_INTERVAL_SECONDS."""
    retry_max: int = setting(3, range=(0, 20))
    """Retries of a scheduled run that failed for a transient reason (site or database down). PHLO_RETRY_MAX."""
    retry_delay_s: float = setting(120.0, range=(0, 86400), unit="seconds")
    """Seconds before the first retry; each next one waits twice as long. PHLO_RETRY_DELAY_S."""
    freshness_warning_minutes: int = setting(
        30,
        range=(1, 1440),
        unit="minutes",
    )
    """Warn when no new reading has arrived for this long (an error after 24 h). PHLO_FRESHNESS_WARNING_MINUTES."""
    alert_command: str | None = setting(None)
    """A command run on a freshness alert, with PHLO_ALERT_LEVEL and PHLO_ALERT_MESSAGE set. PHLO_ALERT_COMMAND."""
    snapshot_retention_hours: int = setting(
        24,
        range=(1, 8760),
        unit="hours",
    )
    """Hours of lake history (time travel) kept; older snapshots and their files are removed. PHLO_SNAPSHOT_RETENTION_HOURS."""
    backup_dir: Path | None = setting(None)
    """Folder the daemon writes a backup into once a day (phlo-backup-<UTC time>.tar.gz); unset: none.
    PHLO_BACKUP_DIR."""
    backup_keep: int = setting(7, range=(1, 1000))
    """How many of the daemon's backups backup_dir keeps, newest first. PHLO_BACKUP_KEEP."""
    theme: str = setting("dark", choices=THEMES)
    """Dashboard colours, dark or light. PHLO_THEME."""
    keys: tuple[tuple[str, str], ...] = setting(
        (),
        hint='use a [keys] table of binding id = key, e.g. promote = "P"; `?` in the dashboard lists the ids',
    )
    """Dashboard keys remapped by binding id: a [keys] table such as `promote = "P"`, or
    PHLO_KEYS="promote=P,run=ctrl+r". The dashboard rejects ids it does not have. PHLO_KEYS."""
    report_name: str | None = setting(None)
    """The person's name printed at the top of the clinic report (`phlo-tui report`). PHLO_REPORT_NAME."""
    report_paper: str = setting("A4", choices=PAPERS)
    """The clinic report's paper, A4 or Letter. PHLO_REPORT_PAPER."""
    demo: bool = setting(False, configurable=False)
    """Use the built-in simulator and the demo home (set by --demo, not by the file)."""

    @property
    def lake_dir(self) -> Path:
        return self.home / "lake"

    @property
    def runs_db(self) -> Path:
        return self.home / "runs.sqlite"

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @property
    def keymap(self) -> dict[str, str]:
        return dict(self.keys)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def command(self, name: str) -> str:
        """The command line that does `name` on this home, for hints: `phlo-tui --demo run` in the demo."""
        return f"phlo-tui {'--demo ' if self.demo else ''}{name}"

    def public(self) -> dict[str, Any]:
        """The settings as JSON-safe values with every secret replaced by whether it is set."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Secret):
                out[f.name] = "set"
            elif isinstance(value, Path):
                out[f.name] = str(value)
            else:
                out[f.name] = value
        return out


_EXTRA_ENV = {"PHLO_CONFIG", NOW_ENV}


def _kind(annotation: Any) -> type:
    """The type a setting's value is read as: its field's type without None; `_Keymap` for the keys."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) is tuple:
        return _Keymap
    return args[0] if args else annotation


def _specs() -> dict[str, tuple[type, SettingSpec]]:
    hints = typing.get_type_hints(Settings)
    return {f.name: (_kind(hints[f.name]), f.metadata["setting"]) for f in dataclasses.fields(Settings)}


def env_name(field_name: str) -> str:
    return _SPECS[field_name][1].env or f"PHLO_{field_name.upper()}"


def _hint(name: str) -> str:
    kind, spec = _SPECS[name]
    if spec.hint:
        return spec.hint
    if spec.choices:
        return "use " + " or ".join(spec.choices)
    if kind is bool:
        return "use true or false"
    if spec.range:
        number = "a whole number" if kind is int else "a number"
        unit = f" of {spec.unit}" if spec.unit else ""
        return f"use {number}{unit} from {spec.range[0]:g} to {spec.range[1]:g}"
    return ""


def _check(name: str, value: Any) -> None:
    spec = _SPECS[name][1]
    if value is None:
        return
    if spec.range is not None and not spec.range[0] <= value <= spec.range[1]:
        raise ValueError(f"{value} is outside {spec.range[0]:g}..{spec.range[1]:g}")
    if spec.choices is not None and value not in spec.choices:
        raise ValueError(f"{value!r} is not one of {', '.join(spec.choices)}")
    if spec.check is not None:
        spec.check(value)


def default_config_path(env: Mapping[str, str] | None = None) -> Path:
    """The TOML file: $PHLO_CONFIG, else config.toml in the platform's user config dir."""
    env = os.environ if env is None else env
    if env.get("PHLO_CONFIG"):
        return Path(env["PHLO_CONFIG"]).expanduser()
    return Path(platformdirs.user_config_dir(APP_NAME)) / "config.toml"


def default_home() -> Path:
    return Path(platformdirs.user_data_dir(APP_NAME))


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true or false")


def _coerce(name: str, raw: Any, source: str) -> Any:
    """Turn a file or environment value into the field's type, or raise a one-line ConfigError."""
    kind, spec = _SPECS[name]
    try:
        value: Any
        if kind is bool:
            value = raw if isinstance(raw, bool) else _parse_bool(str(raw))
        elif kind is int:
            if isinstance(raw, bool):
                raise ValueError("expected a whole number")
            value = int(raw)
        elif kind is float:
            value = float(raw)
        elif kind is Path:
            value = Path(str(raw)).expanduser()
        elif kind is _Keymap:
            value = _parse_keys(raw)
        elif kind is Secret:
            value = Secret(str(raw)) if str(raw) else None
        else:
            value = str(raw) if str(raw) else None
        if spec.choices and value is not None:
            value = {c.casefold(): c for c in spec.choices}.get(value.casefold(), value)
        _check(name, value)
    except ConfigError:
        raise
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{source}: bad value for {name}: {e}", _hint(name)) from e
    return value


class _Keymap:
    """The kind of the `keys` setting: binding id → key, from a TOML table or `id=key,id=key`."""


def _parse_keys(raw: Any) -> tuple[tuple[str, str], ...]:
    if isinstance(raw, str):
        pairs = [part.split("=", 1) for part in raw.split(",") if part.strip()]
        if any(len(p) != 2 for p in pairs):
            raise ValueError("expected id=key pairs separated by commas")
        raw = {k.strip(): v.strip() for k, v in pairs}
    if not isinstance(raw, dict):
        raise ValueError("expected a table of binding id = key")
    keys: list[tuple[str, str]] = []
    for binding_id, key in raw.items():
        if not isinstance(key, str) or not key.strip():
            raise ValueError(f'the key for {binding_id!r} must be a non-empty string such as "P"')
        keys.append((str(binding_id), key.strip()))
    return tuple(sorted(keys))


_SPECS = _specs()
"""Every setting's kind and spec, from the fields of `Settings`."""


def _read_file(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}", "fix the file or remove it") from e
    except OSError as e:
        raise ConfigError(
            f"{path}: cannot read the config file: {e.strerror}", "check its permissions"
        ) from e
    _warn_if_exposed(path, data)
    known = {name for name, (_, spec) in _SPECS.items() if spec.configurable}
    for key in data:
        if key not in known:
            raise ConfigError(
                f"{path}: unknown setting {key!r}",
                f"remove it; known settings are {', '.join(sorted(known))}",
            )
    return data


def _warn_if_exposed(path: Path, data: dict[str, Any]) -> None:
    """Warn, as ssh does, when a config file holding a secret can be read by other users.

    A warning, not a refusal: the secret has already been readable, and refusing would also stop the
    scheduled ingest; the message says how to close it.
    """
    held = sorted(k for k in data if k in _SPECS and _SPECS[k][0] is Secret)
    if not held:
        return
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        log.warning(
            "%s holds %s but other users can read it (mode %o); run `chmod 600 %s`",
            path,
            ", ".join(held),
            mode,
            path,
        )


def load_settings(
    env: Mapping[str, str] | None = None, config_path: Path | None = None, *, demo: bool = False
) -> Settings:
    """Build the settings: defaults, then the TOML file, then the environment.

    With `demo`, the home is `<home>/demo` and the Nightscout site is the built-in simulator.
    Raises ConfigError with the key and the fix for any bad value or unknown key.
    """
    env = os.environ if env is None else env
    path = config_path or default_config_path(env)
    values: dict[str, Any] = {}
    for key, raw in _read_file(path).items():
        values[key] = _coerce(key, raw, str(path))
    known_env = {env_name(n) for n, (_, spec) in _SPECS.items() if spec.configurable} | _EXTRA_ENV
    for var in env:
        if var.startswith("PHLO_") and var not in known_env:
            raise ConfigError(
                f"environment: unknown variable {var}",
                f"unset it; known ones are {', '.join(sorted(known_env))}",
            )
    if env.get(NOW_ENV):
        parse_instant(env[NOW_ENV], NOW_ENV)  # read by engine.clock; refused here, with the other settings
    for name, (_, spec) in _SPECS.items():
        if not spec.configurable:
            continue
        var = env_name(name)
        if var in env and env[var] != "":
            values[name] = _coerce(name, env[var], var)
    home = values.pop("home", None) or default_home()
    if demo:
        home = home / "demo"
        values["nightscout_url"] = None
        values["nightscout_token"] = None
        values["nightscout_api_secret"] = None
        values["catalog_uri"] = None  # the demo's lake is its own, never the configured catalog's
    return Settings(home=Path(home), demo=demo, **values)


def check_ready(settings: Settings) -> None:
    """Raise ConfigError when a run cannot start: no Nightscout site outside the demo."""
    if not settings.nightscout_url and not settings.demo:
        raise ConfigError(
            "no Nightscout site configured",
            f"set NIGHTSCOUT_URL (or nightscout_url in {default_config_path()}), or try --demo",
        )
