"""Inbound dialects: every chat-like route is :func:`serve` with its :class:`~.base.Dialect` (see
``docs/architecture.md``, "Inbound dialects").

=============================  =================================================  ===============
route                          dialect                                            endpoint label
=============================  =================================================  ===============
/v1/chat/completions           :mod:`.openai_chat`                                ``chat``
/api/v2/chat/completions       :mod:`.dbgpt`                                      ``dbgpt``
/v1/completions                :mod:`.completions`                                ``completions``
/v1/messages                   :mod:`.anthropic` (``anthropic_request``, ``_stream``)   ``messages``
/v1/responses                  :mod:`.responses` (``responses_items``, ``_stream``)     ``responses``
=============================  =================================================  ===============
"""

from __future__ import annotations

from ..disconnect import Watcher
from ..gateway import Gateway
from ..http import Request, Send
from .base import Call, Dialect, StreamRenderer

__all__ = ["Call", "Dialect", "StreamRenderer", "serve"]

#: a dialect that keeps no answers does not override this (no coroutine is made for it then)
_STORES_NOTHING = Dialect.stored


async def serve(dialect: Dialect, gw: Gateway, req: Request, send: Send) -> None:
    """Serve one chat-like request in ``dialect``: parse, admit (keys, limits: the ticket), route, answer."""
    data = req.decode(await req.body(gw.config.server.max_body_bytes))  # (req.json, one coroutine less)
    call = await dialect.parse(data, req, gw)
    creq = call.request
    ticket = await gw.control.begin(req.request_id, req.caller, call.model, dialect.endpoint, creq.stream)
    ticket.messages = creq.messages
    if not creq.stream:
        # (``async with ticket`` spelt out: its __aenter__ and __aexit__ coroutines cost more than this)
        try:
            with Watcher(req):  # (a disconnect cancels the upstream work and raises ClientGone)
                resp = await gw.router.complete(call.model, creq, ticket)
            resp.model = call.model
            payload = dialect.body(resp, call)
            if type(dialect).stored is not _STORES_NOTHING:
                await dialect.stored(resp, call, req, gw)
            await ticket.answer(req, send, resp.usage, payload)
        except BaseException as exc:
            await ticket.fail(exc)
            raise
        await ticket.finish(200, ticket.usage)
        return
    renderer = dialect.stream(call, req.request_id)
    await ticket.respond_stream(req, send, gw.router.stream(call.model, creq, ticket), dialect, renderer)
