"""One usage record per request the gateway answered (or failed): who, which model, tokens, cost, outcome."""

from __future__ import annotations

import itertools
import os
from dataclasses import asdict, dataclass, field, fields
from typing import Any

__all__ = [
    "ENDPOINTS",
    "FIELDS",
    "GROUP_BY",
    "MAX_HOURS",
    "RecordWithBodies",
    "UsageRecord",
    "new_record_id",
    "record_from_dict",
]

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


# (no ``__slots__``: orjson writes a dataclass with a ``__dict__`` about three times faster than one with slots,
# and the journal writes every record; a record pending in memory costs ~170 bytes more)
@dataclass
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
#: the order the request path passes them in (positionally: a third of the cost of keywords, 19 of them)
_POSITIONAL = (
    *("ts", "request_id", "key_id", "model", "deployment", "endpoint", "stream", "prompt_tokens"),
    *("completion_tokens", "total_tokens", "cost", "status", "error", "latency_ms", "ttft_ms", "estimated"),
    *("attempts", "fallback", "record_id"),
)
if FIELDS != _POSITIONAL:  # pragma: no cover - a guard for whoever adds or moves a field
    raise ImportError(f"UsageRecord is built positionally in the order {_POSITIONAL}: update its callers")


@dataclass
class RecordWithBodies(UsageRecord):
    """A record with the request's and the answer's bodies as the request log keeps them (``request_log.bodies``:
    cut at ``max_body_bytes``, secrets masked). Made only when bodies are kept, so a request without them costs
    nothing more; the bodies travel with the record through the journal and the spill file (their JSON lines carry
    the two fields) and are stored beside it (``mw_usage_bodies``), deleted with it by the retention."""

    #: ``None``: the request had no body
    request_body: str | None = None
    #: ``None``: none was kept (a stream's chunks, an error's answer)
    response_body: str | None = None

    @classmethod
    def of(cls, rec: UsageRecord, request_body: str | None, response_body: str | None) -> RecordWithBodies:
        """``rec`` (same ``record_id``) with these bodies."""
        return cls(
            **{name: getattr(rec, name) for name in FIELDS}, request_body=request_body, response_body=response_body
        )

    @property
    def body_size(self) -> int:
        """The characters of its bodies (what they hold in memory, roughly)."""
        return len(self.request_body or "") + len(self.response_body or "")

    def without_bodies(self) -> UsageRecord:
        """The same record (same ``record_id``) without its bodies."""
        return UsageRecord(**{name: getattr(self, name) for name in FIELDS})


#: the fields only a record with bodies has
_BODY_FIELDS = frozenset({"request_body", "response_body"})


def record_from_dict(obj: dict[str, Any]) -> UsageRecord:
    """A record from :meth:`UsageRecord.to_dict` (a line of the journal or the spill file); raises
    :class:`TypeError` for a field no record has."""
    if _BODY_FIELDS.isdisjoint(obj):
        return UsageRecord(**obj)
    return RecordWithBodies(**obj)
