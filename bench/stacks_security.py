"""Raw-socket probes of a server's HTTP/1.1 safety properties, for :mod:`bench.stacks`.

Each probe sends bytes a well-behaved client would not, and says what came back: the status line, a close
without an answer, or nothing for as long as it waited. The same probes go to every server, so the table compares
what each one does, not what its documentation says.
"""

from __future__ import annotations

import select
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["PROBES", "Exchange", "disconnect_probe", "exchange", "probe_all", "shutdown_probe"]

_AUTH_PATH = "/v1/chat/completions"
_LIVE = "/health/liveness"


@dataclass
class Exchange:
    status: int | None  # the first status line's code, if one came
    answers: int  # status lines received
    closed: bool  # the server closed the connection (EOF or reset)
    seconds: float  # from the first byte sent to the answer, or the close (or giving up)
    closed_after: float | None  # from the first byte sent to the close (``linger`` only)
    sent_all: bool = True  # False when the server answered or closed while we were still sending
    lingered: bool = False  # read on after the answer, until the close or the wait ran out

    def describe(self, waited: float) -> str:
        if self.status is not None:
            extra = f", {self.answers} answers" if self.answers > 1 else ""
            if self.closed_after is not None:
                return f"{self.status}{extra}, closed {self.closed_after:.1f} s after the request"
            if self.lingered and not self.closed:
                return f"{self.status}{extra}, **still open {waited:.0f} s later**"
            how = "then closed" if self.closed else ("still open" if self.answers > 1 else "kept open")
            return f"{self.status} after {self.seconds:.1f} s ({how}{extra})"
        if self.closed:
            return f"closed, no answer, after {self.seconds:.1f} s" + ("" if self.sent_all else " (while sending)")
        return f"**no answer, still open after {waited:.0f} s**"


def exchange(port: int, pieces: list[tuple[float, bytes]], wait: float, linger: bool = False) -> Exchange:
    """Send ``pieces`` (each after its delay; sending stops if the server answers or closes meanwhile), then read
    until a status line and the close, or ``wait`` seconds; with ``linger``, until the close (or ``wait``) even
    after an answer. Times count from the first byte sent."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    data = b""
    sent_all = True
    closed = False
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        start = time.perf_counter()
        for i, (delay, piece) in enumerate(pieces):
            if delay and select.select([s], [], [], delay)[0]:
                sent_all = False  # the server spoke (or closed) before we were done
                break
            if i == 0:
                start = time.perf_counter()
            try:
                s.sendall(piece)
            except OSError:
                sent_all = False
                break
        deadline = time.perf_counter() + wait
        s.settimeout(0.05)
        answered_at = 0.0
        while time.perf_counter() < deadline:
            try:
                part = s.recv(65536)
            except TimeoutError:
                if answered_at and not linger and time.perf_counter() - answered_at > 0.3:
                    break  # answered; it did not close within 0.3 s
                continue
            except OSError:
                closed = True
                break
            if not part:
                closed = True
                break
            data += part
            if not answered_at and data.startswith(b"HTTP/") and b"\r\n\r\n" in data:
                answered_at = time.perf_counter()
        now = time.perf_counter()
    finally:
        s.close()
    status = None
    if data.startswith(b"HTTP/"):
        parts = data.split(b" ", 2)
        if len(parts) > 1 and parts[1].isdigit():
            status = int(parts[1])
    answers = data.count(b"HTTP/1.1 ") if status is not None else 0
    closed_after = (now - start) if linger and closed and status is not None else None
    return Exchange(status, answers, closed, (answered_at or now) - start, closed_after, sent_all, linger)


def _get(extra: str = "", path: str = _LIVE) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}\r\n".encode()


def _post(auth: str, headers: str, body: bytes = b"") -> bytes:
    head = (
        f"POST {_AUTH_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {auth}\r\ncontent-type: application/json\r\n"
    )
    return (head + headers + "\r\n").encode() + body


_BODY = b'{"model":"bench-model","messages":[{"role":"user","content":"hi"}]}'
_CHUNKED = b"%x\r\n%s\r\n0\r\n\r\n" % (len(_BODY), _BODY)

_SMUGGLED = b"GET /health/liveness HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"

# name -> (pieces(auth), seconds to wait for the answer, read on after the answer until the close)
Probe = tuple[str, Callable[[str], list[tuple[float, bytes]]], float, bool]
PROBES: list[Probe] = [
    ("one 100 KiB header (modelway limit 64 KiB)", lambda a: [(0, _get(f"x-big: {'a' * 100 * 1024}\r\n"))], 3, False),
    ("one 1 MiB header", lambda a: [(0, _get(f"x-big: {'a' * 1024 * 1024}\r\n"))], 3, False),
    (
        "150 headers (modelway limit 100)",
        lambda a: [(0, _get("".join(f"x-h{i}: v\r\n" for i in range(150))))],
        3,
        False,
    ),
    ("2,000 headers", lambda a: [(0, _get("".join(f"x-h{i}: v\r\n" for i in range(2000))))], 3, False),
    (
        "headers never finished (timeout set to 2 s)",
        lambda a: [(0, b"GET /health/liveness HTTP/1.1\r\nHost: x\r\n")],
        6,
        False,
    ),
    (
        "headers trickled, 1 byte / 0.25 s (timeout 2 s)",
        lambda a: [
            (0.25, bytes([b])) for b in b"GET /health/liveness HTTP/1.1\r\nHost: 127.0.0.1\r\nx-slow: aaaaaaaaa"
        ],
        3,
        False,
    ),
    (
        "body declared 1000 B, 10 B sent (modelway body timeout set to 2 s)",
        lambda a: [(0, _post(a, "content-length: 1000\r\n", b'{"model":"'))],
        6,
        False,
    ),
    (
        "Content-Length + Transfer-Encoding: chunked (a valid chunked body)",
        lambda a: [(0, _post(a, f"content-length: {len(_BODY)}\r\ntransfer-encoding: chunked\r\n", _CHUNKED))],
        3,
        False,
    ),
    (
        "CL.TE: a GET after the chunked body's end, inside Content-Length (smuggled if answered)",
        lambda a: [
            (
                0,
                _post(
                    a,
                    f"content-length: {len(_CHUNKED + _SMUGGLED)}\r\ntransfer-encoding: chunked\r\n",
                    _CHUNKED + _SMUGGLED,
                ),
            )
        ],
        3,
        True,
    ),
    (
        "two different Content-Length",
        lambda a: [(0, _post(a, f"content-length: {len(_BODY)}\r\ncontent-length: {len(_BODY) + 1}\r\n", _BODY))],
        3,
        False,
    ),
    (
        "two equal Content-Length",
        lambda a: [(0, _post(a, f"content-length: {len(_BODY)}\r\ncontent-length: {len(_BODY)}\r\n", _BODY))],
        3,
        False,
    ),
    (
        "Content-Length: 20 MB declared (max_body_bytes 10 MiB)",
        lambda a: [(0, _post(a, "content-length: 20000000\r\n"))],
        3,
        False,
    ),
    (
        "11 MiB chunked body (max_body_bytes 10 MiB)",
        lambda a: [(0, _post(a, "transfer-encoding: chunked\r\n")), (0, _chunked(11 * 1024 * 1024))],
        5,
        False,
    ),
    ("idle keep-alive connection after one request", lambda a: [(0, _get())], 7, True),
]


def _chunked(total: int) -> bytes:
    piece = b"a" * 65536
    one = b"%x\r\n%s\r\n" % (len(piece), piece)
    return one * (total // len(piece)) + b"0\r\n\r\n"


def probe_all(port: int, auth: str) -> list[tuple[str, str]]:
    out = []
    for name, pieces, wait, linger in PROBES:
        try:
            out.append((name, exchange(port, pieces(auth), wait, linger).describe(wait)))
        except OSError as exc:
            out.append((name, f"connect/send failed: {exc}"))
    return out


def shutdown_probe(
    port: int, popen: subprocess.Popen[bytes], auth: str, body: bytes, limit: float = 15.0
) -> dict[str, str]:
    """A stream in flight (its upstream sends an event every 0.4 s: 8 s in all); SIGTERM 1 s into it. What the
    stream's client saw at the end, whether a new connection was served, and when the process exited."""
    req = (
        f"POST {_AUTH_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {auth}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    ).encode() + body
    s = socket.create_connection(("127.0.0.1", port), timeout=limit)
    s.sendall(req)
    data = s.recv(65536)
    time.sleep(1.0)
    t0 = time.perf_counter()
    popen.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    try:
        late = exchange(port, [(0, _get())], 2).describe(2)
    except OSError as exc:
        late = f"refused ({exc.__class__.__name__})"
    s.settimeout(max(0.1, limit - (time.perf_counter() - t0)))
    ended = "open"
    try:
        while True:
            part = s.recv(65536)
            if not part:
                ended = "closed"
                break
            data += part
    except TimeoutError:
        ended = f"still open after {limit:g} s"
    except OSError as exc:
        ended = f"reset ({exc.__class__.__name__})"
    stream_end = time.perf_counter() - t0
    s.close()
    if b"[DONE]" in data:
        seen = "complete stream ([DONE])"
    elif b'"error"' in data:
        seen = "an error event"
    else:
        seen = "cut off (no [DONE], no error event)"
    exit_s = None
    while time.perf_counter() - t0 < limit:
        if popen.poll() is not None:
            exit_s = time.perf_counter() - t0
            break
        time.sleep(0.05)
    return {
        "in-flight stream got": f"{seen}, connection {ended} {stream_end:.1f} s after SIGTERM",
        "new request 0.3 s after SIGTERM": late,
        "process exited": f"{exit_s:.1f} s after SIGTERM, status {popen.returncode}"
        if exit_s is not None
        else f"**not within {limit:g} s**",
    }


def _established_to(port: int) -> int:
    """Open TCP connections to 127.0.0.1:``port`` (client side), from /proc/net/tcp."""
    n = 0
    try:
        with open("/proc/net/tcp") as f:
            next(f)
            for line in f:
                parts = line.split()
                if parts[3] == "01" and int(parts[2].rsplit(":", 1)[1], 16) == port:
                    n += 1
    except OSError:
        return -1
    return n


def disconnect_probe(port: int, auth: str, body: bytes, upstream_port: int, limit: float = 8.0) -> str:
    """A stream in flight whose client goes away: does the server tell the app (ASGI ``http.disconnect``), so the
    gateway drops its upstream call? Seen from the upstream connection: closed (cancelled) or left open."""
    req = (
        f"POST {_AUTH_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {auth}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    ).encode() + body
    s = socket.create_connection(("127.0.0.1", port), timeout=limit)
    s.sendall(req)
    s.recv(65536)
    time.sleep(0.5)
    before = _established_to(upstream_port)
    s.close()
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < limit:
        if _established_to(upstream_port) < before:
            return f"upstream call closed {time.perf_counter() - t0:.1f} s after the client left"
        time.sleep(0.05)
    return f"**upstream call not closed within {limit:g} s of the client leaving** ({before} open before)"
