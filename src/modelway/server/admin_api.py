"""The admin API (the master key, or an admin key: a virtual key whose metadata says ``"role": "admin"``; what only
the master key may do is in :func:`master_only`): virtual keys and usage.

::

    POST   /admin/keys                 create a key; the answer holds its secret, shown this once
    GET    /admin/keys                 list keys (?include_revoked=true; ?with_spend=true: each with its spend in
                                       its current budget period, as GET /admin/keys/{id} gives it)
    GET    /admin/keys/{id}            one key, with its spend in the current budget period
    PATCH  /admin/keys/{id}            change models, limits, budget, expiry, name, metadata
    DELETE /admin/keys/{id}            revoke
    GET    /admin/usage                totals from the aggregates ?group_by=key|model|deployment|endpoint|day|hour
                                       &since= &until= &key_id= &model= &format=json|csv
    GET    /admin/usage/series         points per hour or day for charts ?bucket= &group_by= ...
    GET    /admin/usage/records        the newest records ?limit= &before= &key_id= &model= &status= ...
    GET    /admin/usage/records/{id}   one record, by its record_id (the usage routes: admin_usage.py)
    GET    /admin/deployments          every deployment in rotation: configured ones, and the model workers
                                       registered with the cluster controller (source, address, last heartbeat,
                                       queue length, cooling)
    .../admin/deployments/..., /admin/aliases/...   run-time changes of deployments and models: admin_deployments.py

Times are Unix seconds. Without a store (``store.url``) there are no keys or records: every route but
``/admin/deployments`` answers 404, saying so.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ..auth.keys import ADMIN_ROLE, key_fields, new_key
from ..errors import InvalidRequestError, ServiceUnavailableError
from ..limits.base import period_window
from ..store.errors import unreachable
from .admin_deployments import RUNTIME_ROOTS, runtime_route
from .admin_usage import USAGE_ROOT, usage_route
from .errors import Forbidden, MethodNotAllowed, NotFound, master_only
from .gateway import Gateway
from .http import Request, Send, send_json

if TYPE_CHECKING:
    from ..store.sql import SQLStore

log = logging.getLogger("modelway.server")

__all__ = ["ADMIN_PREFIX", "handle_admin"]

ADMIN_PREFIX = "/admin/"


async def handle_admin(gw: Gateway, req: Request, send: Send) -> None:
    """Dispatch ``/admin/...``; the caller's key has been checked (the master key, or an admin key)."""
    if not req.caller.admin:
        raise Forbidden("the admin API needs the master key (server.master_key) or an admin key", code="admin_only")
    if req.path.rstrip("/") == "/admin/deployments" and req.method == "GET":  # needs no store
        body = {"object": "list", "data": gw.deployments()}
        await send_json(send, 200, body, request_id=req.request_id)
        return
    store = gw.control.store
    if store is None:
        raise NotFound(
            "the admin API needs a store for keys and usage: set store.url in the config (e.g. sqlite:///modelway.db)",
            code="no_store",
        )
    parts = req.path[len(ADMIN_PREFIX) :].strip("/").split("/")
    method = req.method
    route: Callable[[], Awaitable[None]] | None = None
    if parts == ["keys"]:
        route = {
            "POST": lambda: _create_key(gw, store, req, send),
            "GET": lambda: _list_keys(gw, store, req, send),
        }.get(method)
        allow = "GET, POST"
    elif len(parts) == 2 and parts[0] == "keys":
        key_id = parts[1]
        route = {
            "GET": lambda: _get_key(gw, store, req, send, key_id),
            "PATCH": lambda: _update_key(gw, store, req, send, key_id),
            "DELETE": lambda: _revoke_key(gw, store, req, send, key_id),
        }.get(method)
        allow = "DELETE, GET, PATCH"
    elif parts[0] == USAGE_ROOT:  # totals, series and records: admin_usage.py
        route, allow = usage_route(gw, store, req, send, parts)
    elif parts[0] in RUNTIME_ROOTS:  # deployments and aliases changed at run time
        route, allow = runtime_route(gw, store, req, send, parts)
    else:
        raise NotFound(f"no route {method} {req.path}")
    if route is None:
        raise MethodNotAllowed(method, req.path, allow)
    try:
        await route()
    except Exception as exc:
        if not unreachable(exc):
            raise
        log.error("admin API: the store failed on %s %s: %s", method, req.path, exc)
        raise ServiceUnavailableError("the gateway's store is unavailable right now; try again shortly") from None


async def _create_key(gw: Gateway, store: SQLStore, req: Request, send: Send) -> None:
    fields = key_fields(await req.json(gw.config.server.max_body_bytes), creating=True)
    if (fields.get("metadata") or {}).get("role") == ADMIN_ROLE:
        master_only(req.caller, "creating an admin key")
    name = fields.pop("name").strip()
    secret, key = new_key(name, **fields)
    await store.insert_key(key)
    gw.control.auth.remember(key)
    await send_json(send, 201, {"key": secret, **key.to_dict()}, request_id=req.request_id)


def _flag(q: dict[str, str], name: str) -> bool:
    raw = q.get(name, "false").lower()
    if raw not in ("true", "false", "1", "0"):
        raise InvalidRequestError(f"{name} must be true or false", param=name)
    return raw in ("true", "1")


async def _list_keys(gw: Gateway, store: SQLStore, req: Request, send: Send) -> None:
    q = req.query()
    include, with_spend = _flag(q, "include_revoked"), _flag(q, "with_spend")
    keys = await store.list_keys(include_revoked=include)
    data = [k.to_dict() for k in keys]
    if with_spend and keys:
        now = time.time()
        windows = {k.id: period_window(k.budget_period, now) for k in keys}
        if gw.control.ledger is not None:
            await gw.control.ledger.flush()  # so the spend includes the records still in memory
        spent = await store.spends({key_id: float(start) for key_id, (start, _end) in windows.items()})
        for d in data:
            start, end = windows[d["id"]]
            d.update(spend=spent[d["id"]], period_start=start, period_end=end)
    await send_json(send, 200, {"object": "list", "data": data}, request_id=req.request_id)


async def _get_key(gw: Gateway, store: SQLStore, req: Request, send: Send, key_id: str) -> None:
    key = await store.get_key(key_id)
    if key is None:
        raise NotFound(f"no key {key_id!r}", param="id", code="key_not_found")
    start, end = period_window(key.budget_period, time.time())
    if gw.control.ledger is not None:
        await gw.control.ledger.flush()  # so the spend includes the records still in memory
    spend = await store.spend(key.id, since=float(start))
    body: dict[str, Any] = {**key.to_dict(), "spend": spend, "period_start": start, "period_end": end}
    await send_json(send, 200, body, request_id=req.request_id)


async def _update_key(gw: Gateway, store: SQLStore, req: Request, send: Send, key_id: str) -> None:
    fields = key_fields(await req.json(gw.config.server.max_body_bytes), creating=False)
    if not fields:
        raise InvalidRequestError("nothing to change: send the fields to set (null clears a limit)")
    if "name" in fields:
        fields["name"] = fields["name"].strip()
    if req.caller.key is not None:
        current = await store.get_key(key_id)
        if (current is not None and current.admin) or (fields.get("metadata") or {}).get("role") == ADMIN_ROLE:
            master_only(req.caller, "changing an admin key, or making a key an admin key")
    key = await store.update_key(key_id, **fields)
    if key is None:
        raise NotFound(f"no key {key_id!r}", param="id", code="key_not_found")
    gw.control.auth.remember(key)
    await send_json(send, 200, key.to_dict(), request_id=req.request_id)


async def _revoke_key(gw: Gateway, store: SQLStore, req: Request, send: Send, key_id: str) -> None:
    await store.revoke_key(key_id, at=time.time())  # False when revoked already: answered with its revocation
    key = await store.get_key(key_id)
    if key is None:
        raise NotFound(f"no key {key_id!r}", param="id", code="key_not_found")
    gw.control.auth.remember(key)
    await send_json(send, 200, {"id": key.id, "revoked_at": key.revoked_at}, request_id=req.request_id)
