"""What is published: the marts whose SQL declares `-- publish: <table>` (their target tables and
the days they keep), and the views over them, in the PostgreSQL schema `api`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from psycopg import sql

from engine.publish.target import PublishError
from engine.transform.model_files import LAYERS, SQL_DIR

API_SCHEMA = "api"
META_SCHEMA = "phlo_meta"
"""Private to the publishing role: the publish state and the staging tables of a publish in progress."""
ANON_ROLE = "web_anon"
NOTIFY_CHANNEL = "pgrst"


@dataclass(frozen=True)
class Publication:
    """Lake table `lake_table` (as of a promotion) is served as `api.<target_table>`."""

    lake_table: str
    target_table: str
    key: tuple[str, ...]
    days: int | None = None
    """Only the newest `days` local days (by reading_date) of the snapshot; None: every row."""


_PUBLISH_HEADER = re.compile(r"^\s*--\s*publish\s*:\s*(.*?)\s*$")
_API_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def discover_publications(root: Path = SQL_DIR) -> tuple[Publication, ...]:
    """The models whose header says `-- publish: <api name> key=<column>[,<column>] [days=<n>]`,
    marts first, then gold, silver and bronze, each layer by file name.

    So publishing a new mart is one header line in its SQL file. Raises PublishError for a
    malformed header or two models claiming one api name.
    """
    found: list[Publication] = []
    for layer in reversed(LAYERS):
        for path in sorted((root / layer).glob("*.sql")):
            spec = _publish_header(path)
            if spec is not None:
                found.append(_publication(f"{layer}.{path.stem}", spec, path))
    names = [p.target_table for p in found]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise PublishError(
            f"api name(s) {', '.join(twice)} published by more than one model", f"rename in {root}"
        )
    return tuple(found)


def _publish_header(path: Path) -> str | None:
    """The `publish:` value of the model's leading comment block, None when it has none."""
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        if not line.lstrip().startswith("--"):
            return None
        match = _PUBLISH_HEADER.match(line)
        if match is not None:
            return match.group(1)
    return None


def _publication(lake_table: str, spec: str, path: Path) -> Publication:
    hint = f"write it as '-- publish: <api name> key=<column>[,<column>] [days=<n>]' in {path}"
    name, *options = spec.split()
    settings = dict(option.partition("=")[::2] for option in options)
    unknown = set(settings) - {"key", "days"}
    if not _API_NAME.match(name) or "key" not in settings or unknown or not all(settings.values()):
        raise PublishError(f"{path.name}: malformed publish header {spec!r}", hint)
    days = settings.get("days")
    if days is not None and not days.isdigit():
        raise PublishError(f"{path.name}: days={days!r} is not a whole number of days", hint)
    return Publication(
        lake_table, name, tuple(settings["key"].split(",")), days=int(days) if days is not None else None
    )


# The api names drop the layer prefixes (mrt_, fct_): they are what apps and PostgREST URLs see.
PUBLICATIONS: tuple[Publication, ...] = discover_publications()


@dataclass(frozen=True)
class DependentView:
    """A view in `api` over a published table, dropped and recreated whenever that table is swapped."""

    name: str
    depends_on: str
    query: sql.Composable
    comment: str


VIEWS: tuple[DependentView, ...] = (
    DependentView(
        "time_in_range_by_weekday",
        "daily_glucose_metrics",
        # PostgREST does not aggregate by default: the weekday average is served as a view.
        sql.SQL(
            """
            select
                extract(isodow from d.reading_date)::integer as day_of_week,
                d.day_name,
                count(*)::integer as days,
                round(avg(d.time_in_range_pct)::numeric, 1) as avg_time_in_range_pct,
                round(avg(d.avg_glucose_mg_dl)::numeric, 1) as avg_glucose_mg_dl
            from {} as d
            group by 1, 2
            order by 1
            """
        ).format(sql.Identifier(API_SCHEMA, "daily_glucose_metrics")),
        "Mean of the daily time in range (70-180 mg/dL) per ISO weekday, 1 = Monday, over the published days.",
    ),
)
