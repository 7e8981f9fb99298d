"""Virtual keys: the keys a gateway issues to its callers, each with its own models, limits and budget.

A key's secret (``mw-`` and 32 random URL-safe characters) is shown once, when it is created; the store keeps only
its SHA-256 hash and a short prefix to recognise it by.
"""

from __future__ import annotations

import hashlib
import math
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

__all__ = ["BUDGET_PERIODS", "KEY_FIELDS", "ApiKey", "hash_secret", "key_fields", "new_key"]

SECRET_PREFIX = "mw-"
#: budget periods, in UTC: the spend counter starts again at each period's start ("total" never starts again)
BUDGET_PERIODS = ("total", "day", "month")


def hash_secret(secret: str) -> str:
    """The SHA-256 hex digest a key is stored and looked up by (keys are random: no salt or slow hash needed)."""
    return hashlib.sha256(secret.encode()).hexdigest()


#: the ``role`` in a key's metadata that makes it an admin key
ADMIN_ROLE = "admin"


@dataclass(slots=True)
class ApiKey:
    """A virtual key as the store keeps it (never the secret itself)."""

    id: str
    name: str
    key_hash: str
    #: the first characters of the secret, to recognise a key in lists (``mw-Ab3d``)
    prefix: str
    #: model names (aliases or ``provider/model``) this key may call; ``None``: every model
    models: list[str] | None = None
    #: requests per minute
    rpm: int | None = None
    #: tokens (prompt + completion) per minute
    tpm: int | None = None
    #: requests in flight at once
    max_parallel: int | None = None
    #: the most this key may spend in a budget period, in the gateway's currency
    budget: float | None = None
    budget_period: str = "total"
    created_at: float = field(default_factory=time.time)
    expires_at: float | None = None
    revoked_at: float | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def active(self, now: float) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)

    def allows(self, model: str) -> bool:
        return self.models is None or model in self.models

    @property
    def admin(self) -> bool:
        """An admin-scoped key (``metadata: {"role": "admin"}``): the admin API and the console accept it."""
        return self.metadata.get("role") == ADMIN_ROLE

    def to_dict(self) -> dict[str, Any]:
        """The key as the admin API shows it: everything but the hash."""
        return {
            "id": self.id,
            "name": self.name,
            "prefix": self.prefix,
            "models": self.models,
            "rpm": self.rpm,
            "tpm": self.tpm,
            "max_parallel": self.max_parallel,
            "budget": self.budget,
            "budget_period": self.budget_period,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "revoked_at": self.revoked_at,
            "metadata": self.metadata,
        }


def new_key(name: str, **fields: Any) -> tuple[str, ApiKey]:
    """A fresh secret and its :class:`ApiKey` record (``fields``: models, rpm, tpm, ... as on :class:`ApiKey`)."""
    secret = SECRET_PREFIX + secrets.token_urlsafe(24)
    key = ApiKey(
        id="key_" + secrets.token_hex(8),
        name=name,
        key_hash=hash_secret(secret),
        prefix=secret[:7],
        **fields,
    )
    return secret, key


_INT_FIELDS = ("rpm", "tpm", "max_parallel")
#: limits are stored as 32-bit integers (PostgreSQL INTEGER)
_MAX_INT = 2**31 - 1


def _text(v: Any) -> bool:
    """A non-empty string a database can store (PostgreSQL refuses NUL in text)."""
    return isinstance(v, str) and bool(v) and "\x00" not in v


KEY_FIELDS = frozenset(
    {"name", "models", "rpm", "tpm", "max_parallel", "budget", "budget_period", "expires_at", "metadata"}
)


def key_fields(data: dict[str, Any], *, creating: bool) -> dict[str, Any]:
    """Validate the fields of a key to create or change (admin API body, CLI options); ``None`` clears a limit.

    Raises :class:`~modelway.errors.InvalidRequestError` naming the field. ``expires_in`` (seconds from now) is
    accepted in place of ``expires_at``.
    """
    from ..errors import InvalidRequestError

    data = dict(data)
    if "expires_in" in data and "expires_at" in data:
        raise InvalidRequestError("give expires_at or expires_in, not both", param="expires_in")
    if "expires_in" in data:
        v = data.pop("expires_in")
        if v is not None and (isinstance(v, bool) or not isinstance(v, int | float) or v <= 0):
            raise InvalidRequestError("expires_in must be a positive number of seconds", param="expires_in")
        data["expires_at"] = time.time() + v if v is not None else None
    unknown = sorted(set(data) - KEY_FIELDS)
    if unknown:
        raise InvalidRequestError(
            f"unknown field {unknown[0]!r} (allowed: {', '.join(sorted(KEY_FIELDS | {'expires_in'}))})",
            param=unknown[0],
        )
    if creating and not data.get("name"):
        raise InvalidRequestError("name is required: a label to recognise the key by", param="name")
    if "name" in data and (not _text(data["name"]) or not data["name"].strip()):
        raise InvalidRequestError("name must be a non-empty string", param="name")
    models = data.get("models")
    if models is not None and (not isinstance(models, list) or not models or not all(_text(m) for m in models)):
        raise InvalidRequestError("models must be a non-empty list of model names, or null for all", param="models")
    for f in _INT_FIELDS:
        v = data.get(f)
        if isinstance(v, float) and v.is_integer():
            v = data[f] = int(v)  # 60.0 is 60 (JSON does not tell them apart)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or not 0 < v <= _MAX_INT):
            raise InvalidRequestError(f"{f} must be an integer from 1 to {_MAX_INT}, or null for no limit", param=f)
    budget = data.get("budget")
    if budget is not None and (
        isinstance(budget, bool) or not isinstance(budget, int | float) or not 0 <= budget < math.inf
    ):
        raise InvalidRequestError("budget must be a non-negative number, or null for no budget", param="budget")
    if budget is not None:
        data["budget"] = float(budget)
    if "budget_period" in data and data["budget_period"] not in BUDGET_PERIODS:
        raise InvalidRequestError(f"budget_period must be one of {', '.join(BUDGET_PERIODS)}", param="budget_period")
    exp = data.get("expires_at")
    if exp is not None and (isinstance(exp, bool) or not isinstance(exp, int | float) or not math.isfinite(exp)):
        raise InvalidRequestError("expires_at must be a Unix time in seconds, or null", param="expires_at")
    if "metadata" in data:
        if data["metadata"] is None:
            data["metadata"] = {}
        elif not isinstance(data["metadata"], dict):
            raise InvalidRequestError("metadata must be an object", param="metadata")
    return data
