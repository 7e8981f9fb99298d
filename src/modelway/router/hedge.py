"""Hedged requests: when the first deployment has produced no output after a delay, the same request starts at
another deployment; the first to produce output wins and the other is cancelled.

"Output" is the commit point: a whole answer, or a stream's first chunk with output
(:func:`modelway.calls.open_stream`). Cancelling the loser closes its upstream connection at once (the provider
stops generating); a loser that produced output at the same moment is closed too. Nothing of the loser reaches the
caller, and nothing is charged for it: the caller's usage record and the trace name the winner only. What the
provider bills for the loser's prompt is the operator's cost of hedging (the router counts the loser as an attempt:
``trace.attempts``). Hedging is off unless a model's policy has :class:`~modelway.router.policy.HedgeSettings`.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, TypeVar

from ..errors import BadRequestError, ModelwayError
from .policy import HedgeSettings

if TYPE_CHECKING:
    from .deployments import Deployment
    from .failover import Attempt, Failover

__all__ = ["hedge_delay", "race"]

T = TypeVar("T")


def hedge_delay(settings: HedgeSettings, dep: Deployment, *, stream: bool) -> float | None:
    """Seconds to wait for ``dep``'s output before hedging (``None``: do not hedge this attempt); ``"p95"`` reads
    the deployment's times to first output for a stream, its whole answers' times for other requests."""
    if not isinstance(settings.after, str):
        return float(settings.after)
    p95 = dep.stats.percentile(0.95, settings.min_samples, stream=stream)
    return p95 if p95 is not None else settings.default


async def race(failover: Failover[T], first: Attempt, delay: float) -> tuple[T, Attempt]:
    """Run ``first``; after ``delay`` without output, also an attempt at another deployment that can take it now.
    The first success wins (the other is cancelled); a bad request ends the race; when both fail, the last error
    is raised (each failure is counted by :meth:`Failover.attempt`)."""
    tasks: dict[asyncio.Task[T], Attempt] = {asyncio.create_task(failover.attempt(first)): first}
    try:
        done, _ = await asyncio.wait(tasks, timeout=delay)
        if not done:
            second = await failover.admit_now()
            if second is not None:
                tasks[asyncio.create_task(failover.attempt(second))] = second
        pending: set[asyncio.Task[T]] = set(tasks)
        last: BaseException | None = None
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in sorted(done, key=lambda t: t.cancelled() or t.exception() is not None):
                if task.cancelled():
                    continue
                exc = task.exception()
                if exc is None:
                    await _stop(failover, tasks, keep=task)
                    return task.result(), tasks[task]
                if isinstance(exc, BadRequestError) or not isinstance(exc, ModelwayError):
                    raise exc
                last = exc
        assert last is not None
        raise last
    except BaseException:
        await _stop(failover, tasks, keep=None)  # (the caller left, or the race is lost): stop what still runs
        raise


async def _stop(failover: Failover[T], tasks: dict[asyncio.Task[T], Attempt], keep: asyncio.Task[T] | None) -> None:
    """Cancel every task but ``keep``; close what a loser produced anyway, and give back what each loser held (a
    loser cancelled by a winner: its latency averages learn how long it took without an answer)."""
    losers = [t for t in tasks if t is not keep]
    for t in losers:
        t.cancel()
    await asyncio.gather(*losers, return_exceptions=True)
    for t in losers:
        att = tasks[t]
        if keep is not None and t.cancelled():
            att.lost()
        if not t.cancelled() and t.exception() is None and failover.discard is not None:
            try:
                await failover.discard(t.result())  # it produced output at the same moment: close it
            except Exception:  # closing a loser must not fail the winner
                pass
        att.abandoned()  # no-op for an attempt that already failed or finished
