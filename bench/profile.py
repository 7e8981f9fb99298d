"""``--profile``: sample a server under c=32 load with py-spy and say what costs the time.

py-spy (``pip install py-spy`` into the project venv) records collapsed stacks (``-f raw``) of the server process
while wrk runs. From them: the functions with the most *self* samples, the most *inclusive* samples (any frame in
the stack), and the share of samples whose leaf frame is in each package (modelway, aiohttp, uvicorn, ...).
Idle time (the loop waiting in epoll) is not sampled, so percentages are of busy time.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .payloads import chat_body
from .targets import Server
from .wrk import run_wrk

__all__ = ["Profile", "profile_server", "py_spy", "record_during", "summarise"]

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^():]+)(?::\d+)?\)$")


@dataclass
class Profile:
    label: str
    samples: int
    raw_file: Path
    self_top: list[tuple[str, float]] = field(default_factory=list)  # (function (file), % of samples)
    inclusive_top: list[tuple[str, float]] = field(default_factory=list)  # modelway's own functions
    by_package: list[tuple[str, float]] = field(default_factory=list)


def py_spy() -> str | None:
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


def _package(path: str) -> str:
    """py-spy's short file names start with the package (``aiohttp/client.py``); stdlib modules too."""
    head = path.split("/", 1)[0]
    return head.removesuffix(".py")


def _short(frame: str) -> str:
    m = _FRAME.match(frame)
    return f"{m.group('func')} ({m.group('file')})" if m else frame


def summarise(raw: Path, label: str, top: int = 15) -> Profile:
    """Self and inclusive shares per function and self share per package, from py-spy's collapsed stacks.

    Inclusive shares are listed for modelway's own functions only (the frames above them are the server loop, and
    the same in every stack)."""
    self_c: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    pkgs: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [f for f in stack.split(";") if f and not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        total += n
        self_c[_short(frames[-1])] += n
        for f in {_short(f) for f in frames if "(modelway/" in f and "(modelway/cli.py" not in f}:
            incl[f] += n
        m = _FRAME.match(frames[-1])
        pkgs[_package(m.group("file")) if m else "?"] += n
    pct = 100.0 / total if total else 0.0
    return Profile(
        label,
        total,
        raw,
        [(k, v * pct) for k, v in self_c.most_common(top)],
        [(k, v * pct) for k, v in incl.most_common(top)],
        [(k, v * pct) for k, v in pkgs.most_common(12)],
    )


def record_during(pid: int, load: Callable[[], object], *, seconds: float, raw: Path, label: str) -> Profile:
    """Run ``load`` in a thread and, after a second of ramp-up, record ``pid`` with py-spy for ``seconds``."""
    exe = py_spy()
    if exe is None:
        raise RuntimeError("py-spy is not installed: .venv/bin/pip install py-spy")
    thread = threading.Thread(target=load, daemon=True)
    thread.start()
    try:
        time.sleep(1.0)
        proc = subprocess.run(
            [
                exe,
                "record",
                "-p",
                str(pid),
                "-d",
                str(max(1, round(seconds))),
                "-r",
                "250",
                "-f",
                "raw",
                "-o",
                str(raw),
                "--subprocesses",
            ],
            capture_output=True,
            text=True,
            timeout=seconds + 60,
        )
    finally:
        thread.join(seconds + 60)
    if proc.returncode != 0 or not raw.exists():
        raise RuntimeError(f"py-spy failed (exit {proc.returncode}): {proc.stderr[-1500:]}")
    return summarise(raw, label)


def profile_server(
    server: Server, model: str, *, seconds: float, out_dir: Path, work: Path, name: str, stream: bool
) -> Profile:
    """Record ``server`` with py-spy while wrk sends c=32 load (non-stream or 20-event streams); the collapsed stacks
    go to ``out_dir``, wrk's script to the scratch directory ``work``."""
    kind = "stream" if stream else "json"
    url = f"http://127.0.0.1:{server.port}/v1/chat/completions"

    def load() -> None:
        run_wrk(
            url,
            chat_body(model, stream=stream),
            connections=32,
            seconds=seconds + 2,
            headers=server.headers,
            script_dir=work,
            check_stream=stream,
        )

    label = f"{name}, {'20-event streams' if stream else 'non-stream'}, c=32"
    return record_during(server.pid, load, seconds=seconds, raw=out_dir / f"profile-{name}-{kind}.txt", label=label)
