"""Child processes: start, wait until they answer, measure (RSS, CPU from /proc), and always stop.

Every child runs in its own session (so Ctrl-C reaches only the harness, which then stops them in order) and gets
``PR_SET_PDEATHSIG`` so it dies with the harness even if the harness is killed with SIGKILL.
"""

from __future__ import annotations

import ctypes
import os
import random
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "Child",
    "ProcessTable",
    "cpu_seconds",
    "free_port",
    "http_get_status",
    "rss_bytes",
    "tree_pids",
    "wait_http_ok",
]

_CLK_TCK = os.sysconf("SC_CLK_TCK")
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


@dataclass
class Child:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    started: float  # time.perf_counter() just before the spawn

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.rstrip().splitlines()[-lines:])


@dataclass
class ProcessTable:
    """The children of one harness run; ``stop_all`` stops every one still running (newest first)."""

    log_dir: Path
    children: list[Child] = field(default_factory=list)

    def python_env(self) -> dict[str, str]:
        """The environment for Python children: bytecode cached (in the scratch directory, so nothing is written
        next to the sources) as it is for an installed package, and no ``MODELWAY_*`` settings from outside."""
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE" and not k.startswith("MODELWAY_")}
        env["PYTHONPYCACHEPREFIX"] = str(self.log_dir / "pycache")
        return env

    def spawn(
        self, name: str, argv: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: str | Path | None = None
    ) -> Child:
        log = self.log_dir / f"{name}.log"
        with open(log, "ab") as out:
            started = time.perf_counter()
            popen = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=dict(env) if env is not None else None,
                cwd=cwd,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        child = Child(name, popen, log, started)
        self.children.append(child)
        return child

    def stop(self, child: Child, timeout: float = 5.0) -> None:
        """SIGTERM to the child's whole process group, SIGKILL after ``timeout`` seconds."""
        if child in self.children:
            self.children.remove(child)
        if child.popen.poll() is not None:
            return
        _signal_group(child.pid, signal.SIGTERM)
        try:
            child.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            _signal_group(child.pid, signal.SIGKILL)
            child.popen.wait(5.0)
        else:
            _signal_group(child.pid, signal.SIGKILL)  # grandchildren that outlived their parent

    def stop_all(self) -> None:
        for child in reversed(list(self.children)):
            try:
                self.stop(child)
            except Exception:  # keep stopping the others
                pass


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)  # the child leads its own session, so its pgid is its pid
    except (ProcessLookupError, PermissionError):
        pass


def free_port() -> int:
    """A free port below the kernel's ephemeral range, so no outgoing connection ever shares its number (which
    would confuse counting a server's connections in /proc/net/tcp)."""
    for _ in range(200):
        port = random.randrange(20000, 32000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 20000-32000")


# -- /proc ---------------------------------------------------------------------------------------------------------
def tree_pids(pid: int) -> list[int]:
    """``pid`` and all its descendants (from /proc/<pid>/task/<tid>/children)."""
    out: list[int] = []
    todo = [pid]
    while todo and len(out) < 10_000:
        p = todo.pop()
        out.append(p)
        try:
            tids = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{p}/task/{tid}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
            except OSError:
                pass
    return out


def _vmrss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def rss_bytes(pid: int) -> int:
    """Sum of VmRSS over the process tree (shared pages of forked workers are counted in each)."""
    return sum(_vmrss(p) for p in tree_pids(pid))


def _cpu_ticks(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return 0
    fields = stat[stat.rfind(")") + 2 :].split()
    # fields[0] is field 3 (state): utime is field 14, stime 15, cutime 16, cstime 17 (reaped children)
    return sum(int(x) for x in fields[11:15])


def cpu_seconds(pid: int) -> float:
    """User + system CPU of the process tree so far (including reaped children)."""
    return sum(_cpu_ticks(p) for p in tree_pids(pid)) / _CLK_TCK


# -- HTTP probes -----------------------------------------------------------------------------------------------------
def http_get_status(port: int, path: str, timeout: float = 1.0, headers: Mapping[str, str] | None = None) -> int:
    """Status of ``GET path`` on 127.0.0.1:port (0 when nothing answers)."""
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    req = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{extra}Connection: close\r\n\r\n".encode()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(req)
            data = b""
            while b"\r\n" not in data and len(data) < 4096:
                part = s.recv(4096)
                if not part:
                    break
                data += part
    except OSError:
        return 0
    parts = data.split(b" ", 2)
    return int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else 0


def wait_http_ok(
    child: Child | None,
    port: int,
    path: str,
    *,
    timeout: float,
    interval: float = 0.005,
    headers: Mapping[str, str] | None = None,
) -> float:
    """Poll until ``GET path`` answers 200; seconds since the child was spawned (or since the call).

    Raises ``RuntimeError`` with the tail of the child's log if it exits or does not get ready in time.
    """
    start = child.started if child is not None else time.perf_counter()
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if child is not None and not child.alive():
            raise RuntimeError(f"{child.name} exited with {child.popen.returncode}:\n{child.log_tail()}")
        if http_get_status(port, path, timeout=1.0, headers=headers) == 200:
            return time.perf_counter() - start
        time.sleep(interval)
    tail = child.log_tail() if child is not None else ""
    raise RuntimeError(f"not ready after {timeout:g}s (GET :{port}{path}):\n{tail}")
