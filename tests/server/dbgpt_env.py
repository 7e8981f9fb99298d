"""A separate virtualenv with DB-GPT's official client (``dbgpt-client``), created once and cached.

``dbgpt-client`` pins old dependencies (aiohttp 3.8.4, SQLAlchemy < 2.0.29, FastAPI 0.112) and needs
``beautifulsoup4`` to import, so it cannot live in the project's virtualenv. Tests run it in a subprocess
with this virtualenv's python (see ``dbgpt_driver.py``).

The virtualenv lives outside the repository: ``$MODELWAY_DBGPT_VENV`` or, by default,
``~/.cache/modelway/dbgpt-client-<version>``. It is reused when its python can ``import dbgpt_client``
and rebuilt otherwise. A lock file next to it keeps parallel runs from building it at the same time.

Build it ahead of time with ``python tests/server/dbgpt_env.py``.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

DBGPT_CLIENT_VERSION = "0.8.2"
PACKAGES = (f"dbgpt-client=={DBGPT_CLIENT_VERSION}", "beautifulsoup4")
ENV_VAR = "MODELWAY_DBGPT_VENV"
PIP_TIMEOUT = 900.0
# what pip prints last is what explains a failure
_OUTPUT_TAIL = 12_000


class DbgptEnvError(RuntimeError):
    """The virtualenv could not be created; the message carries the failing command's output."""


def venv_dir() -> Path:
    override = os.environ.get(ENV_VAR)
    if override:
        return Path(override).expanduser().resolve()
    return Path.home() / ".cache" / "modelway" / f"dbgpt-client-{DBGPT_CLIENT_VERSION}"


def venv_python(path: Path) -> Path:
    return path / "bin" / "python"


def _log(msg: str) -> None:
    print(f"[dbgpt-env] {msg}", file=sys.stderr, flush=True)


def _clean_env() -> dict[str, str]:
    """The environment for the virtualenv's processes, without anything tying them to the project's venv."""
    # bytecode is written on purpose: the client's import chain is large and the env is reused
    dropped = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONDONTWRITEBYTECODE")
    env = {k: v for k, v in os.environ.items() if k not in dropped}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def is_ready(path: Path) -> bool:
    """True when the virtualenv's python exists and can import the client."""
    python = venv_python(path)
    if not python.exists():
        return False
    try:
        proc = subprocess.run(
            [str(python), "-c", "import dbgpt_client"],
            capture_output=True,
            timeout=120,
            env=_clean_env(),
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0


def _run(cmd: Sequence[str], timeout: float) -> None:
    """Run ``cmd``, echoing its output to stderr as it comes; raise :class:`DbgptEnvError` with it on failure."""
    _log("$ " + " ".join(cmd))
    lines: list[str] = []
    try:
        proc = subprocess.Popen(
            list(cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_clean_env()
        )
    except OSError as e:
        raise DbgptEnvError(f"cannot run {cmd[0]}: {e}") from e
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
        raise DbgptEnvError(f"command failed with exit code {rc}: {' '.join(cmd)}\n{output}")


@contextmanager
def _locked(path: Path, *, shared: bool = False) -> Iterator[None]:
    """Hold ``<path>.lock``: shared to use the virtualenv, exclusive to (re)build it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock_path = path.parent / (path.name + ".lock")
    mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
    with open(lock_path, "a+") as fh:
        try:
            fcntl.flock(fh, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            _log(f"waiting for another process using or building {path} (lock {lock_path})")
            fcntl.flock(fh, mode)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_dbgpt_venv(path: Path | None = None) -> Path:
    """Return the python of a virtualenv where ``import dbgpt_client`` works, building it when needed."""
    path = path or venv_dir()
    python = venv_python(path)
    with _locked(path, shared=True):  # the common case: readers do not wait for each other
        if is_ready(path):
            return python
    with _locked(path):
        if is_ready(path):  # another process built it while we waited
            return python
        started = time.monotonic()
        if path.exists():
            _log(f"{path} exists but cannot import dbgpt_client: rebuilding it")
            shutil.rmtree(path)
        _log(f"creating {path} with {sys.executable} (Python {sys.version.split()[0]})")
        try:
            _run([sys.executable, "-m", "venv", str(path)], timeout=300)
            _run([str(python), "-m", "pip", "install", "--no-input", "--progress-bar", "off", *PACKAGES], PIP_TIMEOUT)
            if not is_ready(path):
                probe = subprocess.run(
                    [str(python), "-c", "import dbgpt_client"],
                    capture_output=True,
                    text=True,
                    env=_clean_env(),
                    check=False,
                )
                raise DbgptEnvError(
                    f"installed, but `import dbgpt_client` still fails:\n{probe.stderr[-_OUTPUT_TAIL:]}"
                )
        except BaseException:
            shutil.rmtree(path, ignore_errors=True)  # never leave a half-built env that looks usable
            raise
        _log(f"ready in {time.monotonic() - started:.1f} s: {python}")
    return python


if __name__ == "__main__":
    try:
        print(ensure_dbgpt_venv())
    except DbgptEnvError as e:
        print(e, file=sys.stderr)
        sys.exit(1)
