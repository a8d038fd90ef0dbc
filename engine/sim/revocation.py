"""The simulated site revoking API v3 access mid-run, as a Nightscout site does: a restart with a new
API_SECRET invalidates every JWT it signed (lib/server/enclave.js signs with a key derived from it),
and deleting a subject in the admin tools makes its access token unknown, so no new JWT is issued."""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engine.sim.server import SimulatorServer


def revoke_jwts(server: SimulatorServer, *, access_token: bool = False) -> None:
    """Every JWT `server` issued so far is refused from now on (HTTP 401); with `access_token`, the
    access token is unknown too, so asking for a new JWT is refused as well."""
    server._jwt_key = secrets.token_bytes(32)
    if access_token:
        server._token = secrets.token_hex(16)
