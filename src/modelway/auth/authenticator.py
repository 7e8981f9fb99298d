"""Who is calling: the master key, a virtual key, or nobody (a gateway without auth).

The active keys are held in memory by hash, so checking a key costs one SHA-256 and a dict lookup. They are
reloaded every ``refresh`` seconds, which is how keys created or revoked by another worker, another replica or
the ``modelway keys`` command reach this one. A key not in memory is looked up in the store (a key created a moment
ago works at once); a hash found to be no active key is remembered for a few seconds, so repeating one wrong key
costs one lookup, not one per request (each *different* wrong key still costs one indexed lookup).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import InvalidRequestError, ServiceUnavailableError
from ..limits.base import Limits
from .keys import ApiKey, hash_secret

if TYPE_CHECKING:
    from ..store.sql import SQLStore

__all__ = ["Authenticator", "Caller", "GatewayAuthError"]

log = logging.getLogger("modelway.auth")

_NEGATIVE_TTL = 5.0
_NEGATIVE_MAX = 10_000


class KeyStoreUnavailableError(ServiceUnavailableError):
    """The store could not be asked whether a key is valid (answered 503)."""


class GatewayAuthError(InvalidRequestError):
    """The caller's gateway key is missing, wrong, revoked or expired (answered 401)."""

    http_status = 401


@dataclass(slots=True, frozen=True)
class Caller:
    """An authenticated caller: the master key (``admin``), a virtual key, or anyone (no auth configured)."""

    key: ApiKey | None = None
    admin: bool = False
    limits: Limits | None = None

    @property
    def key_id(self) -> str | None:
        return self.key.id if self.key is not None else None


ANONYMOUS = Caller()
MASTER = Caller(admin=True)


def _limits(key: ApiKey) -> Limits | None:
    limits = Limits(key.rpm, key.tpm, key.max_parallel, key.budget, key.budget_period)
    return limits if limits.any else None


def _caller(key: ApiKey) -> Caller:
    """A virtual key as a caller; one whose metadata says ``"role": "admin"`` may use the admin API and the console
    (its own requests are still counted and limited as the key's)."""
    return Caller(key=key, admin=key.admin, limits=_limits(key))


def _secret(authorization: bytes | None) -> bytes:
    """The key of an ``Authorization`` header: ``Bearer <key>``."""
    if authorization is None:
        raise GatewayAuthError("missing API key: send Authorization: Bearer <key>", code="invalid_api_key")
    scheme, _, secret = authorization.partition(b" ")
    secret = secret.strip()
    if scheme.lower() != b"bearer" or not secret:
        raise GatewayAuthError("invalid API key: send Authorization: Bearer <key>", code="invalid_api_key")
    return secret


class Authenticator:
    def __init__(self, master_key: str | None, store: SQLStore | None = None, *, refresh: float = 5.0) -> None:
        self._master = master_key.encode() if master_key else None
        self.store = store
        self.refresh = refresh
        #: a key is required when a master key is set or virtual keys exist (a store is configured)
        self.required = self._master is not None or store is not None
        self._by_hash: dict[str, Caller] = {}
        #: hashes that are no (active) key, until when, and what to answer
        self._unknown: dict[str, tuple[float, str, str]] = {}
        self._task: asyncio.Task[None] | None = None
        #: changes made here (admin API) while a reload may be reading older rows: re-applied after it
        self._changes: list[tuple[float, ApiKey]] = []

    # -- keys in memory --------------------------------------------------------------------------
    def remember(self, key: ApiKey) -> None:
        """Take a created or changed key into account at once (the admin API calls this)."""
        self._changes.append((time.monotonic(), key))
        self._apply(key)

    def _apply(self, key: ApiKey) -> None:
        self._unknown.pop(key.key_hash, None)
        if key.active(time.time()):
            self._by_hash[key.key_hash] = _caller(key)
        else:
            self._by_hash.pop(key.key_hash, None)

    async def load(self) -> None:
        """Replace the keys in memory with the store's active keys."""
        if self.store is None:
            return
        started = time.monotonic()
        keys = await self.store.list_keys()
        now = time.time()
        self._by_hash = {k.key_hash: _caller(k) for k in keys if k.active(now)}
        # a revoke or change made while the rows were read must not be undone by them
        self._changes = [(t, k) for t, k in self._changes if t >= started]
        for _, k in self._changes:
            self._apply(k)

    async def start(self) -> None:
        await self.load()
        if self.store is not None:
            self._task = asyncio.get_running_loop().create_task(self._refresh_loop(), name="modelway-key-refresh")

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self.refresh)
            try:
                await self.load()
            except Exception as exc:  # the store is down: keep serving the keys we know, say so, try again
                log.warning("could not reload the virtual keys (keeping %d known): %s", len(self._by_hash), exc)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    @property
    def known(self) -> int:
        return len(self._by_hash)

    # -- the check of every request ---------------------------------------------------------------
    async def authenticate(self, authorization: bytes | None) -> Caller:
        """``authorization`` is the ``Authorization`` header (or ``Bearer`` + ``x-api-key``)."""
        caller = self.in_memory(authorization)
        return caller if caller is not None else await self.from_store(authorization)

    async def from_store(self, authorization: bytes | None) -> Caller:
        """:meth:`authenticate` for a key :meth:`in_memory` did not find: ask the store."""
        digest = hash_secret(_secret(authorization).decode("latin-1"))
        return self._unexpired(await self._lookup(digest), digest)

    def in_memory(self, authorization: bytes | None) -> Caller | None:
        """:meth:`authenticate` without the store: the caller when its key is in memory, ``None`` when the store must
        be asked (a virtual key not seen yet, or one that is no key); raises as ``authenticate`` does for a key
        missing, malformed or expired. No coroutine: the app calls it first on every request."""
        if not self.required:
            return ANONYMOUS
        secret = _secret(authorization)
        if self._master is not None and hmac.compare_digest(secret, self._master):
            return MASTER
        digest = hash_secret(secret.decode("latin-1"))
        caller = self._by_hash.get(digest)
        return self._unexpired(caller, digest) if caller is not None else None

    def _unexpired(self, caller: Caller, digest: str) -> Caller:
        key = caller.key
        if key is not None and key.expires_at is not None and key.expires_at <= time.time():
            self._by_hash.pop(digest, None)
            raise GatewayAuthError(f"the API key {key.prefix}… ({key.id}) has expired", code="expired_api_key")
        return caller

    async def _lookup(self, digest: str) -> Caller:
        now = time.monotonic()
        known = self._unknown.get(digest)
        if known is not None and known[0] > now:
            raise GatewayAuthError(known[1], code=known[2])
        if self.store is None:
            raise GatewayAuthError("invalid API key", code="invalid_api_key")
        try:
            key = await self.store.key_by_hash(digest)
        except Exception as exc:  # cannot tell a good key from a bad one: refuse, and say it is temporary
            log.error("cannot look up an API key in the store: %s", exc)
            raise KeyStoreUnavailableError("the gateway cannot check API keys right now; try again shortly") from None
        if key is not None and key.active(time.time()):
            self.remember(key)
            return self._by_hash[digest]
        if key is None:
            message, code = "invalid API key", "invalid_api_key"
        elif key.revoked_at is not None:
            message, code = f"the API key {key.prefix}… ({key.id}) was revoked", "revoked_api_key"
        else:
            message, code = f"the API key {key.prefix}… ({key.id}) has expired", "expired_api_key"
        if len(self._unknown) >= _NEGATIVE_MAX:
            self._unknown.clear()
        self._unknown[digest] = (now + _NEGATIVE_TTL, message, code)
        raise GatewayAuthError(message, code=code)
