"""One usage record per request the gateway answered (or failed): who, which model, tokens, cost, outcome."""

from __future__ import annotations

import itertools
import os
from dataclasses import asdict, dataclass, field, fields
from typing import Any

__all__ = ["ENDPOINTS", "FIELDS", "GROUP_BY", "MAX_HOURS", "UsageRecord", "new_record_id"]

#: what a record's ``endpoint`` says: the API the caller spoke
ENDPOINTS = (
    *("chat", "messages", "responses", "completions", "embeddings", "rerank", "dbgpt"),
    *("fastchat", "dbgpt-worker"),  # modelway worker: the FastChat and DB-GPT worker APIs
    # requests the gateway refused before admitting them, on routes without a model: the model list, the admin API,
    # and any other path (a path no route has, the health checks, /metrics): never the path itself
    *("models", "admin", "other"),
)

#: how usage totals can be grouped (``modelway usage --by``, ``/admin/usage?group_by=``)
GROUP_BY = ("key", "model", "deployment", "endpoint", "day", "hour")
#: the longest range usage is grouped by hour (the points an answer holds)
MAX_HOURS = 14 * 24

# record ids: a random per-process prefix and a counter, unique across processes and restarts (a process forked
# after this import, e.g. by a pre-loading server, draws its own prefix)
_PREFIX = os.urandom(8).hex()
_COUNTER = itertools.count(1)


def _reseed() -> None:
    global _PREFIX, _COUNTER
    _PREFIX = os.urandom(8).hex()
    _COUNTER = itertools.count(1)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reseed)


def new_record_id() -> str:
    """A new unique record id (the store keeps one row per id, so a record written twice is stored once)."""
    return f"{_PREFIX}{next(_COUNTER):x}"


@dataclass(slots=True)
class UsageRecord:
    #: when the request arrived (Unix seconds)
    ts: float
    request_id: str
    #: the virtual key's id; ``None`` for the master key or a gateway without keys
    key_id: str | None
    #: the model name the caller asked for (an alias or ``provider/model``)
    model: str
    #: the deployment that answered (``provider/model``); ``None`` when none did
    deployment: str | None
    #: ``chat``, ``embeddings`` or ``dbgpt``
    endpoint: str
    stream: bool
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    #: in the gateway's currency (``usage.currency``); 0 when the model has no price
    cost: float = 0.0
    #: the HTTP status the caller got (200, or the error's status); 499 when the caller went away
    status: int = 200
    #: the error code for failed requests
    error: str | None = None
    latency_ms: float = 0.0
    #: streams: time to the upstream's first output (sent on to the caller at once)
    ttft_ms: float | None = None
    #: the tokens are an estimate: the stream ended before the provider reported its usage
    estimated: bool = False
    #: upstream requests the router made for this one (retries, failovers, hedges; 0: none was made)
    attempts: int = 0
    #: the model the router fell back to (``None``: the one asked for answered, or none did)
    fallback: str | None = None
    #: unique per record: a record replayed from the journal or a spill file after it was stored is not stored
    #: again (``None`` only for rows stored before record ids existed)
    record_id: str | None = field(default_factory=new_record_id)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


#: a record's fields in order: the columns of a stored record
FIELDS = tuple(f.name for f in fields(UsageRecord))
