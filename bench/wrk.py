"""Load generation with wrk (Debian's ``wrk``): a generated Lua script POSTs the body and reports, as one JSON line,
requests, duration, latency percentiles, socket errors, non-2xx answers and, for streams, answers that were not a
complete SSE stream of its API (no ``[DONE]`` or its API's end event, or an error event)."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .payloads import CHAT, Api

__all__ = ["WrkResult", "run_wrk", "wrk_path"]

_DONE = r"""
function done(summary, latency, requests)
  local bad = 0
  for _, t in ipairs(threads) do bad = bad + (t:get("bad") or 0) end
  local e = summary.errors
  io.write(string.format(
    'WRK-RESULT {"requests": %d, "duration_us": %d, "bytes": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, '
    .. '"max_us": %d, "mean_us": %.1f, "connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d, '
    .. '"bad": %d}\n',
    summary.requests, summary.duration, summary.bytes, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, latency.mean, e.connect, e.read, e.write, e.status, e.timeout, bad))
end
"""

_CHECK_STREAM = r"""
bad = 0
function response(status, headers, body)
  if status ~= 200 or not string.find(body, STREAM_END, 1, true)
     or string.find(body, STREAM_ERROR, 1, true) then
    bad = bad + 1
  end
end
"""


@dataclass(slots=True)
class WrkResult:
    requests: int
    seconds: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    socket_errors: int  # connect + read + write + timeout
    non_2xx: int  # wrk counts status > 399
    bad_streams: int  # 200 but not a complete, error-free SSE stream (stream runs only)
    socket_detail: dict[str, int] = field(default_factory=dict)  # the socket errors by kind, those that happened

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def errors(self) -> int:
        return self.socket_errors + self.non_2xx + self.bad_streams


def wrk_path() -> str | None:
    return shutil.which("wrk")


def _lua_string(b: bytes) -> str:
    return '"' + "".join(f"\\{c}" for c in b) + '"'  # decimal escapes: any byte, no quoting issues


def _script(body: bytes, headers: Mapping[str, str], check_stream: bool, api: Api) -> str:
    lines = ['wrk.method = "POST"', f"wrk.body = {_lua_string(body)}"]
    lines += [f"wrk.headers[{_lua_string(k.encode())}] = {_lua_string(v.encode())}" for k, v in headers.items()]
    lines.append("threads = {}\nfunction setup(thread) table.insert(threads, thread) end")
    if check_stream:
        lines.append(f"STREAM_END = {_lua_string(api.end)}\nSTREAM_ERROR = {_lua_string(api.error)}")
        lines.append(_CHECK_STREAM)
    lines.append(_DONE)
    return "\n".join(lines) + "\n"


def run_wrk(
    url: str,
    body: bytes,
    *,
    connections: int,
    seconds: float,
    headers: Mapping[str, str],
    script_dir: Path,
    check_stream: bool = False,
    api: Api = CHAT,
    threads: int = 1,
    timeout_s: float = 10.0,
    tag: str = "",
    stop: threading.Event | None = None,
) -> WrkResult:
    """One wrk run; raises ``RuntimeError`` (with wrk's output) if wrk fails or prints no result. ``tag`` names its
    script file apart from those of wrk runs at the same time. With ``stop``, wrk is stopped with SIGINT (it still
    reports) when the event is set, if that comes before ``seconds``."""
    exe = wrk_path()
    if exe is None:
        raise RuntimeError("wrk is not installed: apt-get install -y wrk")
    script = script_dir / f"wrk-{'stream' if check_stream else 'json'}-{abs(hash(body)) % 10**8}{tag}.lua"
    script.write_text(_script(body, {"Content-Type": "application/json", **headers}, check_stream, api))
    argv = [
        exe,
        f"-t{min(threads, connections)}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        f"--timeout={timeout_s:g}s",
        "-s",
        str(script),
        url,
    ]
    if stop is None:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + timeout_s + 30)
        stdout, stderr, rc = proc.stdout, proc.stderr, proc.returncode
    else:
        with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as popen:
            deadline = time.monotonic() + seconds + timeout_s + 30
            while popen.poll() is None and not stop.wait(0.1):
                if time.monotonic() > deadline:
                    popen.kill()
                    break
            if popen.poll() is None:
                popen.send_signal(signal.SIGINT)
            try:
                stdout, stderr = popen.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                popen.kill()
                stdout, stderr = popen.communicate()
            rc = popen.returncode
    for line in stdout.splitlines():
        if line.startswith("WRK-RESULT "):
            d = json.loads(line.removeprefix("WRK-RESULT "))
            return WrkResult(
                requests=d["requests"],
                seconds=d["duration_us"] / 1e6,
                p50_ms=d["p50_us"] / 1000,
                p90_ms=d["p90_us"] / 1000,
                p99_ms=d["p99_us"] / 1000,
                max_ms=d["max_us"] / 1000,
                socket_errors=d["connect"] + d["read"] + d["write"] + d["timeout"],
                non_2xx=d["status"],
                bad_streams=d["bad"],
                socket_detail={k: d[k] for k in ("connect", "read", "write", "timeout") if d[k]},
            )
    raise RuntimeError(f"wrk gave no result (exit {rc}):\n{stdout}\n{stderr}")
