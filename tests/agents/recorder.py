"""A tiny recording stand-in for an LLM API, to see exactly what an agent CLI sends.

It logs every request (method, path with query, headers with secrets redacted, JSON body) to a directory, one
JSON file per request, and answers plausibly:

* ``POST /v1/messages`` (any query, e.g. ``?beta=true``): an Anthropic Messages answer, SSE when ``stream`` is
  true, JSON otherwise. The text is ``"You said: <last user text>"``. With ``--tool`` the first turn of a
  conversation that offers that tool answers with a ``tool_use`` block for it instead (arguments from
  ``--tool-args``), and the next turn (whose last message carries the ``tool_result``) answers
  ``"Tool said: <result>"``. With ``--reasoning TEXT`` every answer starts with a ``thinking`` block carrying
  TEXT (and a made-up ``signature``).
* ``POST /v1/messages/count_tokens``: ``{"input_tokens": n}`` (n: a length estimate).
* ``POST /v1/responses``: an OpenAI Responses SSE stream (or JSON when ``stream`` is false) with the same echo;
  with ``--tool`` a ``function_call`` item for that tool, then ``"Tool said: <output>"``.
* ``GET /v1/models`` and ``/models``: a short list. Anything else: 404 JSON (recorded too).

Run: ``python tests/agents/recorder.py --port 0 --out DIR`` (prints ``listening on http://127.0.0.1:PORT``).
It is a capture tool, not part of the gateway.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import re
import secrets
import sys
import time
from pathlib import Path
from typing import Any

from aiohttp import web

SECRET_HEADERS = {"authorization", "x-api-key", "cookie", "set-cookie", "proxy-authorization"}
_counter = itertools.count(1)


def redact_headers(headers: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in headers.items():
        lk = k.lower()
        if lk in SECRET_HEADERS or re.search(r"(key|token|secret)", lk):
            scheme = v.split(" ", 1)[0] + " " if lk == "authorization" and " " in v else ""
            out[lk] = f"{scheme}<redacted:{len(v) - len(scheme)} chars>"
        else:
            out[lk] = v
    return out


def _text_of(content: Any) -> str:
    """The last text of a message content (a string, or a list of blocks/parts)."""
    if isinstance(content, str):
        return content
    texts: list[str] = []
    for block in content or []:
        if not isinstance(block, dict):
            continue
        t = block.get("type")
        text = block.get("text")
        # Claude Code sends reminders in <system-reminder> text blocks beside the prompt: skip those
        if t in ("text", "input_text", "output_text") and isinstance(text, str) and not text.startswith("<system-"):
            texts.append(text)
    return texts[-1] if texts else ""


def _tool_result_text(block: dict[str, Any]) -> str:
    c = block.get("content")
    if isinstance(c, list):
        return " ".join(b.get("text", "") for b in c if isinstance(b, dict))
    return str(c or "")


class Recorder:
    def __init__(self, out: Path, tool: str | None, tool_args: dict[str, Any], reasoning: str | None = None) -> None:
        self.out = out
        self.tool = tool
        self.tool_args = tool_args
        self.reasoning = reasoning
        out.mkdir(parents=True, exist_ok=True)

    async def record(self, request: web.Request) -> dict[str, Any]:
        raw = await request.read()
        body: Any
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = {"_raw": raw[:2000].decode("utf-8", "replace")}
        entry = {
            "seq": next(_counter),
            "time": time.time(),
            "method": request.method,
            "path": request.path,
            "query": request.query_string,
            "headers": redact_headers(request.headers),
            "body": body,
        }
        name = f"{entry['seq']:03d}-{request.method}-{re.sub(r'[^A-Za-z0-9]+', '_', request.path).strip('_')}.json"
        (self.out / name).write_text(json.dumps(entry, indent=2, ensure_ascii=False))
        print(f"[recorder] {request.method} {request.path_qs} -> {name}", file=sys.stderr, flush=True)
        return entry

    # -- Anthropic Messages -------------------------------------------------------------------------
    async def messages(self, request: web.Request) -> web.StreamResponse:
        entry = await self.record(request)
        body = entry["body"] or {}
        model = body.get("model", "unknown")
        msgs = body.get("messages") or []
        # the last user message (Claude Code puts role "system" messages into the list too, even last)
        last = next((m for m in reversed(msgs) if isinstance(m, dict) and m.get("role") == "user"), {})
        content = last.get("content")
        tool_results = (
            [b for b in content if isinstance(b, dict) and b.get("type") == "tool_result"]
            if isinstance(content, list)
            else []
        )
        offered = {t.get("name") for t in body.get("tools") or []}
        blocks: list[dict[str, Any]]
        if tool_results:
            blocks = [{"type": "text", "text": "Tool said: " + _tool_result_text(tool_results[-1])}]
            stop = "end_turn"
        elif self.tool and self.tool in offered:
            blocks = [
                {"type": "tool_use", "id": "toolu_" + secrets.token_hex(8), "name": self.tool, "input": self.tool_args}
            ]
            stop = "tool_use"
        else:
            blocks = [{"type": "text", "text": "You said: " + _text_of(content)}]
            stop = "end_turn"
        if self.reasoning:
            sig = "sig-" + secrets.token_hex(16)
            blocks.insert(0, {"type": "thinking", "thinking": self.reasoning, "signature": sig})
        msg_id = "msg_" + secrets.token_hex(12)
        usage_in = len(json.dumps(body)) // 4
        if not body.get("stream"):
            return web.json_response(
                {
                    "id": msg_id,
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": blocks,
                    "stop_reason": stop,
                    "stop_sequence": None,
                    "usage": {"input_tokens": usage_in, "output_tokens": 5},
                }
            )
        resp = web.StreamResponse(headers={"content-type": "text/event-stream", "cache-control": "no-cache"})
        await resp.prepare(request)

        async def ev(kind: str, data: dict[str, Any]) -> None:
            await resp.write(f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n".encode())

        await ev(
            "message_start",
            {
                "message": {
                    "id": msg_id,
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {
                        "input_tokens": usage_in,
                        "output_tokens": 1,
                        "cache_creation_input_tokens": 0,
                        "cache_read_input_tokens": 0,
                    },
                }
            },
        )
        for i, block in enumerate(blocks):
            if block["type"] == "thinking":
                start = {"type": "thinking", "thinking": ""}
                await ev("content_block_start", {"index": i, "content_block": start})
                delta = {"type": "thinking_delta", "thinking": block["thinking"]}
                await ev("content_block_delta", {"index": i, "delta": delta})
                delta = {"type": "signature_delta", "signature": block["signature"]}
                await ev("content_block_delta", {"index": i, "delta": delta})
            elif block["type"] == "text":
                await ev("content_block_start", {"index": i, "content_block": {"type": "text", "text": ""}})
                await ev("ping", {})
                text = block["text"]
                for j in range(0, len(text), 8):
                    await ev(
                        "content_block_delta", {"index": i, "delta": {"type": "text_delta", "text": text[j : j + 8]}}
                    )
            else:
                await ev("content_block_start", {"index": i, "content_block": {**block, "input": {}}})
                await ev(
                    "content_block_delta",
                    {"index": i, "delta": {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}},
                )
            await ev("content_block_stop", {"index": i})
        await ev(
            "message_delta", {"delta": {"stop_reason": stop, "stop_sequence": None}, "usage": {"output_tokens": 5}}
        )
        await ev("message_stop", {})
        await resp.write_eof()
        return resp

    async def count_tokens(self, request: web.Request) -> web.Response:
        entry = await self.record(request)
        return web.json_response({"input_tokens": max(1, len(json.dumps(entry["body"])) // 4)})

    # -- OpenAI Responses ---------------------------------------------------------------------------
    async def responses(self, request: web.Request) -> web.StreamResponse:
        entry = await self.record(request)
        body = entry["body"] or {}
        model = body.get("model", "unknown")
        items = body.get("input")
        if isinstance(items, str):
            items = [{"type": "message", "role": "user", "content": items}]
        items = items or []
        outputs = [it for it in items if isinstance(it, dict) and it.get("type") == "function_call_output"]
        users = [it for it in items if isinstance(it, dict) and it.get("role") == "user"]
        offered = {t.get("name") for t in body.get("tools") or [] if isinstance(t, dict)}
        # a tool output after the last user message means the tool ran: answer with it
        last_user_at = max((i for i, it in enumerate(items) if it in users), default=-1)
        later_outputs = [it for it in outputs if items.index(it) > last_user_at]
        resp_id = "resp_" + secrets.token_hex(12)
        out_items: list[dict[str, Any]]
        if later_outputs:
            out = later_outputs[-1].get("output")
            if not isinstance(out, str):
                out = json.dumps(out)
            text = "Tool said: " + out
            out_items = [self._message_item(text)]
        elif self.tool and self.tool in offered:
            out_items = [
                {
                    "type": "function_call",
                    "id": "fc_" + secrets.token_hex(8),
                    "call_id": "call_" + secrets.token_hex(8),
                    "name": self.tool,
                    "arguments": json.dumps(self.tool_args),
                    "status": "completed",
                }
            ]
        else:
            text = "You said: " + (_text_of(users[-1].get("content")) if users else "")
            out_items = [self._message_item(text)]
        if self.reasoning:
            summary = [{"type": "summary_text", "text": self.reasoning}]
            out_items.insert(0, {"type": "reasoning", "id": "rs_" + secrets.token_hex(8), "summary": summary})
        tokens_in = len(json.dumps(body)) // 4
        usage = {
            "input_tokens": tokens_in,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": 5,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": tokens_in + 5,
        }
        base = {
            "id": resp_id,
            "object": "response",
            "created_at": int(time.time()),
            "model": model,
            "status": "in_progress",
            "output": [],
            "usage": None,
        }
        final = {**base, "status": "completed", "output": out_items, "usage": usage}
        if not body.get("stream"):
            return web.json_response(final)
        resp = web.StreamResponse(headers={"content-type": "text/event-stream", "cache-control": "no-cache"})
        await resp.prepare(request)
        seq = itertools.count()

        async def ev(kind: str, data: dict[str, Any]) -> None:
            payload = {"type": kind, "sequence_number": next(seq), **data}
            await resp.write(f"event: {kind}\ndata: {json.dumps(payload)}\n\n".encode())

        await ev("response.created", {"response": base})
        await ev("response.in_progress", {"response": base})
        for idx, item in enumerate(out_items):
            if item["type"] == "reasoning":
                await ev("response.output_item.added", {"output_index": idx, "item": {**item, "summary": []}})
                at = {"output_index": idx, "item_id": item["id"], "summary_index": 0}
                await ev("response.reasoning_summary_part.added", {**at, "part": {"type": "summary_text", "text": ""}})
                await ev("response.reasoning_summary_text.delta", {**at, "delta": self.reasoning})
                await ev("response.reasoning_summary_text.done", {**at, "text": self.reasoning})
                await ev("response.reasoning_summary_part.done", {**at, "part": item["summary"][0]})
            elif item["type"] == "message":
                text = item["content"][0]["text"]
                await ev(
                    "response.output_item.added",
                    {"output_index": idx, "item": {**item, "content": [], "status": "in_progress"}},
                )
                await ev(
                    "response.content_part.added",
                    {
                        "output_index": idx,
                        "item_id": item["id"],
                        "content_index": 0,
                        "part": {"type": "output_text", "text": "", "annotations": []},
                    },
                )
                for j in range(0, len(text), 8):
                    await ev(
                        "response.output_text.delta",
                        {
                            "output_index": idx,
                            "item_id": item["id"],
                            "content_index": 0,
                            "delta": text[j : j + 8],
                            "logprobs": [],
                        },
                    )
                await ev(
                    "response.output_text.done",
                    {"output_index": idx, "item_id": item["id"], "content_index": 0, "text": text, "logprobs": []},
                )
                await ev(
                    "response.content_part.done",
                    {"output_index": idx, "item_id": item["id"], "content_index": 0, "part": item["content"][0]},
                )
            else:
                await ev(
                    "response.output_item.added",
                    {"output_index": idx, "item": {**item, "arguments": "", "status": "in_progress"}},
                )
                await ev(
                    "response.function_call_arguments.delta",
                    {"output_index": idx, "item_id": item["id"], "delta": item["arguments"]},
                )
                await ev(
                    "response.function_call_arguments.done",
                    {"output_index": idx, "item_id": item["id"], "arguments": item["arguments"]},
                )
            await ev("response.output_item.done", {"output_index": idx, "item": item})
        await ev("response.completed", {"response": final})
        await resp.write_eof()
        return resp

    @staticmethod
    def _message_item(text: str) -> dict[str, Any]:
        return {
            "type": "message",
            "id": "msg_" + secrets.token_hex(8),
            "role": "assistant",
            "status": "completed",
            "content": [{"type": "output_text", "text": text, "annotations": []}],
        }

    # -- the rest -----------------------------------------------------------------------------------
    async def models(self, request: web.Request) -> web.Response:
        await self.record(request)
        names = ["demo/glm-4-flash", "demo/qwen-plus"]
        return web.json_response(
            {
                "object": "list",
                "data": [
                    {
                        "id": n,
                        "object": "model",
                        "type": "model",
                        "display_name": n,
                        "created": 0,
                        "owned_by": "demo",
                        "created_at": "2025-01-01T00:00:00Z",
                    }
                    for n in names
                ],
                "has_more": False,
                "first_id": names[0],
                "last_id": names[-1],
            }
        )

    async def other(self, request: web.Request) -> web.Response:
        await self.record(request)
        return web.json_response(
            {
                "type": "error",
                "error": {"type": "not_found_error", "message": f"no route {request.method} {request.path}"},
            },
            status=404,
        )


async def serve(host: str, port: int, rec: Recorder) -> None:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/v1/messages", rec.messages)
    app.router.add_post("/v1/messages/count_tokens", rec.count_tokens)
    app.router.add_post("/v1/responses", rec.responses)
    app.router.add_post("/responses", rec.responses)
    app.router.add_get("/v1/models", rec.models)
    app.router.add_get("/models", rec.models)
    app.router.add_route("*", "/{tail:.*}", rec.other)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    actual = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(f"listening on http://{host}:{actual}", flush=True)
    await asyncio.Event().wait()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--out", required=True, type=Path, help="directory for the recorded requests")
    p.add_argument("--tool", help="answer the first turn with a call of this tool (if the request offers it)")
    p.add_argument("--tool-args", default="{}", help="JSON arguments of that tool call")
    p.add_argument("--reasoning", help="start every answer with a thinking block / reasoning item of this text")
    a = p.parse_args()
    try:
        asyncio.run(serve(a.host, a.port, Recorder(a.out, a.tool, json.loads(a.tool_args), a.reasoning)))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
