"""Staying registered with a cluster's controller: register, heartbeat, register again, leave.

One :class:`Membership` per controller runs as a background task of the worker app (started once the gateway is
ready, cancelled at shutdown). Its loop registers, then sends a heartbeat every ``interval`` seconds; a controller
that forgot the worker (it restarted) gets the registration again. While the controller cannot be reached, the
loop retries with a doubling wait (1 s, 2 s, 4 s, ... up to the interval, at most 30 s) and logs the outage once,
and once more when the controller answers again.
"""

from __future__ import annotations

import asyncio
import logging
import random
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import aiohttp

__all__ = ["ControllerError", "Membership"]

log = logging.getLogger("modelway.cluster")

#: seconds one call to a controller may take
CALL_TIMEOUT = 5.0
MAX_BACKOFF = 30.0


class ControllerError(Exception):
    """A controller answered, but not as expected (a status other than 2xx, or a body of the wrong shape)."""


class Membership(ABC):
    """Registration with one controller at ``url``; ``queue_length`` gives the worker's requests in flight."""

    #: what the logs call the controller, e.g. "the FastChat controller"
    kind: str = "the controller"

    def __init__(self, url: str, interval: float, queue_length: Callable[[], int]) -> None:
        self.url = url.rstrip("/")
        self.interval = interval
        self.queue_length = queue_length
        self.registered = False
        #: heartbeats the controller accepted, and registrations it accepted (for tests and logs)
        self.beats = 0
        self.registrations = 0
        self._session: aiohttp.ClientSession | None = None

    # -- the protocol ---------------------------------------------------------------------------
    @abstractmethod
    async def register(self) -> None:
        """Announce the worker's models; raises on failure."""

    @abstractmethod
    async def beat(self) -> bool:
        """One heartbeat; ``False`` when the controller does not know the worker (register again)."""

    @abstractmethod
    async def leave(self) -> None:
        """Tell the controller the worker is going (best effort, once, at shutdown)."""

    # -- plumbing -------------------------------------------------------------------------------
    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=CALL_TIMEOUT))
        return self._session

    async def call(self, method: str, path: str, *, json: Any = None, params: dict[str, str] | None = None) -> Any:
        """``method`` ``url + path``; the decoded JSON answer (``None`` for an empty body). Raises
        :class:`ControllerError` on a non-2xx answer, :class:`aiohttp.ClientError` or :class:`TimeoutError` when
        the controller cannot be reached."""
        async with self._http().request(method, self.url + path, json=json, params=params) as resp:
            body = await resp.read()
            if resp.status // 100 != 2:
                raise ControllerError(f"{method} {path} answered HTTP {resp.status}: {body[:200]!r}")
            if not body.strip():
                return None
            try:
                return await resp.json(content_type=None)
            except ValueError as exc:
                raise ControllerError(f"{method} {path} answered something other than JSON: {body[:200]!r}") from exc

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _wait(self, failures: int) -> float:
        base = min(float(2 ** min(failures - 1, 10)), self.interval, MAX_BACKOFF)
        return base * random.uniform(0.8, 1.0)

    async def run(self) -> None:
        """Register and heartbeat until cancelled."""
        failures = 0
        while True:
            try:
                if not self.registered:
                    await self.register()
                    self.registered = True
                    self.registrations += 1
                    log.info("registered with %s at %s", self.kind, self.url)
                elif await self.beat():
                    self.beats += 1
                else:
                    log.warning(
                        "%s at %s does not know this worker (restarted?): registering again", self.kind, self.url
                    )
                    self.registered = False
                    continue
                if failures:
                    log.warning("%s at %s answers again, after %d failed tries", self.kind, self.url, failures)
                    failures = 0
                await asyncio.sleep(self.interval)
            except asyncio.CancelledError:
                raise
            except (aiohttp.ClientError, TimeoutError, ControllerError, OSError, ValueError) as exc:
                failures += 1
                if failures == 1:
                    log.warning(
                        "%s at %s: %s; retrying until it answers (logged again once it does)",
                        self.kind,
                        self.url,
                        exc or type(exc).__name__,
                    )
                await asyncio.sleep(self._wait(failures))
