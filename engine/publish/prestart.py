"""Starting the private PostgreSQL in the background while a run still fetches and builds, so that its
publish step finds the server ready instead of waiting for it (about a second of a cron run's time)."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engine.publish.publisher import Publisher

log = logging.getLogger(__name__)


def start_target(publisher: Publisher) -> threading.Thread | None:
    """Start the publisher's private cluster in a thread when that is its target and it is not yet
    running here; returns the thread (None when there is nothing to start).

    Never raises: a cluster that cannot start is started again by the publish step, which reports why.
    `Publisher.close` stops the server afterwards, after waiting for a start under way (the cluster's lock).
    """
    cluster = publisher.cluster
    if cluster is None or cluster.started_here:
        return None

    def start() -> None:
        try:
            cluster.ensure_running()
        except Exception as e:  # the publish step starts it again and says what is wrong
            log.debug("starting the private PostgreSQL ahead of the publish failed: %s", e)

    thread = threading.Thread(target=start, name="postgres-prestart", daemon=True)
    thread.start()
    return thread
