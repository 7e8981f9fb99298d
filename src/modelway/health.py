"""``modelway check``: one tiny request to every deployment of a config, through the library's calls.

The deployments are built exactly as the gateway builds them at start (:class:`~modelway.server.gateway.Gateway`:
keys from the deployment, the ``providers:`` section or the environment; demo deployments over their simulators),
then each gets one request — a chat completion of at most one token, one embedding, or a rerank of one document,
by what the model is (:func:`model_kind`) — with no retry, at most ``concurrency`` at a time, each within
``timeout``. A deployment that cannot work as configured (no key) is reported without a request.

Checked: every deployment of every alias of the config file (run-time changes kept in the store are not), and,
when direct ``provider/model`` calls are on, the direct models the config names (``prices:``) and, for each
provider configured in ``providers:`` (or, without a config file, whose key is in the environment), its first
known model.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import calls
from .envfile import env_source
from .errors import ModelwayError
from .rerank import rerank_request
from .retry import RetryPolicy
from .types import CHAT_PARAMS
from .validate import chat_request, embedding_request

if TYPE_CHECKING:
    from .config import Config
    from .router import Deployment, ModelGroup
    from .server.gateway import Gateway
    from .transport import Transport

__all__ = ["DIRECT", "CheckResult", "model_kind", "run_checks"]

#: the alias column of a direct ``provider/model`` (no alias)
DIRECT = "(direct)"

_ONCE = RetryPolicy(0)


def model_kind(model: str) -> str:
    """``chat``, ``embedding`` or ``rerank``, by the model's name (``zhipu/embedding-3`` is an embedding model,
    ``dashscope/gte-rerank-v2`` a rerank one; everything else is taken for a chat model)."""
    from .testing.demo import DEMO_MODELS

    demo = DEMO_MODELS.get(model)
    if demo is not None:
        return demo.kind
    name = model.rpartition("/")[2].lower()
    if "rerank" in name:
        return "rerank"
    if "embed" in name or name.startswith(("bge-", "text2vec", "m3e")):
        return "embedding"
    return "chat"


@dataclass(slots=True)
class CheckResult:
    """How one deployment answered its check."""

    alias: str
    deployment: str
    kind: str
    ok: bool
    #: seconds from sending to the whole answer (``None``: no request was sent)
    latency: float | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "alias": self.alias,
            "deployment": self.deployment,
            "kind": self.kind,
            "status": "ok" if self.ok else "error",
            "latency_ms": None if self.latency is None else round(self.latency * 1000, 1),
            "error": self.error,
        }


@dataclass(slots=True)
class _Target:
    alias: str
    #: ``None``: a name that resolves to no deployment (``error`` says why)
    dep: Deployment | None
    kind: str
    #: the model's own messages treatment (its system prompt, system text merged for models without the role)
    group: ModelGroup | None = None
    name: str = ""
    error: str | None = None


async def _check(transport: Transport, t: _Target, timeout: float) -> CheckResult:
    dep = t.dep
    if dep is None:
        return CheckResult(t.alias, t.name, t.kind, ok=False, error=t.error)
    result = CheckResult(t.alias, dep.address, t.kind, ok=False)
    if dep.unavailable is not None:
        result.error = dep.unavailable
        return result
    limit = min(timeout, dep.timeout) if dep.timeout else timeout
    started = time.perf_counter()
    try:
        async with asyncio.timeout(limit + 1.0):  # the transport's own timeout first; this bounds everything else
            if t.kind == "embedding":
                req = embedding_request(dep.model, "ping", dep.params)
                await calls.embed(transport, dep.adapter, req, timeout=limit, retry=_ONCE)
            elif t.kind == "rerank":
                rr = rerank_request(dep.model, "ping", ["pong"], top_n=1, return_documents=False)
                await calls.rerank(transport, dep.adapter, rr, timeout=limit, retry=_ONCE)
            else:
                params = {k: v for k, v in dep.params.items() if k in CHAT_PARAMS}
                extra = {k: v for k, v in dep.params.items() if k not in CHAT_PARAMS}
                params["max_tokens"] = 1
                messages: list[dict[str, Any]] = [{"role": "user", "content": "ping"}]
                if t.group is not None:
                    messages = t.group.prepare(messages)
                cr = chat_request(dep.model, messages, params=params, extra=extra)
                await calls.complete_once(transport, dep.adapter, cr, timeout=limit)
    except ModelwayError as exc:  # (a ProviderTimeoutError too: it says what timed out)
        result.error = str(exc)
    except TimeoutError:
        result.error = f"no answer within {limit:g}s"
    except Exception as exc:  # a bug, or something the transport let through: reported, not raised
        result.error = f"{type(exc).__name__}: {exc}"
    else:
        result.ok = True
    result.latency = time.perf_counter() - started
    return result


def _targets(gateway: Gateway, models: Sequence[str], env: Mapping[str, str], *, file: bool) -> list[_Target]:
    """What to check: every deployment of the aliases (``models``: of those named), then the direct models."""
    from .providers import PROVIDERS

    groups = gateway.router.groups
    out = [
        _Target(name, dep, model_kind(dep.address), g)
        for name, g in groups.items()
        if not models or name in models
        for dep in g.deployments
    ]
    config = gateway.config
    if models:
        direct = [m for m in models if m not in groups]
    elif not config.server.allow_direct:
        direct = []
    else:
        direct = [m for m in config.prices if m not in groups]
        if file:
            providers = set(config.providers)
        else:  # the embedded defaults serve every provider whose key is in the environment
            providers = {p for p, cls in PROVIDERS.items() if any(env_source(env, k) for k in cls.key_env)}
        covered = {m.partition("/")[0] for m in direct}
        for p in sorted(providers - covered):
            chat = [m for m in PROVIDERS[p].known_models if model_kind(m) == "chat"]
            if chat:
                direct.append(f"{p}/{chat[0]}")
    for name in direct:
        try:
            group = gateway.router.group(name)
        except ModelwayError:
            provider = name.partition("/")[0]
            cls = PROVIDERS.get(provider) if "/" in name else None
            if cls is None:
                error = "neither an alias of the config nor provider/model of a known provider"
            elif not config.server.allow_direct:
                error = "not an alias of the config (and server.allow_direct is false)"
            else:
                error = f"no credentials for provider {provider!r}: set {' or '.join(cls.key_env) or 'its base_url'}"
            out.append(_Target(DIRECT, None, model_kind(name), name=name, error=error))
            continue
        out.extend(_Target(DIRECT, dep, model_kind(name)) for dep in group.deployments)
    return out


async def run_checks(
    config: Config,
    *,
    env: Mapping[str, str] | None = None,
    models: Sequence[str] = (),
    timeout: float = 20.0,
    concurrency: int = 8,
    file: bool = True,
    on_start: Callable[[int], None] | None = None,
    on_result: Callable[[CheckResult], None] | None = None,
) -> list[CheckResult]:
    """Check every deployment of ``config`` (``models``: of these aliases or direct models only), ``concurrency``
    at a time; results in the order of the config. ``file``: ``config`` came from a file (else, the embedded
    defaults: direct models of every provider with a key in ``env``). ``on_start`` is told how many checks there
    are, ``on_result`` gets each result as it comes (a progress bar)."""
    from .config import ClusterConfig, StoreConfig
    from .server.gateway import Gateway
    from .testing.demo import DemoFleet

    env = dict(os.environ if env is None else env)
    # the deployments only: no store, no Redis, no cluster registry
    config = dataclasses.replace(config, store=StoreConfig(), cluster=ClusterConfig())
    fleet = DemoFleet()
    await fleet.astart(
        (d.model, d.options) for m in config.models for d in m.deployments if d.model.startswith("demo/")
    )
    gateway = Gateway(config, env, demo=fleet)
    try:
        targets = _targets(gateway, models, env, file=file)
        if on_start is not None:
            on_start(len(targets))
        gate = asyncio.Semaphore(max(1, concurrency))

        async def one(t: _Target) -> CheckResult:
            async with gate:
                r = await _check(gateway.transport, t, timeout)
            if on_result is not None:
                on_result(r)
            return r

        return list(await asyncio.gather(*(one(t) for t in targets)))
    finally:
        await gateway.aclose()
        await fleet.astop()
