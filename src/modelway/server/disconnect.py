"""Stop working for a client that went away: a watcher waits for ``http.disconnect`` and cancels the handler.

Once a request's body has been read, the next ASGI ``receive()`` returns only when the client disconnects. The
watcher task waits on it and cancels the task serving the request, so an upstream call (with its retries and
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

    __slots__ = ("_fired", "_task", "_watcher", "_receive")

    def __init__(self, req: Request) -> None:
        self._receive = req.receive
        self._fired: list[bool] = []
        self._watcher: asyncio.Task[None] | None = None
        task = asyncio.current_task()
        assert task is not None
        self._task = task

    def __enter__(self) -> Watcher:
        self._watcher = asyncio.create_task(_watch(self._receive, self._task, self._fired))
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: object) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
        # our cancel, and only ours (a server shutdown may cancel too): the client is gone, nothing else happened
        if et is asyncio.CancelledError and self._fired and self._task.uncancel() == 0:
            raise ClientGone from e


async def watched(req: Request, aw: Awaitable[T]) -> T:
    """Await ``aw``; if the client disconnects meanwhile, cancel it and raise :class:`ClientGone`."""
    with Watcher(req):
        return await aw
