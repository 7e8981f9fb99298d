"""The registry of model workers that registered with the gateway's controller: in memory, or in Redis
(:mod:`.registry_redis`) so that every gateway replica sees the same workers.

A worker is known by its name (FastChat: ``worker_name``, the worker's own base URL; DB-GPT:
``<model>@<type>@<host>:<port>``) and carries its model names, the address requests go to, its queue length and
the time of its last heartbeat (Unix seconds, the clock of the replica that heard it). A worker not heard from
for ``expiration`` seconds is gone: it is no longer listed, and leaves rotation at the gateway's next sync.

Bounded: at most ``max_workers`` workers (a new one beyond it is refused; the ones known keep their heartbeats),
``max_models`` model names per worker, and names, addresses and model names of sane lengths without control
characters (:func:`check_worker`).
"""

from __future__ import annotations

import re
import time
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, replace
from typing import Any

from ..errors import InvalidRequestError

__all__ = ["MemoryRegistry", "Registry", "RegistryFullError", "WorkerInfo", "check_worker"]

MAX_NAME = 512
MAX_MODEL_NAME = 256
_PRINTABLE = re.compile(r"[^\x00-\x1f\x7f]+")


class RegistryFullError(InvalidRequestError):
    """The registry holds ``max_workers`` workers already: a new one is refused (503)."""

    http_status = 503
    error_type = "service_unavailable"


@dataclass(slots=True, frozen=True)
class WorkerInfo:
    name: str
    #: ``fastchat`` or ``dbgpt``: the protocol its requests go in
    kind: str
    #: the base URL requests go to
    address: str
    models: tuple[str, ...]
    speed: float = 1.0
    queue_length: int = 0
    last_heartbeat: float = 0.0
    multimodal: bool = False
    #: DB-GPT's worker type: ``llm``, ``text2vec`` (embeddings) or ``reranker``
    worker_type: str = "llm"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["models"] = list(self.models)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> WorkerInfo:
        return cls(
            name=str(d["name"]),
            kind=str(d["kind"]),
            address=str(d["address"]),
            models=tuple(str(m) for m in d["models"]),
            speed=float(d.get("speed", 1.0)),
            queue_length=int(d.get("queue_length", 0)),
            last_heartbeat=float(d.get("last_heartbeat", 0.0)),
            multimodal=bool(d.get("multimodal", False)),
            worker_type=str(d.get("worker_type", "llm")),
        )


def _text(value: Any, what: str, limit: int) -> str:
    if not isinstance(value, str) or not value or len(value) > limit or not _PRINTABLE.fullmatch(value):
        raise InvalidRequestError(f"{what} must be a non-empty string of at most {limit} printable characters")
    return value


def check_worker(info: WorkerInfo, max_models: int) -> WorkerInfo:
    """``info`` if its fields are sane (lengths, characters, an http(s) address), else 400."""
    _text(info.name, "worker_name", MAX_NAME)
    _text(info.address, "the worker's address", MAX_NAME)
    if not info.address.startswith(("http://", "https://")):
        raise InvalidRequestError(f"the worker's address must be an http(s) URL (got {info.address[:100]!r})")
    if not info.models:
        raise InvalidRequestError("the worker has no model names")
    if len(info.models) > max_models:
        raise InvalidRequestError(f"a worker may serve at most {max_models} model names (got {len(info.models)})")
    for m in info.models:
        _text(m, "a model name", MAX_MODEL_NAME)
    if not (0 < info.speed < 1e9) or not (0 <= info.queue_length < 1_000_000):
        raise InvalidRequestError("speed must be positive and queue_length a sane count")
    return replace(info, models=tuple(dict.fromkeys(info.models)))


class Registry(ABC):
    def __init__(self, *, expiration: float, max_workers: int) -> None:
        self.expiration = expiration
        self.max_workers = max_workers

    @abstractmethod
    async def register(self, info: WorkerInfo) -> None:
        """Add or replace a worker (its heartbeat is ``info.last_heartbeat``); :class:`RegistryFullError` when a
        new worker would exceed ``max_workers``."""

    @abstractmethod
    async def heartbeat(self, name: str, queue_length: int | None, now: float) -> bool:
        """Note a heartbeat; ``False`` when the worker is unknown (or expired): it must register again."""

    @abstractmethod
    async def remove(self, name: str) -> bool: ...

    @abstractmethod
    async def workers(self, now: float | None = None) -> list[WorkerInfo]:
        """The workers heard from within ``expiration`` seconds, by name."""

    @abstractmethod
    async def add_queue(self, name: str, n: int) -> None:
        """Count ``n`` more requests in the worker's queue (FastChat's shortest-queue dispatch does)."""

    async def aclose(self) -> None:
        return None


class MemoryRegistry(Registry):
    """One process's registry (``modelway serve`` with one worker process, or tests)."""

    def __init__(self, *, expiration: float, max_workers: int) -> None:
        super().__init__(expiration=expiration, max_workers=max_workers)
        self._workers: dict[str, WorkerInfo] = {}

    def _expire(self, now: float) -> None:
        cutoff = now - self.expiration
        for name in [n for n, w in self._workers.items() if w.last_heartbeat < cutoff]:
            del self._workers[name]

    async def register(self, info: WorkerInfo) -> None:
        self._expire(info.last_heartbeat)
        if info.name not in self._workers and len(self._workers) >= self.max_workers:
            raise RegistryFullError(f"the controller holds {self.max_workers} workers already (cluster.max_workers)")
        self._workers[info.name] = info

    async def heartbeat(self, name: str, queue_length: int | None, now: float) -> bool:
        self._expire(now)
        w = self._workers.get(name)
        if w is None:
            return False
        q = w.queue_length if queue_length is None else queue_length
        self._workers[name] = replace(w, last_heartbeat=now, queue_length=q)
        return True

    async def remove(self, name: str) -> bool:
        return self._workers.pop(name, None) is not None

    async def workers(self, now: float | None = None) -> list[WorkerInfo]:
        self._expire(time.time() if now is None else now)
        return sorted(self._workers.values(), key=lambda w: w.name)

    async def add_queue(self, name: str, n: int) -> None:
        w = self._workers.get(name)
        if w is not None:
            self._workers[name] = replace(w, queue_length=w.queue_length + n)
