"""The ``demo/...`` models: local simulators anyone can call without a key, and faults to switch on.

One catalog (:data:`DEMO_MODELS`) serves ``modelway serve --demo`` (an alias per demo model), ``modelway chat
--demo``, ``modelway check`` and configs whose deployments are demo models::

    models:
      - name: chat
        deployments:
          - model: demo/glm-4-flash
            options: {fail_every: 3, fail_status: 429}   # every 3rd request: 429 with Retry-After
          - model: demo/qwen-plus
            options: {latency: 0.5}                      # every answer starts half a second late

Fault options (:class:`DemoFaults`), counted per simulator: ``fail_every: N`` answers every Nth request with HTTP
``fail_status`` (500 by default; 429 comes with ``Retry-After: 1``), ``timeout_every: N`` answers every Nth request's
headers and then nothing until the caller gives up (set the deployment's ``timeout``), ``latency: S`` delays every
other answer by S seconds. A deployment's simulator is shared with every other deployment of the same demo model and
the same options.

Nothing a demo model answers comes from a real model: the simulators echo the prompt (``You said: ...``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from ._server import BaseSimulator
from .script import Fault, Reply

if TYPE_CHECKING:
    from ..providers.base import Adapter

__all__ = ["DEMO_MODELS", "DEMO_PROVIDER", "DemoFaults", "DemoFleet", "DemoModel", "check_demo_deployment"]

#: the provider part of every demo model's name
DEMO_PROVIDER = "demo"


@dataclass(frozen=True, slots=True)
class DemoModel:
    """One demo model: the simulator (a class of :mod:`modelway.testing`) and the provider adapter that talk."""

    name: str
    simulator: str
    provider: str
    #: chat, embedding or rerank
    kind: str = "chat"


DEMO_MODELS: dict[str, DemoModel] = {
    m.name: m
    for m in (
        DemoModel("demo/glm-4-flash", "ZhipuSimulator", "zhipu"),
        DemoModel("demo/qwen-plus", "DashScopeSimulator", "dashscope"),
        DemoModel("demo/gpt-4o-mini", "OpenAISimulator", "openai"),
        DemoModel("demo/deepseek-chat", "DeepSeekSimulator", "deepseek"),
        DemoModel("demo/moonshot-v1-8k", "MoonshotSimulator", "moonshot"),
        DemoModel("demo/claude-haiku-4-5", "AnthropicSimulator", "anthropic"),
        DemoModel("demo/embedding-3", "ZhipuSimulator", "zhipu", "embedding"),
        DemoModel("demo/text-embedding-3-small", "OpenAISimulator", "openai", "embedding"),
        DemoModel("demo/gte-rerank-v2", "DashScopeSimulator", "dashscope", "rerank"),
        DemoModel("demo/jina-reranker-v2", "JinaSimulator", "jina", "rerank"),
    )
}

#: a stream's pieces come this far apart, so that streaming is visible in a terminal
_DEMO_REPLY = Reply(chunk_delay=0.03)


def demo_model(name: str) -> DemoModel:
    """The catalog's entry for ``name`` (``demo/glm-4-flash``); :class:`ValueError` lists the known ones."""
    m = DEMO_MODELS.get(name)
    if m is None:
        raise ValueError(f"{name!r} is not a demo model (known: {', '.join(DEMO_MODELS)})")
    return m


@dataclass(frozen=True, slots=True)
class DemoFaults:
    """What a demo deployment's simulator does wrong, on purpose (a deployment's ``options``)."""

    #: every Nth request is answered with HTTP ``fail_status`` (0: never)
    fail_every: int = 0
    fail_status: int = 500
    #: every Nth request gets its answer's headers, then nothing until the caller gives up (0: never)
    timeout_every: int = 0
    #: seconds before every other answer starts
    latency: float = 0.0

    @classmethod
    def from_options(cls, options: Mapping[str, Any] | None) -> DemoFaults:
        """The faults a deployment's ``options`` ask for; :class:`ValueError` names a wrong option."""
        options = dict(options or {})
        known = [f.name for f in fields(cls)]
        for key in options:
            if key not in known:
                raise ValueError(f"options.{key}: not a demo fault option (known: {', '.join(known)})")
        for key in ("fail_every", "timeout_every"):
            v = options.get(key, 0)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"options.{key}: must be a whole number >= 0 (every Nth request; got {v!r})")
        status = options.get("fail_status", 500)
        if isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599:
            raise ValueError(f"options.fail_status: must be an HTTP error status, e.g. 500 or 429 (got {status!r})")
        latency = options.get("latency", 0.0)
        if isinstance(latency, bool) or not isinstance(latency, int | float) or not 0 <= latency <= 3600:
            raise ValueError(f"options.latency: must be seconds from 0 to 3600 (got {latency!r})")
        return cls(
            fail_every=options.get("fail_every", 0),
            fail_status=status,
            timeout_every=options.get("timeout_every", 0),
            latency=float(latency),
        )

    def __call__(self, n: int) -> Fault | None:
        """What the n-th request gets (a simulator's script): a fault, or ``None`` for the ordinary answer."""
        if self.timeout_every and n % self.timeout_every == 0:
            return Fault.stall(after_chunks=0, seconds=None)
        if self.fail_every and n % self.fail_every == 0:
            return Fault.http(
                self.fail_status,
                message=f"demo fault: request {n} fails (fail_every: {self.fail_every})",
                retry_after=1 if self.fail_status == 429 else None,
            )
        if self.latency:
            return Fault.slow_first_byte(self.latency)
        return None


def check_demo_deployment(name: str, options: Mapping[str, Any] | None) -> None:
    """Refuse (:class:`ValueError`) a demo deployment the fleet could not serve: an unknown name, wrong options."""
    demo_model(name)
    DemoFaults.from_options(options)


def _demo_adapter_class(cls: type[Adapter]) -> type[Adapter]:
    """``cls`` under the provider name ``demo``: a demo deployment is ``demo/<model>`` in answers' headers, usage
    records, metrics and errors, never mistaken for the real provider."""
    made = _DEMO_ADAPTERS.get(cls)
    if made is None:
        made = _DEMO_ADAPTERS[cls] = type(
            f"Demo{cls.__name__}", (cls,), {"name": DEMO_PROVIDER, "label": "modelway's local simulators"}
        )
    return made


_DEMO_ADAPTERS: dict[type[Adapter], type[Adapter]] = {}


class DemoFleet:
    """The running simulators behind demo models: one per (simulator, faults), started on first need.

    :meth:`astart` starts them in the running event loop (the gateway's, at its start); :meth:`adapter` starts one
    that is missing in a thread of its own (a deployment added at run time). :meth:`astop` (or :meth:`stop`) stops
    them all.
    """

    def __init__(self, reply: Reply | None = None) -> None:
        self.reply = reply or _DEMO_REPLY
        self._sims: dict[tuple[str, DemoFaults], BaseSimulator] = {}
        #: those started in a thread of their own (stopped with ``stop``, not ``astop``)
        self._threaded: set[BaseSimulator] = set()

    def _new(self, model: DemoModel, faults: DemoFaults) -> BaseSimulator:
        from .. import testing

        cls: type[BaseSimulator] = getattr(testing, model.simulator)
        # nothing recorded: a demo gateway may run for days
        return cls(default_reply=self.reply, record=False, script=faults)

    async def astart(self, wanted: Iterable[tuple[str, Mapping[str, Any] | None]]) -> None:
        """Start, in the running loop, the simulators of ``(demo model, options)`` pairs not running yet."""
        for name, options in wanted:
            model, faults = demo_model(name), DemoFaults.from_options(options)
            key = (model.simulator, faults)
            if key not in self._sims:
                self._sims[key] = await self._new(model, faults).astart()

    def simulator(self, name: str, options: Mapping[str, Any] | None = None) -> BaseSimulator:
        """The running simulator serving ``name`` with these fault ``options`` (started in a thread if missing)."""
        model, faults = demo_model(name), DemoFaults.from_options(options)
        key = (model.simulator, faults)
        sim = self._sims.get(key)
        if sim is None:
            sim = self._sims[key] = self._new(model, faults).start()
            self._threaded.add(sim)
        return sim

    def adapter(self, name: str, options: Mapping[str, Any] | None = None) -> tuple[Adapter, str]:
        """An adapter (provider ``demo``) over the simulator of ``name``, and the model name to send it."""
        from ..providers import get_adapter_class
        from ..providers.base import ProviderSettings

        model = demo_model(name)
        sim = self.simulator(name, options)
        cls = _demo_adapter_class(get_adapter_class(model.provider))
        return cls(ProviderSettings(api_key=sim.api_key, base_url=sim.base_url)), name.partition("/")[2]

    async def astop(self) -> None:
        sims, self._sims = list(self._sims.values()), {}
        for sim in sims:
            if sim in self._threaded:
                await asyncio.to_thread(sim.stop)
            else:
                await sim.astop()
        self._threaded.clear()

    def stop(self) -> None:
        """Stop the simulators started in threads (those :meth:`astart` started need :meth:`astop`)."""
        for key, sim in list(self._sims.items()):
            if sim in self._threaded:
                sim.stop()
                del self._sims[key]
        self._threaded.clear()
