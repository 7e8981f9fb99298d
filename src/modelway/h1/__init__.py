"""The lean HTTP/1.1 client behind :class:`~modelway.transport.Transport` (``backend="h1"``, the default): asyncio
protocols and httptools' response parser, a keep-alive pool, nothing per request that is not needed.

- :mod:`.request`: a URL parsed once into a target, a request's head (header injection refused);
- :mod:`.conn`: one connection and the answer it reads, bounded (head, trailers, unread bytes);
- :mod:`.pool`: connections per host, limits, waiting callers, keep-alive, DNS and happy eyeballs;
- :mod:`.failures`: what goes wrong on a connection, mapped to our errors;
- :mod:`.backend`: the backend :class:`~modelway.transport.Transport` drives.

It needs httptools (``modelway[server]``); without it, :class:`~modelway.transport.Transport` uses aiohttp.
"""

from .backend import H1Backend

__all__ = ["H1Backend"]
