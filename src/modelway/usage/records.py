"""One usage record per request the gateway answered (or failed): who, which model, tokens, cost, outcome."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["UsageRecord"]


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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
