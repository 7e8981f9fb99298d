"""Drive DB-GPT's official client (``dbgpt-client``) for one request and print the outcome as JSON.

Runs with the python of the virtualenv built by ``dbgpt_env.py`` (never the project's), so it imports
nothing but the standard library and the client. The job is a JSON object given as the first argument
or on stdin::

    {"api_base": "http://127.0.0.1:8000/api/v2", "api_key": "sk-...", "model": "glm",
     "messages": "hi" | [{"role": "user", "content": "hi"}, ...], "kind": "chat" | "chat_stream",
     "kwargs": {"incremental": false, "temperature": 0, "max_new_tokens": 8, "chat_mode": "..."},
     "timeout": 30}

It prints one JSON object to stdout::

    {"result": <chat: the returned object dumped; chat_stream: the list of yielded chunks dumped>,
     "types": [<type name of the returned object, or of each chunk>],   # "dict" on a non-200 answer
     "error": null | <exception type name>, "message": null | <str(exception)>,
     "http": {"status": int, "headers": {<lower-case name>: str}, "body": <the raw body the client read>}}

On an exception ``result`` holds what was returned or yielded before it (a stream's earlier chunks).
``http.body`` lets a test check what the client saw on the wire, e.g. that a stream ended with
``data: [DONE]``. Exit status 0 whenever a JSON result was printed, also when the client raised.

``--serve`` runs many requests, each in a process of its own forked from the driver (``serve``): the import of the
client is paid once instead of once a request.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

# stdout carries only the result: the client's import chain prints to it (dbgpt/configs says "Setting random seed
# to 42" when CI is set or pytest is loaded), so everything before the result goes to stderr
with contextlib.redirect_stdout(sys.stderr):
    import httpx  # the client's own HTTP library, installed with it
    from dbgpt_client import Client


class _Tee(httpx.AsyncByteStream):
    """Wraps a response's byte stream: the client reads it as usual and we keep a copy of the bytes."""

    def __init__(self, stream: httpx.AsyncByteStream, sink: bytearray) -> None:
        self._stream = stream
        self._sink = sink

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for part in self._stream:
            self._sink.extend(part)
            yield part

    async def aclose(self) -> None:
        await self._stream.aclose()


def _dump(obj: Any) -> Any:
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json")
    if hasattr(obj, "dict"):
        return obj.dict()
    return obj


async def run(job: dict[str, Any]) -> dict[str, Any]:
    client = Client(api_base=job["api_base"], api_key=job.get("api_key"), timeout=job.get("timeout", 30))
    http: dict[str, Any] = {"status": None, "headers": {}, "body": ""}
    raw = bytearray()

    async def on_response(response: httpx.Response) -> None:  # httpx event hook: runs before the body is read
        http["status"] = response.status_code
        http["headers"] = {k.lower(): v for k, v in response.headers.items()}
        assert isinstance(response.stream, httpx.AsyncByteStream)
        response.stream = _Tee(response.stream, raw)

    # the client keeps its httpx.AsyncClient private; event hooks are httpx's public way to observe it
    client._http_client.event_hooks["response"].append(on_response)

    out: dict[str, Any] = {"result": None, "types": [], "error": None, "message": None}
    kwargs = dict(job.get("kwargs") or {})
    try:
        if job["kind"] == "chat":
            answer = await client.chat(job["model"], job["messages"], **kwargs)
            out["result"] = _dump(answer)
            out["types"] = [type(answer).__name__]
        elif job["kind"] == "chat_stream":
            out["result"] = []
            async for chunk in client.chat_stream(job["model"], job["messages"], **kwargs):
                out["result"].append(_dump(chunk))
                out["types"].append(type(chunk).__name__)
        else:
            raise ValueError(f"unknown kind {job['kind']!r}")
    except Exception as e:  # the outcome under test: report it, do not crash
        out["error"] = type(e).__name__
        out["message"] = str(e)
    finally:
        # close on this loop: the client's own atexit close() fails once asyncio.run() has closed the loop
        # (DB-GPT issue #2838); after aclose() that callback finds the client closed and does nothing
        await client.aclose()
    http["body"] = raw.decode("utf-8", errors="replace")
    out["http"] = http
    return out


def main(argv: list[str]) -> int:
    if argv[1:2] == ["--serve"]:
        return serve()
    job = json.loads(argv[1] if len(argv) > 1 else sys.stdin.read())
    return one(job)


def one(job: dict[str, Any]) -> int:
    with contextlib.redirect_stdout(sys.stderr):
        result = asyncio.run(run(job))
    sys.stdout.write(json.dumps(result, ensure_ascii=False) + "\n")
    return 0


def serve() -> int:
    """``--serve``: still one process per request, forked from this one (which imported the client once, the slow
    part of a start). Reads one line per request on stdin, ``{"job": <job>, "stdout": <path>, "stderr": <path>,
    "timeout": <seconds>}``; a child runs the job with its stdout and stderr in those files and exits as the
    one-shot driver does (its atexit handlers run at its exit). Prints ``{"status": <exit status>}`` (-9: killed at
    the timeout) once the child is gone. Ends at the end of stdin."""
    for line in sys.stdin:
        req = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the child: never back into this loop
            for fd, path in ((1, req["stdout"]), (2, req["stderr"])):
                target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                os.dup2(target, fd)
                os.close(target)
            sys.exit(one(req["job"]))  # (SystemExit unwinds to the interpreter's exit: atexit runs, as in one shot)
        deadline = time.monotonic() + float(req.get("timeout", 60))
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                _, status = os.waitpid(pid, 0)
                break
            time.sleep(0.005)
        sys.stdout.write(json.dumps({"status": os.waitstatus_to_exitcode(status)}) + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
