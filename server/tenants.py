"""Tenants: one server shared by several teams, each in a namespace of its own.

`LONGVU_API_KEYS` entries may be `tenant:key` (a tenant name is letters, digits, `_` and
`-`); a key without one belongs to the default tenant, as every key did before. A request's
tenant is its key's. Inside the server a video or stream is known by its scoped id: the
public id (the content hash, or a stream's random id) prefixed with the tenant, `tenant~id`
(the default tenant's ids are unprefixed, so existing caches stay valid). Routes scope the
ids they are given and unscope the ids they answer with; everything between (jobs, the
store, the hot cache, live followers) only ever sees scoped ids. So the cache keys and
their Redis Cluster hash tag carry the tenant, another tenant's video is a 404, the same
file sent by two tenants is two videos, and a DELETE reaches only the caller's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from starlette.requests import HTTPConnection

DEFAULT = ""
SEPARATOR = "~"
NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
SCOPE_KEY = "longvu.tenant"  # where the key check leaves the request's tenant


@dataclass(frozen=True)
class ApiKey:
    tenant: str
    key: bytes


def parse_keys(entries: list[str]) -> list[ApiKey]:
    """`tenant:key` or `key` (the default tenant); what precedes a first `:` is a tenant
    only when it is a tenant name, so older keys with a colon keep working."""
    keys = []
    for entry in entries:
        tenant, colon, key = entry.partition(":")
        if colon and key and NAME.fullmatch(tenant):
            keys.append(ApiKey(tenant, key.encode()))
        else:
            keys.append(ApiKey(DEFAULT, entry.encode()))
    return keys


def scoped(tenant: str, public_id: str) -> str:
    return public_id if tenant == DEFAULT else f"{tenant}{SEPARATOR}{public_id}"


def public(scoped_id: str) -> str:
    return scoped_id.rpartition(SEPARATOR)[2]


def tenant_of(scoped_id: str) -> str:
    return scoped_id.rpartition(SEPARATOR)[0]


def request_tenant(conn: HTTPConnection) -> str:
    """The tenant of the request's API key (FastAPI dependency); the default without keys."""
    return conn.scope.get(SCOPE_KEY, DEFAULT)
