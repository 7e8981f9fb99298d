"""Stop working for a client that went away: a disconnect cancels the task serving the request.

Under the gateway's own server protocol (:mod:`.protocol_lean`) the request's cycle calls back when its connection
is lost (the scope's ``extensions["modelway.disconnect"]``). Under another ASGI server a watcher task waits in
``receive()``: once a request's body has been read, the next ``receive()`` returns only when the client
disconnects. Either way the task serving the request is cancelled, so an upstream call (with its retries and
failovers) stops at once instead of running on for nobody.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from .http import ClientGone, Receive, Request

__all__ = ["ClientGone", "Watcher", "watched"]

T = TypeVar("T")


async def _watch(receive: Receive, task: asyncio.Task[object], fired: list[bool]) -> None:
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            fired.append(True)
            task.cancel()
            return


class Watcher:
    """``with Watcher(req):`` around work for a request whose body was read; a disconnect cancels the work and
    raises :class:`ClientGone` out of the block."""

    __slots__ = ("_cycle", "_fired", "_task", "_watcher", "_receive")

    def __init__(self, req: Request) -> None:
        self._receive = req.receive
        self._fired: list[bool] = []
        self._watcher: asyncio.Task[None] | None = None
        extensions = req.scope.get("extensions")
        self._cycle = extensions.get("modelway.disconnect") if extensions else None
        task = asyncio.current_task()
        assert task is not None
        self._task = task

    def _gone(self) -> None:
        self._fired.append(True)
        self._task.cancel()

    def __enter__(self) -> Watcher:
        if self._cycle is not None:
            self._cycle.on_disconnect(self._gone)
        else:
            self._watcher = asyncio.create_task(_watch(self._receive, self._task, self._fired))
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: object) -> None:
        if self._cycle is not None:
            self._cycle.on_disconnect(None)
        elif self._watcher is not None:
            self._watcher.cancel()
        # our cancel, and only ours (a server shutdown may cancel too): the client is gone, nothing else happened
        if et is asyncio.CancelledError and self._fired and self._task.uncancel() == 0:
            raise ClientGone from e


async def watched(req: Request, aw: Awaitable[T]) -> T:
    """Await ``aw``; if the client disconnects meanwhile, cancel it and raise :class:`ClientGone`."""
    with Watcher(req):
        return await aw
