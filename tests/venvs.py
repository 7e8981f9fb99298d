"""Cached virtualenvs for third-party software the tests run as it is, but which cannot live in the project's
virtualenv (old pins): DB-GPT's client (``tests/server/dbgpt_env.py``), FastChat and DB-GPT's controller
(``tests/cluster/fastchat_env.py``, ``dbgpt_cluster_env.py``), each a :class:`CachedVenv`.

A virtualenv lives outside the repository: ``$<env_var>`` or ``~/.cache/modelway/<name>``. It is reused when its
python passes the probe (an import) and rebuilt otherwise. A lock file next to it keeps parallel runs from building
it at the same time; the build prints its progress to stderr.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CachedVenv", "VenvError", "clean_env"]

PIP_TIMEOUT = 1200.0
# what pip prints last is what explains a failure
_OUTPUT_TAIL = 12_000


class VenvError(RuntimeError):
    """The virtualenv could not be created; the message carries the failing command's output."""


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a cached virtualenv's processes, without anything tying them to the project's venv."""
    dropped = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONDONTWRITEBYTECODE")
    env = {k: v for k, v in os.environ.items() if k not in dropped}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env.update(extra or {})
    return env


def _log(tag: str, msg: str) -> None:
    print(f"[{tag}] {msg}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class CachedVenv:
    """A virtualenv with ``packages`` installed, ready when ``python -c probe`` succeeds."""

    name: str
    packages: tuple[str, ...]
    probe: str
    env_var: str

    @property
    def path(self) -> Path:
        override = os.environ.get(self.env_var)
        if override:
            return Path(override).expanduser().resolve()
        return Path.home() / ".cache" / "modelway" / self.name

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    def _probe(self) -> subprocess.CompletedProcess[str] | None:
        if not self.python.exists():
            return None
        try:
            # (importing FastChat's servers creates their *.log files in LOGDIR, the working directory by default)
            with tempfile.TemporaryDirectory() as scratch:
                return subprocess.run(
                    [str(self.python), "-c", self.probe],
                    capture_output=True,
                    text=True,
                    timeout=180,
                    env=clean_env({"LOGDIR": scratch}),
                    cwd=scratch,
                    check=False,
                )
        except (OSError, subprocess.TimeoutExpired):
            return None

    def is_ready(self) -> bool:
        proc = self._probe()
        return proc is not None and proc.returncode == 0

    def ensure(self) -> Path:
        """The python of the virtualenv, built first when it is missing or broken (raises :class:`VenvError`)."""
        path = self.path
        with _locked(path, self.name, shared=True):  # the common case: readers do not wait for each other
            if self.is_ready():
                return self.python
        with _locked(path, self.name):
            if self.is_ready():  # another process built it while we waited
                return self.python
            started = time.monotonic()
            if path.exists():
                _log(self.name, f"{path} exists but fails its probe: rebuilding it")
                shutil.rmtree(path)
            _log(self.name, f"creating {path} with {sys.executable} (first run only; this takes a few minutes)")
            try:
                _run(self.name, [sys.executable, "-m", "venv", str(path)], timeout=300)
                pip = [str(self.python), "-m", "pip", "install", "--no-input", "--progress-bar", "off"]
                _run(self.name, [*pip, *self.packages], PIP_TIMEOUT)
                proc = self._probe()
                if proc is None or proc.returncode != 0:
                    detail = proc.stderr[-_OUTPUT_TAIL:] if proc is not None else "(no python)"
                    raise VenvError(f"installed, but `python -c {self.probe!r}` still fails:\n{detail}")
            except BaseException:
                shutil.rmtree(path, ignore_errors=True)  # never leave a half-built env that looks usable
                raise
            _log(self.name, f"ready in {time.monotonic() - started:.1f} s: {self.python}")
        return self.python


def _run(tag: str, cmd: Sequence[str], timeout: float) -> None:
    """Run ``cmd``, echoing its output to stderr as it comes; raise :class:`VenvError` with it on failure."""
    _log(tag, "$ " + " ".join(cmd))
    lines: list[str] = []
    try:
        proc = subprocess.Popen(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=clean_env())
    except OSError as e:
        raise VenvError(f"cannot run {cmd[0]}: {e}") from e
    killed: list[bool] = []

    def kill() -> None:
        killed.append(True)
        proc.kill()

    timer = threading.Timer(timeout, kill)
    timer.start()
    assert proc.stdout is not None
    try:
        with proc:
            for line in proc.stdout:
                lines.append(line)
                sys.stderr.write(line)
            rc = proc.wait()
    finally:
        timer.cancel()
    if killed:
        lines.append(f"\n[killed after {timeout:.0f} s]\n")
    if rc != 0:
        output = "".join(lines)[-_OUTPUT_TAIL:]
        raise VenvError(f"command failed with exit code {rc}: {' '.join(cmd)}\n{output}")


@contextmanager
def _locked(path: Path, tag: str, *, shared: bool = False) -> Iterator[None]:
    """Hold ``<path>.lock``: shared to use the virtualenv, exclusive to (re)build it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock_path = path.parent / (path.name + ".lock")
    mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
    with open(lock_path, "a+") as fh:
        try:
            fcntl.flock(fh, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            _log(tag, f"waiting for another process using or building {path} (lock {lock_path})")
            fcntl.flock(fh, mode)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
