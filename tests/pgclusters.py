"""The private PostgreSQL clusters tests make the engine create: how a test removes its own, and how
the session finds any left behind (as root their data lives outside tmp, in /var/lib/phlo-tui)."""

from __future__ import annotations

import os
from pathlib import Path

from engine.publish.pgcluster import PrivateCluster
from engine.publish.pgserver import find_server_binaries


def cluster_of(home: Path) -> PrivateCluster:
    """The private cluster of the phlo home `home` (PHLO_HOME/postgres), whether it exists or not."""
    return PrivateCluster(home / "postgres", find_server_binaries() or Path())


def remove_private_cluster(home: Path) -> list[Path]:
    """Stop the cluster of `home` if one runs and delete its files, as `phlo-tui remove-postgres` does."""
    return cluster_of(home).remove()


def leftover_clusters(root: Path) -> list[Path]:
    """The cluster directories (PHLO_HOME/postgres) under `root` whose server data still exists."""
    found = []
    for directory, subdirs, files in os.walk(root):
        path = Path(directory)
        if path.name == "postgres" and "lock" in files:
            cluster = PrivateCluster(path, Path())
            remains = cluster.data_dir if cluster.cluster_dir == cluster.home_dir else cluster.cluster_dir
            if remains.exists():
                found.append(path)
            subdirs.clear()
        else:
            subdirs[:] = [d for d in subdirs if d != "lake"]  # Iceberg files: nothing of a cluster's
    return found
