"""The admin API's run-time deployments and aliases (master key, a store): changes over the YAML config, persisted
in the store and seen by every worker and replica within :attr:`Gateway.runtime_poll` seconds (this worker: at once).

::

    GET    /admin/deployments                the router's view (admin_api.py; needs no store)
    POST   /admin/deployments                add one: {"model_name", "model": "provider/model", ...the YAML's fields,
                                             "api_key_env": a variable to read the key from}
    GET    /admin/deployments/{id}           its definition (source config|api, state, the key masked)
    PATCH  /admin/deployments/{id}           change fields; null: back to the config's value or the default
    DELETE /admin/deployments/{id}           remove (a configured one: hidden until reset)
    POST   /admin/deployments/{id}/disable   out of rotation (requests in flight finish)
    POST   /admin/deployments/{id}/enable    back in rotation
    POST   /admin/deployments/{id}/reset     a configured one: drop the changes, back to the YAML
    GET    /admin/aliases                    every model with its deployments' definitions (removed ones too)
    POST   /admin/aliases                    add a model: {"name", "system_prompt", "merge_system", "description",
                                             "price", "routing"}
    GET    /admin/aliases/{name}             one model
    PATCH  /admin/aliases/{name}             change its settings (routing is replaced as a whole)
    DELETE /admin/aliases/{name}             remove it with its deployments (a new POST brings the name back)
    POST   /admin/aliases/{name}/reset       drop the changes of its settings (or its removal)

Errors in a body are 400 naming the field (``error.param``), with the YAML parser's words.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ..errors import InvalidRequestError
from .errors import NotFound, master_only
from .gateway import Gateway
from .http import Request, Send, send_json

if TYPE_CHECKING:
    from ..store.deployments import RuntimeChanges
    from ..store.sql import SQLStore

__all__ = ["RUNTIME_ROOTS", "runtime_route"]

log = logging.getLogger("modelway.server")

#: the first path segment after /admin/ of these routes
RUNTIME_ROOTS = ("deployments", "aliases")

Route = Callable[[], Awaitable[None]] | None


def runtime_route(gw: Gateway, store: SQLStore, req: Request, send: Send, parts: list[str]) -> tuple[Route, str]:
    """The handler of ``req`` (``None``: the method is not allowed) and the methods allowed on its path."""
    from ..store.deployments import RuntimeChanges

    changes = gw.runtime or RuntimeChanges(store, gw.config, gw.env)
    method = req.method
    root = parts[0]
    acting = len(parts) == 3 and method == "POST"  # disable, enable, reset: an admin key may
    if method not in ("GET", "HEAD") and not acting:
        master_only(req.caller, f"{method} {req.path[:80]}")

    async def body() -> dict[str, Any]:
        data: dict[str, Any] = await req.json(gw.config.server.max_body_bytes)
        return data

    async def answer(status: int, data: dict[str, Any], synced: bool = True) -> None:
        if synced:
            try:
                await gw.sync_runtime()  # this worker at once; the others at their next poll
            except Exception as exc:  # stored all the same: the poll applies it
                log.warning("run-time deployments: stored, not applied yet: %s", exc)
        await send_json(send, status, data, request_id=req.request_id)

    async def catalog() -> None:
        data = [a.to_dict() for a in await changes.catalog()]
        await answer(200, {"object": "list", "data": data}, synced=False)

    if root == "deployments" and len(parts) == 1:
        return ({"POST": lambda: _add_deployment(changes, body, answer)}.get(method), "GET, POST")
    if root == "aliases" and len(parts) == 1:
        routes = {"GET": catalog, "POST": lambda: _add_alias(changes, body, answer)}
        return routes.get(method), "GET, POST"
    if len(parts) == 2 and root == "deployments":
        dep_id = parts[1]
        return {
            "GET": lambda: _deployment(changes, answer, dep_id),
            "PATCH": lambda: _update_deployment(changes, body, answer, dep_id),
            "DELETE": lambda: _remove_deployment(changes, answer, dep_id),
        }.get(method), "DELETE, GET, PATCH"
    if len(parts) == 2 and root == "aliases":
        name = parts[1]
        return {
            "GET": lambda: _alias(changes, answer, name),
            "PATCH": lambda: _update_alias(changes, body, answer, name),
            "DELETE": lambda: _remove_alias(changes, answer, name),
        }.get(method), "DELETE, GET, PATCH"
    if len(parts) == 3 and root == "deployments" and parts[2] in ("disable", "enable", "reset"):
        dep_id, action = parts[1], parts[2]
        return ((lambda: _act(changes, answer, dep_id, action)) if method == "POST" else None), "POST"
    if len(parts) == 3 and root == "aliases" and parts[2] == "reset":
        name = parts[1]
        return ((lambda: _reset_alias(changes, answer, name)) if method == "POST" else None), "POST"
    raise NotFound(f"no route {method} {req.path}")


Body = Callable[[], Awaitable[dict[str, Any]]]
Answer = Callable[..., Awaitable[None]]


async def _add_deployment(changes: RuntimeChanges, body: Body, answer: Answer) -> None:
    found = await changes.add_deployment(await body())
    await answer(201, found.to_dict())


async def _deployment(changes: RuntimeChanges, answer: Answer, dep_id: str) -> None:
    await answer(200, (await changes.get_deployment(dep_id)).to_dict(), synced=False)


async def _update_deployment(changes: RuntimeChanges, body: Body, answer: Answer, dep_id: str) -> None:
    await answer(200, (await changes.update_deployment(dep_id, await body())).to_dict())


async def _remove_deployment(changes: RuntimeChanges, answer: Answer, dep_id: str) -> None:
    await answer(200, (await changes.remove_deployment(dep_id)).to_dict())


async def _act(changes: RuntimeChanges, answer: Answer, dep_id: str, action: str) -> None:
    if action == "reset":
        found = await changes.reset_deployment(dep_id)
    else:
        found = await changes.set_disabled(dep_id, action == "disable")
    await answer(200, found.to_dict())


async def _add_alias(changes: RuntimeChanges, body: Body, answer: Answer) -> None:
    await answer(201, (await changes.add_alias(await body())).to_dict())


async def _alias(changes: RuntimeChanges, answer: Answer, name: str) -> None:
    await answer(200, (await changes.get_alias(name)).to_dict(), synced=False)


async def _update_alias(changes: RuntimeChanges, body: Body, answer: Answer, name: str) -> None:
    data = await body()
    if "name" in data:
        raise InvalidRequestError("name: a model is not renamed; add one with POST /admin/aliases", param="name")
    await answer(200, (await changes.update_alias(name, data)).to_dict())


async def _remove_alias(changes: RuntimeChanges, answer: Answer, name: str) -> None:
    await answer(200, (await changes.remove_alias(name)).to_dict())


async def _reset_alias(changes: RuntimeChanges, answer: Answer, name: str) -> None:
    await answer(200, (await changes.reset_alias(name)).to_dict())
