"""Per-deployment quotas (requests in flight, requests and tokens per minute) and the bounded FIFO queue a request
waits in while every deployment of its model is at its quota.

A :class:`QuotaUsage` lives on each deployment. A request takes a :class:`Slot` when it is admitted (its tokens
estimated from its size) and the slot is released exactly once however the request ends: answered, failed or
cancelled (a stream: when it ends or its reader closes it). The answer's reported usage replaces the estimate in
the token window. With shared router state (:mod:`modelway.router.shared`) the quota is checked and taken across
processes first; this process's usage is still counted here (it is the quota while the shared state is
unreachable), and ``shared`` holds the last shared view for :meth:`QuotaUsage.snapshot`.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from ..errors import RateLimitError
from .policy import Quota

__all__ = ["AdmissionQueue", "DeploymentsBusyError", "QuotaUsage", "Slot"]

MINUTE = 60.0


class DeploymentsBusyError(RateLimitError):
    """Every deployment of the model is at its quota and the request waited as long as it may (or the queue was
    full): answered 429 with ``Retry-After``. Raised by the gateway itself, no provider involved."""

    def __init__(self, message: str, *, retry_after: float | None) -> None:
        super().__init__(message, code="deployment_quota_exceeded", retry_after=retry_after)


class Slot:
    """One admitted request's share of a deployment's quota."""

    __slots__ = ("entry", "on_release", "released", "usage")

    def __init__(self, usage: QuotaUsage, entry: list[float], on_release: Callable[[], None] | None) -> None:
        self.usage = usage
        #: ``[admitted at, tokens]`` in the deployment's token window
        self.entry = entry
        self.on_release = on_release
        self.released = False

    def settle(self, tokens: int) -> None:
        """The answer's usage is known: count it instead of the estimate."""
        self.entry[1] = float(tokens)

    def release(self) -> None:
        if self.released:
            return
        self.released = True
        self.usage.concurrent -= 1
        if self.on_release is not None:
            self.on_release()


class QuotaUsage:
    """What one deployment is using now, against its :class:`~modelway.router.policy.Quota`."""

    __slots__ = ("concurrent", "shared", "window")

    def __init__(self) -> None:
        self.concurrent = 0
        #: (in flight, requests and tokens in the last minute) across processes, when shared (else ``None``)
        self.shared: tuple[int, int, int] | None = None
        #: ``[admitted at, tokens]`` of the requests admitted in the last minute
        self.window: deque[list[float]] = deque()

    def _trim(self, now: float) -> None:
        w = self.window
        while w and w[0][0] <= now - MINUTE:
            w.popleft()

    def wait(self, quota: Quota | None, now: float, tokens: int) -> float:
        """0 when a request of ``tokens`` fits now; else how long until it may (``inf``: when a request ends)."""
        if quota is None:
            return 0.0
        self._trim(now)
        wait = 0.0
        if quota.max_concurrent is not None and self.concurrent >= quota.max_concurrent:
            wait = math.inf
        w = self.window
        if quota.rpm is not None and len(w) >= quota.rpm:
            wait = max(wait, w[len(w) - quota.rpm][0] + MINUTE - now)
        if quota.tpm is not None and w:
            used = sum(e[1] for e in w)
            excess = used + tokens - quota.tpm  # a request larger than the whole quota fits an idle minute
            if excess > 0:
                freed, at = 0.0, now
                for t, n in w:
                    freed += n
                    at = t + MINUTE
                    if freed >= excess:
                        break
                wait = max(wait, at - now)
        return max(wait, 0.0)

    def take(self, now: float, tokens: int, on_release: Callable[[], None] | None = None) -> Slot:
        entry = [now, float(tokens)]
        self.window.append(entry)
        self.concurrent += 1
        return Slot(self, entry, on_release)

    def snapshot(self, quota: Quota | None, now: float) -> dict[str, Any]:
        self._trim(now)
        concurrent, requests, tokens = self.shared or (
            self.concurrent,
            len(self.window),
            int(sum(e[1] for e in self.window)),
        )
        return {
            "concurrent": concurrent,
            "requests_last_minute": requests,
            "tokens_last_minute": tokens,
            "max_concurrent": quota.max_concurrent if quota else None,
            "rpm": quota.rpm if quota else None,
            "tpm": quota.tpm if quota else None,
        }


class AdmissionQueue:
    """The callers of one model waiting for a deployment under its quota, first come first served.

    Only the caller at the head may take a freed slot, and a newcomer joins the queue when anyone is waiting: no
    one overtakes. The head is woken when a slot of the model is released, and at the latest when a window frees.
    """

    __slots__ = ("_waiters",)

    def __init__(self) -> None:
        self._waiters: deque[asyncio.Event] = deque()

    def __len__(self) -> int:
        return len(self._waiters)

    @property
    def waiting(self) -> bool:
        """Whether anyone waits (``bool(queue)``, for hot paths)."""
        return bool(self._waiters)

    def notify(self) -> None:
        """A slot was released: the head may look again."""
        if self._waiters:
            self._waiters[0].set()

    async def wait_for(
        self,
        take: Callable[[], Awaitable[tuple[object | None, float]]],
        *,
        depth: int,
        timeout: float,
        clock: Callable[[], float],
        hint: float | None = None,
    ) -> object:
        """Wait in line until ``take()`` returns something (it returns it, or ``None`` and how long until it may
        succeed); :class:`DeploymentsBusyError` when the queue holds ``depth`` callers or after ``timeout``.
        ``hint``: the caller already tried ``take()`` with no one waiting, and this is what it said."""
        if hint is not None:
            pass
        elif not self._waiters:
            got, hint = await take()
            if got is not None:
                return got
        else:
            hint = math.inf
        if len(self._waiters) >= depth or timeout <= 0:
            full = " and its queue is full" if depth and len(self._waiters) >= depth else ""
            raise DeploymentsBusyError(
                f"every deployment of the model is at its quota{full}", retry_after=_retry_after(hint, timeout)
            )
        me = asyncio.Event()
        self._waiters.append(me)
        deadline = clock() + timeout
        try:
            while True:
                if self._waiters[0] is me:
                    got, hint = await take()
                    if got is not None:
                        return got
                left = deadline - clock()
                if left <= 0:
                    raise DeploymentsBusyError(
                        f"every deployment of the model stayed at its quota for {timeout:g}s",
                        retry_after=_retry_after(hint, timeout),
                    )
                me.clear()
                try:
                    # a freed window wakes no one: look again when it frees (and now and then, for slots freed by
                    # another model's requests on a shared deployment)
                    async with asyncio.timeout(min(left, hint if self._waiters[0] is me else left, 0.25)):
                        await me.wait()
                except TimeoutError:
                    pass
        finally:
            head = self._waiters[0] is me
            self._waiters.remove(me)
            if head:
                self.notify()  # the next caller is the head now


def _retry_after(hint: float, timeout: float) -> float:
    """What a refused caller is told to wait: until a window frees, else about as long as the queue's wait."""
    return max(1.0, math.ceil(hint if math.isfinite(hint) else max(timeout, 1.0)))
