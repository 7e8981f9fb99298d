"""The soak's mix of requests (:data:`CASES`), the simulators they meet (:class:`SimHost`) and the gateway's
configuration in front of them."""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from modelway.testing import Fault, OpenAISimulator, Reply

MASTER_KEY = "sk-soak-master"

#: the gateway's upstream timeout for deployments without their own (every deployment but the failing first ones)
GATEWAY_TIMEOUT = 10.0
#: the failing first deployments' timeout: what the stall fault waits out, twice (one retry), before the failover
FAULT_TIMEOUT = 0.5
#: a request with no answer after this long is hung. The longest the gateway may take here is two attempts at
#: GATEWAY_TIMEOUT plus a back-off of at most 0.5 s (20.5 s); a failover's path is two FAULT_TIMEOUT plus a back-off
#: plus a normal answer (~1.5 s)
HANG_TIMEOUT = 30.0

CaseKind = Literal["answer", "abandon", "cancel", "http_error", "sse_error"]


@dataclass(frozen=True)
class Case:
    """One kind of request in the mix and what its caller and its usage record must show."""

    name: str
    share: float
    model: str
    stream: bool
    #: ``answer``: 200 and the whole answer (streams: every event, then ``[DONE]``); ``abandon``: the client reads
    #: the first content event and hangs up; ``cancel``: no answer within ``cancel_after`` seconds, when the client
    #: hangs up; ``http_error``: the error status and an OpenAI error body; ``sse_error``: a 200 stream that ends
    #: with an ``error`` event, no ``[DONE]``
    expect: CaseKind
    #: the status the client sees (``http_error``), and the one its usage record must carry
    status: int
    record_status: int
    #: the deployment the usage record must name
    deployment: str
    #: the simulator whose fault this case meets first (``None``: no fault)
    fault: str | None = None
    #: ``cancel``: seconds after which the client gives up
    cancel_after: float = 0.0


_OK = "openai/ok"
_SLOW = "openai/slow"

#: the failing simulators: name -> (what they answer, the kind's label in the report)
FAULTS: dict[str, tuple[Fault, str]] = {
    "fo-429": (Fault.http(429), "429 then failover"),
    "fo-500": (Fault.http(500), "500 then failover"),
    "fo-reset": (Fault.reset(), "TCP reset then failover"),
    "fo-stall": (Fault.stall(after_chunks=0, seconds=None), "stall past the timeout then failover"),
    "err-500": (Fault.http(500), "500 to the client"),
    "err-frame": (Fault.error_frame(after_chunks=2), "error event mid-stream"),
    "err-cut": (Fault.cut_stream(after_chunks=2), "stream cut mid-way"),
    "slow-first": (Fault.slow_first_byte(3.0), "answer held back 3 s (the client cancels first)"),
}


def _failovers() -> list[Case]:
    out = []
    for sim in ("fo-429", "fo-500", "fo-reset", "fo-stall"):
        for stream in (False, True):
            name = f"{sim}{'-stream' if stream else ''}"
            out.append(Case(name, 0.0125, f"soak-{sim}", stream, "answer", 200, 200, _OK, sim))
    return out


CASES: tuple[Case, ...] = (
    Case("plain", 0.38, "soak-ok", False, "answer", 200, 200, _OK),
    Case("stream", 0.35, "soak-ok", True, "answer", 200, 200, _OK),
    Case("abandon", 0.10, "soak-slow", True, "abandon", 200, 499, _SLOW),
    # the client gives up before any answer: a non-stream request the upstream holds back, and a stream while the
    # gateway waits on the stalled first deployment of a failover
    Case("cancel", 0.01, "soak-slow-first", False, "cancel", 0, 499, "openai/slow-first", "slow-first", 0.2),
    Case(
        "cancel-failover-stream", 0.01, "soak-fo-stall", True, "cancel", 0, 499, "openai/fo-stall", "fo-stall", 0.25
    ),  # fmt: skip
    *_failovers(),
    Case("err-500", 0.0125, "soak-err-500", False, "http_error", 502, 502, "openai/err-500", "err-500"),
    Case("err-500-stream", 0.0125, "soak-err-500", True, "http_error", 502, 502, "openai/err-500", "err-500"),
    Case("err-frame-stream", 0.0125, "soak-err-frame", True, "sse_error", 200, 502, "openai/err-frame", "err-frame"),
    Case("err-cut-stream", 0.0125, "soak-err-cut", True, "sse_error", 200, 502, "openai/err-cut", "err-cut"),
)
assert abs(sum(c.share for c in CASES) - 1.0) < 1e-9


def plan_cases(requests: int, seed: int) -> list[Case]:
    """The cases of ``requests`` requests in a seeded random order, each case's count as close to its share as
    whole numbers allow (the rounding remainder goes to ``plain``)."""
    counts = [int(requests * c.share) for c in CASES]
    counts[0] += requests - sum(counts)
    out = [c for c, n in zip(CASES, counts, strict=True) for _ in range(n)]
    random.Random(seed).shuffle(out)
    return out


# -- simulators --------------------------------------------------------------------------------------------------------
class FixedSimulator(OpenAISimulator):
    """An OpenAI simulator that answers every model request with the same fault, and counts them."""

    def __init__(self, fault: Fault) -> None:
        super().__init__(record=False)
        self.fault = fault
        self.played = 0

    def _next_item(self) -> Fault:  # the simulator's own hook: the item for the next model request
        self.played += 1  # only ever called on the simulators' event loop thread
        return self.fault


class SimHost:
    """Every simulator on one event loop (uvloop when available) in a daemon thread."""

    def __init__(self) -> None:
        self.ok = OpenAISimulator(default_reply=Reply(chunk_size=8), record=False)
        # ~40 events 20 ms apart: the gateway is still streaming when the client hangs up after the first one
        self.slow = OpenAISimulator(default_reply=Reply(chunk_size=2, chunk_delay=0.02), record=False)
        self.faults = {name: FixedSimulator(fault) for name, (fault, _) in FAULTS.items()}
        self._loop = _new_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="soak-simulators", daemon=True)
        self._started: list[OpenAISimulator] = []

    def all(self) -> dict[str, OpenAISimulator]:
        return {"ok": self.ok, "slow": self.slow, **self.faults}

    def start(self) -> None:
        self._thread.start()
        for sim in self.all().values():
            asyncio.run_coroutine_threadsafe(sim.astart(), self._loop).result(10)
            self._started.append(sim)

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        for sim in self._started:
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(sim.astop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def ports(self) -> dict[int, str]:
        return {sim.port: name for name, sim in self.all().items()}

    def faults_played(self) -> dict[str, int]:
        return {name: sim.played for name, sim in self.faults.items()}


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


def gateway_config(sims: SimHost, store_url: str, work: Path) -> dict[str, Any]:
    def dep(sim: OpenAISimulator, model: str, **extra: Any) -> dict[str, Any]:
        return {"model": model, "api_key": sim.api_key, "api_base": sim.base_url, **extra}

    ok = dep(sims.ok, _OK)
    models: list[dict[str, Any]] = [
        {"name": "soak-ok", "deployments": [ok]},
        {"name": "soak-slow", "deployments": [dep(sims.slow, _SLOW)]},
    ]
    for name, sim in sims.faults.items():
        if name.startswith("fo-"):  # the failing deployment first (weight 1000 against 0.001), the good one second
            first = dep(sim, f"openai/{name}", weight=1000, timeout=FAULT_TIMEOUT)
            models.append({"name": f"soak-{name}", "deployments": [first, {**ok, "weight": 0.001}]})
        else:
            models.append({"name": f"soak-{name}", "deployments": [dep(sim, f"openai/{name}")]})
    return {
        "server": {
            "host": "127.0.0.1",
            "master_key": MASTER_KEY,
            "timeout": GATEWAY_TIMEOUT,
            "cooldown": 0,  # the failing deployment stays first in line: every failover request meets its fault
            "log_level": "warning",
        },
        "store": {"url": store_url},
        "usage": {"spill_path": str(work / "usage-spill.jsonl")},
        "models": models,
    }
