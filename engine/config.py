"""Settings: one typed, frozen object from defaults, the TOML config file and the environment (which wins)."""

from __future__ import annotations

import dataclasses
import logging
import os
import stat
import tomllib
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


@dataclass(frozen=True)
class Settings:
    """Everything the engine can be told. Each field documents its key in the file and its variable."""

    home: Path
    """Where the lake, run store, logs and private PostgreSQL live. PHLO_HOME."""
    nightscout_url: str | None = None
    """Base URL of the Nightscout site. NIGHTSCOUT_URL."""
    nightscout_token: Secret | None = None
    """Access token, sent as ?token=. NIGHTSCOUT_TOKEN."""
    nightscout_api_secret: Secret | None = None
    """API_SECRET of the site, sent as its SHA-1 in the api-secret header. NIGHTSCOUT_API_SECRET."""
    postgres_dsn: Secret | None = None
    """PostgreSQL to publish the marts to. PHLO_POSTGRES_DSN."""
    catalog_uri: Secret | None = None
    """Where the lake's Iceberg catalog lives: unset, PHLO_HOME/lake/catalog.sqlite; a
    postgresql://user:password@host:port/database URI keeps it in PostgreSQL, in the tables of
    Iceberg's JDBC catalog, for Trino or Spark (docs/scale-out.md). PHLO_CATALOG_URI."""
    manage_postgres: bool = True
    """Without PHLO_POSTGRES_DSN, run a private PostgreSQL under PHLO_HOME/postgres when its server
    binaries are installed; false skips publishing instead. PHLO_MANAGE_POSTGRES."""
    timezone: str = field(default_factory=_system_timezone)
    """IANA zone that defines a person's days and hours. PHLO_TIMEZONE."""
    units: str = "mg/dL"
    """Display units, mg/dL or mmol/L. PHLO_UNITS."""
    initial_days: int = 14
    """How much history a first run without a watermark fetches. PHLO_INITIAL_DAYS."""
    backfill_window_days: int = 30
    """Largest window one Nightscout query asks for. PHLO_BACKFILL_WINDOW_DAYS."""
    page_size: int = 10000
    """Entries per Nightscout request (its `count`). PHLO_PAGE_SIZE."""
    lookback_minutes: int = 60
    """An incremental run re-reads this much before its watermark, to pick up late uploads. PHLO_LOOKBACK_MINUTES."""
    reread_hours: int = 48
    """Every run also re-reads the last this many hours, to see records the site changed or deleted
    since (isValid false) after they were stored (docs/closed-loop.md); 0 turns it off. PHLO_REREAD_HOURS."""
    request_timeout_s: float = 30.0
    """Seconds before a Nightscout request times out. PHLO_REQUEST_TIMEOUT_S."""
    max_attempts: int = 5
    """Attempts per Nightscout request on timeouts, 5xx and 429. PHLO_MAX_ATTEMPTS."""
    auto_promote: bool = True
    """Promote dev to main after a run whose gates pass. PHLO_AUTO_PROMOTE."""
    schedule_minute: int = 5
    """Minute of the hour the scheduled run fires. PHLO_SCHEDULE_MINUTE."""
    schedule_interval_seconds: int = 0
    """Run every N seconds instead of hourly at schedule_minute (0: hourly). PHLO_SCHEDULE_INTERVAL_SECONDS."""
    retry_max: int = 3
    """Retries of a scheduled run that failed for a transient reason (site or database down). PHLO_RETRY_MAX."""
    retry_delay_s: float = 120.0
    """Seconds before the first retry; each next one waits twice as long. PHLO_RETRY_DELAY_S."""
    freshness_warning_minutes: int = 30
    """Warn when no new reading has arrived for this long (an error after 24 h). PHLO_FRESHNESS_WARNING_MINUTES."""
    alert_command: str | None = None
    """A command run on a freshness alert, with PHLO_ALERT_LEVEL and PHLO_ALERT_MESSAGE set. PHLO_ALERT_COMMAND."""
    snapshot_retention_hours: int = 24
    """Hours of lake history (time travel) kept; older snapshots and their files are removed. PHLO_SNAPSHOT_RETENTION_HOURS."""
    backup_dir: Path | None = None
    """Folder the daemon writes a backup into once a day (phlo-backup-<UTC time>.tar.gz); unset: none.
    PHLO_BACKUP_DIR."""
    backup_keep: int = 7
    """How many of the daemon's backups backup_dir keeps, newest first. PHLO_BACKUP_KEEP."""
    theme: str = "dark"
    """Dashboard colours, dark or light. PHLO_THEME."""
    keys: tuple[tuple[str, str], ...] = ()
    """Dashboard keys remapped by binding id: a [keys] table such as `promote = "P"`, or
    PHLO_KEYS="promote=P,run=ctrl+r". The dashboard rejects ids it does not have. PHLO_KEYS."""
    report_name: str | None = None
    """The person's name printed at the top of the clinic report (`phlo-tui report`). PHLO_REPORT_NAME."""
    report_paper: str = "A4"
    """The clinic report's paper, A4 or Letter. PHLO_REPORT_PAPER."""
    demo: bool = False
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


# Variables with a name of their own; every other field is PHLO_<FIELD>.
_ENV_NAMES = {
    "home": "PHLO_HOME",
    "nightscout_url": "NIGHTSCOUT_URL",
    "nightscout_token": "NIGHTSCOUT_TOKEN",
    "nightscout_api_secret": "NIGHTSCOUT_API_SECRET",
    "postgres_dsn": "PHLO_POSTGRES_DSN",
}
_NOT_CONFIGURABLE = {"demo"}
_EXTRA_ENV = {"PHLO_CONFIG", NOW_ENV}


def env_name(field_name: str) -> str:
    return _ENV_NAMES.get(field_name, f"PHLO_{field_name.upper()}")


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


_CASELESS: dict[str, dict[str, str]] = {
    "units": {u.casefold(): u for u in UNITS},
    "theme": {t.casefold(): t for t in THEMES},
}
"""Settings whose values are names a person types in any case (mmol/l is mmol/L)."""


def _coerce(name: str, raw: Any, source: str) -> Any:
    """Turn a file or environment value into the field's type, or raise a one-line ConfigError."""
    kind = _FIELD_KINDS[name]
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
        if name in _CASELESS and value is not None:
            value = _CASELESS[name].get(value.casefold(), value)
        _check(name, value)
    except ConfigError:
        raise
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{source}: bad value for {name}: {e}", _FIX.get(name, "")) from e
    return value


_FIX = {
    "timezone": "use an IANA zone name such as Europe/Berlin or America/Los_Angeles",
    "units": "use mg/dL or mmol/L",
    "nightscout_url": "use the site's base URL, e.g. https://my-site.example.org",
    "initial_days": "use a whole number of days from 1 to 3650",
    "backfill_window_days": "use a whole number of days from 1 to 30",
    "page_size": "use a whole number from 10 to 100000",
    "schedule_minute": "use a minute from 0 to 59",
    "auto_promote": "use true or false",
    "manage_postgres": "use true or false",
    "lookback_minutes": "use a whole number of minutes from 0 to 1440",
    "reread_hours": "use a whole number of hours from 0 to 720",
    "max_attempts": "use a whole number from 1 to 20",
    "request_timeout_s": "use a number of seconds from 1 to 600",
    "snapshot_retention_hours": "use a whole number of hours from 1 to 8760",
    "schedule_interval_seconds": "use 0 (hourly) or a number of seconds up to 86400",
    "retry_max": "use a whole number from 0 to 20",
    "retry_delay_s": "use a number of seconds from 0 to 86400",
    "freshness_warning_minutes": "use a whole number of minutes from 1 to 1440",
    "theme": "use dark or light",
    "report_paper": "use A4 or Letter",
    "catalog_uri": "use postgresql://user:password@host:port/database, or leave it unset for the catalog file in the home",
    "backup_keep": "use a whole number from 1 to 1000",
    "keys": 'use a [keys] table of binding id = key, e.g. promote = "P"; `?` in the dashboard lists the ids',
}

_RANGES: dict[str, tuple[float, float]] = {
    "initial_days": (1, 3650),
    "backfill_window_days": (1, 30),
    "page_size": (10, 100000),
    "schedule_minute": (0, 59),
    "snapshot_retention_hours": (1, 8760),
    "schedule_interval_seconds": (0, 86400),
    "retry_max": (0, 20),
    "retry_delay_s": (0, 86400),
    "freshness_warning_minutes": (1, 1440),
    "lookback_minutes": (0, 1440),
    "backup_keep": (1, 1000),
    "reread_hours": (0, 720),
    "max_attempts": (1, 20),
    "request_timeout_s": (1, 600),
}


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


def _check(name: str, value: Any) -> None:
    if name in _RANGES and value is not None:
        low, high = _RANGES[name]
        if not low <= value <= high:
            raise ValueError(f"{value} is outside {low:g}..{high:g}")
    if name == "timezone":
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as e:
            raise ValueError(f"unknown time zone {value!r}") from e
    if name == "theme" and value not in THEMES:
        raise ValueError(f"{value!r} is not a theme")
    if name == "report_paper" and value not in PAPERS:
        raise ValueError(f"{value!r} is not a paper size")
    if name == "units" and value not in UNITS:
        raise ValueError(f"{value!r} is not a known unit")
    if name == "catalog_uri" and value is not None:
        check_catalog_uri(value)
    if name == "nightscout_url" and value is not None and not value.startswith(("http://", "https://")):
        raise ValueError("must start with http:// or https://")


_FIELD_KINDS: dict[str, Callable[..., Any] | type] = {
    "home": Path,
    "nightscout_url": str,
    "nightscout_token": Secret,
    "nightscout_api_secret": Secret,
    "postgres_dsn": Secret,
    "catalog_uri": Secret,
    "manage_postgres": bool,
    "timezone": str,
    "units": str,
    "initial_days": int,
    "backfill_window_days": int,
    "page_size": int,
    "lookback_minutes": int,
    "reread_hours": int,
    "request_timeout_s": float,
    "max_attempts": int,
    "auto_promote": bool,
    "schedule_minute": int,
    "snapshot_retention_hours": int,
    "schedule_interval_seconds": int,
    "retry_max": int,
    "retry_delay_s": float,
    "freshness_warning_minutes": int,
    "alert_command": str,
    "backup_dir": Path,
    "backup_keep": int,
    "theme": str,
    "keys": _Keymap,
    "report_name": str,
    "report_paper": str,
    "demo": bool,
}


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
    known = set(_FIELD_KINDS) - _NOT_CONFIGURABLE
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
    held = sorted(k for k in data if _FIELD_KINDS.get(k) is Secret)
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
    known_env = {env_name(n) for n in _FIELD_KINDS if n not in _NOT_CONFIGURABLE} | _EXTRA_ENV
    for var in env:
        if var.startswith("PHLO_") and var not in known_env:
            raise ConfigError(
                f"environment: unknown variable {var}",
                f"unset it; known ones are {', '.join(sorted(known_env))}",
            )
    if env.get(NOW_ENV):
        parse_instant(env[NOW_ENV], NOW_ENV)  # read by engine.clock; refused here, with the other settings
    for name in _FIELD_KINDS:
        if name in _NOT_CONFIGURABLE:
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
