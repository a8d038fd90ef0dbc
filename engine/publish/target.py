"""Where promotions are published, described without connecting or loading the PostgreSQL driver: what
`status` shows, shared by the engine's Publisher and the command line's light read (engine.api.fastread)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.config import Settings
from engine.errors import PhloError
from engine.publish.pgcluster import PrivateCluster
from engine.publish.pgserver import find_server_binaries

NO_POSTGRES = (
    "no PostgreSQL: set PHLO_POSTGRES_DSN to the database to publish to, or install the PostgreSQL "
    "server binaries (e.g. `apt install postgresql`) and phlo-tui runs a private one under PHLO_HOME/postgres"
)


class PublishError(PhloError):
    """Publishing to PostgreSQL failed; the lake and its promotion are kept, the next run publishes again."""


def redact_dsn(dsn: str) -> str:
    """The connection string with any password replaced by ***; raises PublishError if unparseable."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    try:
        params = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        # libpq's message may quote the string, password included: say only that it is bad.
        raise PublishError(
            "PHLO_POSTGRES_DSN is not a valid PostgreSQL connection string",
            "use postgresql://user:password@host:5432/dbname or 'host=... dbname=... user=...'",
        ) from None
    for key in ("password", "sslpassword"):
        if key in params:
            params[key] = "***"
    return make_conninfo(**{k: str(v) for k, v in params.items()})


def private_cluster(
    settings: Settings, find: Callable[[], Path | None] = find_server_binaries
) -> PrivateCluster | None:
    """The private cluster under PHLO_HOME/postgres when it is the target (no DSN, server binaries
    found by `find`)."""
    if settings.postgres_dsn:
        return None
    bindir = find() if settings.manage_postgres else None
    return None if bindir is None else PrivateCluster(settings.home / "postgres", bindir)


def describe_target(settings: Settings, cluster: PrivateCluster | None) -> dict[str, Any]:
    """JSON-safe description of the target for `status --json`; never a password. Does not connect."""
    if settings.postgres_dsn:
        from psycopg.conninfo import conninfo_to_dict

        try:
            redacted = redact_dsn(settings.postgres_dsn.reveal())
        except PublishError as e:
            return {"kind": "dsn", "error": e.message}
        params = conninfo_to_dict(redacted)
        return {
            "kind": "dsn",
            "dsn": redacted,
            "host": params.get("host") or params.get("hostaddr"),
            "port": params.get("port"),
            "database": params.get("dbname"),
            "user": params.get("user"),
        }
    if cluster is not None:
        return cluster.describe()
    return {"kind": "none", "skipped": NO_POSTGRES}
