"""What can go wrong on a connection of the lean client, and our error for each (messages never name the host)."""

from __future__ import annotations

from ..errors import ProviderConnectionError, ProviderTimeoutError, StreamError
from ..transport import reason, timed_out

__all__ = ["BadAnswer", "BadURL", "ConnectTimedOut", "ConnectionLost", "TransportFailure", "map_failure"]


class TransportFailure(Exception):
    """A failure of the lean client's connection."""


class ConnectionLost(TransportFailure):
    """The connection closed or was reset before the answer ended. ``stale``: a pooled connection that the server
    closed (FIN, not a reset) before any byte of the answer: it had closed it while idle, as the request came (the
    request may be sent again, once, on a new connection). ``unsent``: nothing of the request was written (it may be
    sent again, whatever happened before)."""

    def __init__(self, message: str, stale: bool = False, unsent: bool = False) -> None:
        super().__init__(message)
        self.stale = stale
        self.unsent = unsent


class BadAnswer(TransportFailure):
    """The answer is not valid HTTP (or its head is over the bounds)."""


class BadURL(TransportFailure):
    """The provider's URL cannot be used."""


class ConnectTimedOut(TransportFailure):
    """No connection within the transport's connect timeout (shorter than the request's own)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"no connection within {seconds:g}s")
        self.seconds = seconds


def map_failure(
    exc: BaseException, provider: str, *, reading: bool, timeout: float | None = None
) -> ProviderConnectionError | ProviderTimeoutError | StreamError:
    """Our error for a failure of the lean client: a timeout, a connection that failed or broke, an answer that is
    not HTTP. ``reading``: the answer's head had arrived."""
    if isinstance(exc, TimeoutError):
        return timed_out(provider, reading=reading, timeout=timeout)
    if isinstance(exc, ConnectTimedOut):
        what = f"the provider did not take a connection within {exc.seconds:g}s"
        return ProviderTimeoutError(what, provider=provider)
    if isinstance(exc, ConnectionLost):
        if reading:
            return StreamError(f"the provider's response was cut off: {exc}", provider=provider)
        return ProviderConnectionError(f"cannot reach the provider: {exc}", provider=provider)
    if isinstance(exc, BadAnswer):
        if reading:
            return StreamError(f"the provider's response broke off: {exc}", provider=provider)
        # (a head that is not HTTP: the wrong port, a proxy's garbage; the provider was not reached)
        return ProviderConnectionError(
            f"cannot reach the provider: its answer is not valid HTTP: {exc}", provider=provider
        )
    if isinstance(exc, TransportFailure):  # (a URL that cannot be used, a transport that was closed)
        return ProviderConnectionError(f"cannot reach the provider: {exc}", provider=provider)
    if reading:
        return StreamError(f"the provider's response broke off: {reason(exc)}", provider=provider)
    # the message never names the host: a gateway shows it to its callers (the cause stays chained for logs)
    return ProviderConnectionError(f"cannot reach the provider: {reason(exc)}", provider=provider)
