"""The real services some tests talk to: where they are, and a check that fails (never skips) when one is down.

Each of PostgreSQL and Redis is, in this order:

- at ``MODELWAY_TEST_PG_URL`` / ``MODELWAY_TEST_REDIS_URL`` when set: used as given, and a test that needs it
  fails, naming it, when nothing answers there;
- the machine's own, at the default address (``127.0.0.1:5432``, database ``test``; ``127.0.0.1:6379``), when
  something listens there;
- else a throwaway server (``throwaway.py``) on a free port, started the first time a test needs it and stopped
  at the end of the session.

:func:`configure` decides before the test modules are imported (``tests/conftest.py`` calls it from
``pytest_configure``), so ``PG_URL`` and ``REDIS_URL`` are final when a test module imports them, and the
environment variables carry them to subprocesses.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import pytest

import throwaway

REDIS_ENV = "MODELWAY_TEST_REDIS_URL"
PG_ENV = "MODELWAY_TEST_PG_URL"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"

REDIS_URL = os.environ.get(REDIS_ENV, DEFAULT_REDIS_URL)
PG_URL = os.environ.get(PG_ENV, DEFAULT_PG_URL)


@dataclass
class Service:
    name: str
    env: str
    default_url: str
    default_port: int
    url: str = ""
    origin: str = ""  # "env" (the user's URL), "machine" (found at the default address) or "throwaway"
    port: int = 0  # of the throwaway server
    server: throwaway.Server | None = None
    error: str | None = None  # why the throwaway server could not start
    saved_env: str | None = None


POSTGRES = Service("PostgreSQL", PG_ENV, DEFAULT_PG_URL, 5432)
REDIS = Service("Redis", REDIS_ENV, DEFAULT_REDIS_URL, 6379)


def _connect(url: str, default_port: int) -> OSError | None:
    """Why nothing answers at ``url``; None when something listens there."""
    u = urlsplit(url)
    try:
        socket.create_connection((u.hostname or "127.0.0.1", u.port or default_port), timeout=0.5).close()
    except OSError as exc:
        return exc
    return None


def configure() -> None:
    """Decide where each service is; start nothing yet (:func:`ensure` does, when a test needs it)."""
    global PG_URL, REDIS_URL
    for svc in (POSTGRES, REDIS):
        given = os.environ.get(svc.env)
        svc.saved_env = given
        if given:
            svc.url, svc.origin = given, "env"
        elif _connect(svc.default_url, svc.default_port) is None:
            svc.url, svc.origin = svc.default_url, "machine"
        else:
            svc.port = throwaway.free_port()
            svc.url = svc.default_url.replace(f":{svc.default_port}/", f":{svc.port}/")
            svc.origin = "throwaway"
            os.environ[svc.env] = svc.url  # subprocesses (a `modelway serve` under test, say) see it too
    PG_URL, REDIS_URL = POSTGRES.url, REDIS.url


def ensure(svc: Service) -> None:
    """Start ``svc``'s throwaway server if it has one and it is not running yet; fail the test if it cannot."""
    if svc.origin == "throwaway" and svc.server is None and svc.error is None:
        try:
            start = throwaway.start_postgres if svc is POSTGRES else throwaway.start_redis
            svc.server = start(svc.port)
        except (throwaway.ThrowawayError, OSError) as e:
            svc.error = f"no {svc.name} at {svc.default_url}, and a throwaway one could not start: {e}"
    if svc.error:
        pytest.fail(svc.error, pytrace=False)
    require(svc.url, svc.default_port)


def shutdown() -> None:
    """Stop the throwaway servers and give the environment back."""
    for svc in (POSTGRES, REDIS):
        if svc.server is not None:
            svc.server.stop()
            svc.server = None
        if svc.origin == "throwaway":
            if svc.saved_env is None:
                os.environ.pop(svc.env, None)
            else:
                os.environ[svc.env] = svc.saved_env
        svc.origin = ""


def describe(planned: bool = False) -> str:
    """One line: where each service is, and which throwaway servers were started (or, ``planned``, would be)."""
    parts = []
    for svc in (POSTGRES, REDIS):
        if svc.server is not None:
            s = svc.server
            parts.append(f"{svc.name}: started a throwaway {s.what} on {s.url} in {s.seconds:.2f} s")
        elif svc.error:
            parts.append(f"{svc.name}: {svc.error}")
        elif svc.origin == "throwaway":
            when = "when a test needs it" if planned else "not started: no test needed it"
            parts.append(f"{svc.name}: a throwaway on {svc.url} ({when})")
        elif svc.origin == "env":
            parts.append(f"{svc.name}: {svc.url} (from {svc.env})")
        else:
            parts.append(f"{svc.name}: the machine's, at {svc.url}")
    return "; ".join(parts)


def redis_url(db: int) -> str:
    """``REDIS_URL`` with another database number."""
    return urlunsplit(urlsplit(REDIS_URL)._replace(path=f"/{db}"))


def require(url: str, default_port: int) -> None:
    """Fail the test, naming the service, when nothing listens at ``url``."""
    exc = _connect(url, default_port)
    if exc is not None:
        pytest.fail(f"no server at {url} ({exc}): start it or set MODELWAY_TEST_*_URL (see README, Development)")
