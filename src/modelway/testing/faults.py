"""How the simulators play replies and faults on the wire.

:func:`play` answers one model request with a :class:`~modelway.testing.Reply` or a
:class:`~modelway.testing.Fault`: each fault kind has a player here (see :data:`PLAYERS`), written once
for every provider on top of an :class:`~modelway.testing._exchange.Exchange` (the provider only renders
bodies, stream events, error bodies and error frames). What each fault does is documented on its
:class:`~modelway.testing.Fault` constructor.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from http import HTTPStatus

from aiohttp import web

from ._bodies import MARKER, Expansion, GzipBody, json_expansion, line_expansion, stream_expansion
from ._exchange import JSON, Exchange
from .script import Fault, FaultKind, Reply

__all__ = ["PLAYERS", "Player", "play", "play_reply"]

Player = Callable[[Exchange, Fault], Awaitable[web.StreamResponse]]


async def play(ex: Exchange, item: Reply | Fault) -> web.StreamResponse:
    """Answer ``ex``'s request with ``item``."""
    if isinstance(item, Reply):
        return await play_reply(ex)
    return await PLAYERS[item.kind](ex, item)


async def play_reply(ex: Exchange) -> web.StreamResponse:
    """The ordinary answer: the whole JSON body, or every stream event and the stream's end."""
    if not ex.stream:
        return ex.respond(ex.body())
    resp, rendered, _, ok = await ex.open_stream()
    if ok:
        await ex.write(resp, rendered.tail)
    return resp  # aiohttp ends the body (write_eof)


# ---------------------------------------------------------------------------------------- the faults


async def http_error(ex: Exchange, fault: Fault) -> web.StreamResponse:
    return ex.sim.error_response(
        ex.request,
        fault.status or 500,
        code=fault.code,
        message=fault.message,
        retry_after=fault.retry_after,
        headers=fault.headers,
    )


async def slow_first_byte(ex: Exchange, fault: Fault) -> web.StreamResponse:
    await asyncio.sleep(fault.seconds or 0.0)
    return await play_reply(ex)


async def _half_body(ex: Exchange) -> tuple[web.StreamResponse, bytes, bool]:
    """Headers with the whole body's ``Content-Length``, then its first half; returns the other half."""
    body = ex.body()
    resp = await ex.open(length=len(body))
    ok = await ex.write(resp, body[: len(body) // 2])
    return resp, body[len(body) // 2 :], ok


async def cut_stream(ex: Exchange, fault: Fault) -> web.StreamResponse:
    if ex.stream:
        resp, *_ = await ex.open_stream(fault.after_chunks or 0)
    else:
        resp, *_ = await _half_body(ex)
    ex.drop()
    return resp


async def error_frame(ex: Exchange, fault: Fault) -> web.StreamResponse:
    if not ex.stream:
        return ex.sim.error_response(ex.request, fault.status or 500, code=fault.code, message=fault.message)
    resp, _, sent, ok = await ex.open_stream(fault.after_chunks or 0)
    if ok:
        await ex.write(resp, ex.sim._stream_error(fault, ex.rid, sent + 1))
    return resp


async def malformed_json(ex: Exchange, fault: Fault) -> web.StreamResponse:
    if not ex.stream:
        body = ex.body()
        return ex.respond(body[: max(2, len(body) // 2)])
    resp, _, sent, ok = await ex.open_stream(fault.after_chunks or 0)
    if ok:
        await ex.write(resp, ex.sim._malformed_event(sent + 1))
    return resp


async def reset(ex: Exchange, fault: Fault) -> web.StreamResponse:
    if fault.after_chunks is None:
        await ex.reset()
        return web.Response()  # never sent: aiohttp finds the connection gone
    if ex.stream:
        resp, *_ = await ex.open_stream(fault.after_chunks)
    else:
        resp, *_ = await _half_body(ex)
    await ex.reset()
    return resp


async def stall(ex: Exchange, fault: Fault) -> web.StreamResponse:
    if not ex.stream:
        if fault.keepalive is not None:  # blank lines before the body
            resp = await ex.open()
            if await ex.stall(resp, fault.seconds, fault.keepalive, b"\n"):
                await ex.write(resp, ex.body())
            return resp
        resp, rest, ok = await _half_body(ex)
        if ok and await ex.stall(resp, fault.seconds, None, b""):
            await ex.write(resp, rest)
        return resp
    resp, rendered, sent, ok = await ex.open_stream(fault.after_chunks)
    if not ok or not await ex.stall(resp, fault.seconds, fault.keepalive, b": keep-alive\n\n"):
        return resp
    if rendered.events[sent:] and ex.reply.chunk_delay:
        await asyncio.sleep(ex.reply.chunk_delay)
    if await ex.send_events(resp, rendered.events[sent:]):
        await ex.write(resp, rendered.tail)
    return resp


def _marked(ex: Exchange) -> Reply:
    """The reply with the filler marker as its text (see :mod:`modelway.testing._bodies`)."""
    return dataclasses.replace(ex.reply, text=MARKER, chunks=[MARKER])


def _expansion(ex: Exchange, nbytes: int, *, total: bool = False) -> Expansion:
    """A stream of about ``nbytes``, or a JSON body whose content is ``nbytes`` (the whole body when
    ``total``)."""
    marked = _marked(ex)
    if ex.stream:
        return stream_expansion(ex.prelude, ex.events(marked), nbytes)
    return json_expansion(ex.body(marked), nbytes, total=total)


async def oversized(ex: Exchange, fault: Fault) -> web.StreamResponse:
    body = _expansion(ex, fault.nbytes)
    resp = await ex.open(length=None if ex.stream else body.size)
    await ex.write_all(resp, body.pieces())
    return resp


async def long_line(ex: Exchange, fault: Fault) -> web.StreamResponse:
    if not ex.stream:
        return await oversized(ex, fault)
    events = ex.events().events[: fault.after_chunks]
    resp = await ex.open(close=True)  # the connection closes once the body has ended
    await ex.write_all(resp, line_expansion(ex.prelude + b"".join(events), fault.nbytes).pieces())
    return resp


async def gzip_bomb(ex: Exchange, fault: Fault) -> web.StreamResponse:
    body = GzipBody(_expansion(ex, fault.nbytes, total=True))
    resp = await ex.open(length=None if ex.stream else body.size, headers={"Content-Encoding": "gzip"})
    await ex.write_all(resp, body.pieces())
    return resp


#: what an HTML answer says: nginx's welcome page for 200, its error page otherwise
_WELCOME = (
    b"<!DOCTYPE html>\n<html>\n<head>\n<title>Welcome to nginx!</title>\n</head>\n<body>\n"
    b"<h1>Welcome to nginx!</h1>\n<p>If you see this page, the nginx web server is successfully installed and"
    b" working.</p>\n</body>\n</html>\n"
)
_ERROR_PAGE = (
    "<html>\r\n<head><title>{0}</title></head>\r\n<body>\r\n<center><h1>{0}</h1></center>\r\n"
    "<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)


async def content_type(ex: Exchange, fault: Fault) -> web.StreamResponse:
    media = fault.media_type or JSON
    status = fault.status or 200
    if fault.body is not None:
        body = fault.body
    elif "json" in media:
        body = ex.render(ex.reply) if ex.stream else ex.body()
    elif "event-stream" in media:
        rendered = ex.events()
        body = ex.prelude + b"".join(rendered.events) + rendered.tail
    elif "html" in media:
        body = _WELCOME if status == 200 else _ERROR_PAGE.format(f"{status} {_phrase(status)}").encode()
    else:
        body = b"upstream error\n"
    return ex.respond(body, content_type=media, status=status)


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


PLAYERS: dict[FaultKind, Player] = {
    "http": http_error,
    "slow_first_byte": slow_first_byte,
    "cut_stream": cut_stream,
    "error_frame": error_frame,
    "malformed_json": malformed_json,
    "reset": reset,
    "stall": stall,
    "oversized": oversized,
    "long_line": long_line,
    "gzip_bomb": gzip_bomb,
    "content_type": content_type,
}
