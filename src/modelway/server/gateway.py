"""The gateway's state: config → deployments → router, built once at start; the shared transport.

With a store, deployments and aliases changed at run time (the admin API, ``modelway deployments``; see
:mod:`modelway.store.deployments`) are polled every :attr:`Gateway.runtime_poll` seconds (one row read when nothing
changed) and applied to the router in one step, between two awaits: a deployment whose upstream is unchanged keeps
its object (statistics, circuit, quota usage), a request in flight keeps the deployment it holds, and the cluster's
registered workers are merged in again as the cluster's own sync does.

A deployment that cannot work as configured (no key for its provider) is built but never tried: the start logs a
warning naming it and what to set, the router skips it while others of its model can serve, and a model none of
whose deployments can work answers 503 ``deployment_unavailable`` (its fallbacks are tried first). Demo deployments
(``demo/...``) are served by the app's :class:`~modelway.testing.demo.DemoFleet`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..auth.authenticator import Authenticator
from ..config import Config, DeploymentConfig, ModelConfig, Price
from ..errors import ConfigError, ModelwayError
from ..providers import PROVIDERS, get_adapter_class, settings_from_env, split_model
from ..providers.base import Adapter, ProviderSettings
from ..retry import RetryPolicy
from ..router import Deployment, ModelGroup, Router
from ..router.policy import RoutingPolicy
from ..router.shared_redis import RedisRouterState
from ..store.deployment_specs import (
    ADAPTER_FIELDS,
    AliasDef,
    DeploymentDef,
    build_catalog,
    check_alias,
    check_deployment,
    config_ids,
    deployment_spec,
)
from ..store.responses import open_response_store
from ..transport import Transport
from ..types import ModelInfo
from .control import ControlPlane
from .metrics import CIRCUIT_STATES, Gauges

if TYPE_CHECKING:
    from ..cluster.controller import Cluster
    from ..store.deployments import RuntimeChanges
    from ..testing.demo import DemoFleet

__all__ = ["Gateway"]

log = logging.getLogger("modelway.server")

#: the provider part of demo deployments' names (:data:`modelway.testing.demo.DEMO_PROVIDER`, not imported here:
#: the simulators load only when a demo deployment is built)
_DEMO = "demo"
#: a caller-chosen `provider/model` with one of these is no model (and no header value)
_CONTROL_CHAR = re.compile(r"[\x00-\x1f\x7f]")


class Gateway:
    """Everything a request needs, shared by all requests of one worker process."""

    #: seconds between two polls of the store's version of the run-time changes
    runtime_poll: float = 1.0

    def __init__(
        self,
        config: Config,
        env: Mapping[str, str] | None = None,
        control: ControlPlane | None = None,
        *,
        demo: DemoFleet | None = None,
    ) -> None:
        self.config = config
        #: the simulators of demo deployments (the app's; one of the gateway's own is made when first needed)
        self.demo = demo
        self._owns_demo = False
        #: keys, limits, usage ledger, metrics (built by the app at start-up; auth only when built here)
        self.control = control or ControlPlane(config, Authenticator(config.server.master_key))
        self.env = dict(os.environ if env is None else env)
        s = config.server
        self.transport = Transport(
            limit=s.upstream_connections, max_answer_bytes=s.max_answer_bytes, max_event_bytes=s.max_event_bytes
        )
        self._provider_adapters: dict[str, Adapter | None] = {}
        groups = {m.name: self._group(m) for m in config.models}
        for m in config.models:
            _warn_unavailable(m.name, groups[m.name].deployments)
        for provider in config.providers if config.server.allow_direct else ():
            problem = _problem(get_adapter_class(provider)(self._provider_settings(provider) or ProviderSettings()))
            if problem is not None:
                log.warning("providers.%s: direct %s/... calls cannot work: %s", provider, provider, problem)
        # a provider/model called directly costs what the same upstream costs behind an alias
        self._configured_prices = {
            d.address: d.price for g in groups.values() for d in g.deployments if d.price is not None
        }
        self.router = Router(
            groups,
            transport=self.transport,
            # the gateway retries a deployment only for short waits: a longer Retry-After fails over, or goes back
            # to the caller (with its Retry-After), whose own client decides how long to wait
            retry=RetryPolicy(s.max_retries, max_retry_after=1.0),
            timeout=s.timeout,
            cooldown=s.cooldown,
            direct=self._direct if s.allow_direct else None,
            on_failure=self._attempt_failed if self.control.metrics is not None else None,
            on_queue_wait=self._queue_waited if self.control.metrics is not None else None,
            # circuits, quotas, in flight and latency shared by every worker and replica on this Redis (fails open)
            shared=RedisRouterState(config.store.redis_url) if config.store.redis_url is not None else None,
        )
        self.control.resolve = self.router.group
        if self.control.metrics is not None:
            self.control.metrics.gauges = self._gauges
        #: run-time changes: the store's (when there is one), what was built from which definition, and each
        #: deployment's (id, source, changed) for the admin listing
        self.runtime: RuntimeChanges | None = None
        self._runtime_version: int | None = None
        self._runtime_task: asyncio.Task[None] | None = None
        self._base: dict[str, ModelGroup] = dict(groups)
        self._built: dict[str, tuple[dict[str, Any], Deployment]] = {}
        self.source_of: dict[Deployment, tuple[str, str, bool]] = {}
        for m in config.models:
            for dep_id, d, dep in zip(config_ids(m), m.deployments, groups[m.name].deployments, strict=True):
                self._built[dep_id] = (deployment_spec(d), dep)
                self.source_of[dep] = (dep_id, "config", False)
        #: kept Responses (``/v1/responses`` with ``store``, ``previous_response_id``): in the SQL store, else memory
        self.responses = open_response_store(config.responses, self.control.store)
        #: the controller of FastChat / DB-GPT workers (``cluster.controller``): their deployments join the router
        self.cluster: Cluster | None = None
        if config.cluster.controller:
            from ..cluster.controller import Cluster

            self.cluster = Cluster(config, self.router, self.transport)

    async def start(self) -> None:
        """Start what runs beside the requests: the sync of run-time changes and of registered workers."""
        if self.control.store is not None:
            from ..store.deployments import RuntimeChanges

            self.runtime = RuntimeChanges(self.control.store, self.config, self.env)
            try:
                await self.sync_runtime()
            except Exception as exc:  # the store is down: serve the config, the loop tries again
                log.warning("run-time deployments: cannot read the store: %s", exc)
            self._runtime_task = asyncio.get_running_loop().create_task(self._runtime_loop(), name="modelway-runtime")
        if self.cluster is not None:
            await self.cluster.start()

    # -- run-time changes -----------------------------------------------------------------------
    async def _runtime_loop(self) -> None:
        failing = False
        while True:
            await asyncio.sleep(self.runtime_poll)
            try:
                await self.sync_runtime()
            except Exception as exc:  # keep the last view; say so once per outage
                if not failing:
                    log.warning("run-time deployments: cannot read the store (keeping the last view): %s", exc)
                failing = True
            else:
                failing = False

    async def sync_runtime(self, *, force: bool = False) -> bool:
        """Apply the store's changes if its version moved since the last sync (one row read when not)."""
        if self.runtime is None:
            return False
        if not force and self._runtime_version is not None and await self.runtime.version() == self._runtime_version:
            return False
        snap = await self.runtime.snapshot()
        self._apply_runtime(build_catalog(self.config, snap))
        self._runtime_version = snap.version
        return True

    def _apply_runtime(self, catalog: list[AliasDef]) -> None:
        """Make the router's groups what ``catalog`` defines, at once (no await in here)."""
        built: dict[str, tuple[dict[str, Any], Deployment]] = {}
        source_of: dict[Deployment, tuple[str, str, bool]] = {}
        wanted: dict[str, ModelGroup] = {}
        for alias in catalog:
            try:
                m = check_alias(alias.name, alias.spec)
            except ModelwayError as exc:
                log.warning("run-time deployments: model %r left out: %s", alias.name, exc)
                continue
            deps = []
            for d in alias.active():
                dep = self._runtime_deployment(d, m.price)
                if dep is not None:
                    built[d.id] = (d.spec, dep)
                    source_of[dep] = (d.id, d.source, d.changed)
                    deps.append(dep)
            if not deps:
                continue
            policy = m.routing or RoutingPolicy()
            g = self._base.get(alias.name) or self.router.groups.get(alias.name)
            if g is None:
                g = ModelGroup(
                    alias.name, deps, system_prompt=m.system_prompt, merge_system=m.merge_system, policy=policy
                )
            g.deployments, g.system_prompt, g.merge_system = deps, m.system_prompt, m.merge_system
            if g.policy != policy:
                g.policy = policy  # (its strategy is built again)
            wanted[alias.name] = g
        groups = self.router.groups
        for name in self._base:
            if name not in wanted and self.cluster is None:
                groups.pop(name, None)
        groups.update(wanted)
        self._base, self._built, self.source_of = wanted, built, source_of
        if self.cluster is not None:  # the workers' deployments join the new base, as the cluster's sync does
            self.cluster._configured = {name: list(g.deployments) for name, g in wanted.items()}
            self.cluster._apply(self.cluster.workers)

    def _runtime_deployment(self, d: DeploymentDef, price: Price | None) -> Deployment | None:
        """The deployment ``d`` defines: the one built before when its upstream is the same (updated in place:
        weight, timeout, params, price, tier, quota, disabled), else a new one."""
        try:
            fresh = self._deployment(check_deployment(d.spec, self.env), price)
        except ModelwayError as exc:  # say, an api_key_env this gateway does not have
            log.warning("run-time deployments: %s (model %r) left out: %s", d.id, d.model_name, exc)
            return None
        prev = self._built.get(d.id)
        if prev is None or any(prev[0].get(k) != d.spec.get(k) for k in ADAPTER_FIELDS):
            if fresh.unavailable is not None:
                log.warning(
                    "run-time deployments: %s (model %r) cannot work: %s", d.id, d.model_name, fresh.unavailable
                )
            return fresh
        dep = prev[1]
        for attr in ("weight", "timeout", "params", "price", "tier", "quota", "disabled", "unavailable"):
            setattr(dep, attr, getattr(fresh, attr))
        return dep

    # -- building -------------------------------------------------------------------------------
    def _provider_settings(self, provider: str) -> ProviderSettings | None:
        """Credentials for direct ``provider/model`` calls: the config's ``providers:`` section, else env.

        ``None`` when the operator gave this provider nothing: no ``providers:`` entry and no key in the
        environment (for a provider that needs no key, such as a local Ollama or vLLM: no base URL in the
        environment either), so a caller cannot make the gateway dial a default local address it was never told
        about."""
        cls = get_adapter_class(provider)
        p = self.config.providers.get(provider)
        if p is not None:
            known = {"api_key", "base_url", "api_base", "headers"}
            return ProviderSettings(
                api_key=p.get("api_key"),
                base_url=p.get("base_url") or p.get("api_base"),
                headers=dict(p.get("headers") or {}),
                options={k: v for k, v in p.items() if k not in known},
            )
        settings = settings_from_env(cls, self.env)
        if settings.api_key is None and settings.base_url is None:
            return None
        needs_key = getattr(getattr(cls, "spec", None), "key_required", True)
        if settings.api_key is None and needs_key:
            return None
        return settings

    def _deployment(self, d: DeploymentConfig, price: Price | None = None) -> Deployment:
        """The deployment ``d`` configures; ``unavailable`` says why it cannot work (it is then never tried)."""
        provider, model = split_model(d.model)
        if provider == _DEMO:
            adapter, model = self._demo_adapter(d)
        else:
            cls = get_adapter_class(provider)
            base = self._provider_settings(provider) or ProviderSettings()
            settings = ProviderSettings(
                api_key=d.api_key or base.api_key,
                base_url=d.api_base or base.base_url,
                headers={**base.headers, **d.headers},
                options={**base.options, **d.options},
            )
            adapter = cls(settings)
        return Deployment(
            adapter,
            model,
            weight=d.weight,
            timeout=d.timeout,
            params=dict(d.params),
            price=d.price or price or self.config.prices.get(d.model),
            tier=d.tier,
            quota=d.quota,
            disabled=d.disabled,
            unavailable=_problem(adapter),
        )

    def _demo_adapter(self, d: DeploymentConfig) -> tuple[Adapter, str]:
        if self.demo is None:  # (a demo deployment added at run time to a gateway started without one)
            from ..testing.demo import DemoFleet

            self.demo, self._owns_demo = DemoFleet(), True
        try:
            return self.demo.adapter(d.model, d.options)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None

    def _group(self, m: ModelConfig) -> ModelGroup:
        return ModelGroup(
            m.name,
            [self._deployment(d, m.price) for d in m.deployments],
            system_prompt=m.system_prompt,
            merge_system=m.merge_system,
            policy=m.routing or RoutingPolicy(),
        )

    def _direct(self, model: str) -> ModelGroup | None:
        if _CONTROL_CHAR.search(model):  # no provider's model: and it would go out in x-modelway-deployment
            return None
        try:
            provider, name = split_model(model)
        except ValueError:
            return None
        if provider not in PROVIDERS:
            return None
        if provider not in self._provider_adapters:
            settings = self._provider_settings(provider)
            self._provider_adapters[provider] = PROVIDERS[provider](settings) if settings else None
        adapter = self._provider_adapters[provider]
        if adapter is None:
            return None
        price = self.config.prices.get(model) or self._configured_prices.get(model)
        dep = Deployment(adapter, name, price=price, unavailable=_problem(adapter))
        return ModelGroup(model, [dep], owned_by=provider)

    def _attempt_failed(self, dep: Deployment, exc: ModelwayError) -> None:
        metrics = self.control.metrics
        if metrics is not None:
            metrics.count_failure(self.control.deployment_label(dep), type(exc).__name__)

    def _queue_waited(self, group: ModelGroup, seconds: float) -> None:
        metrics = self.control.metrics
        if metrics is not None:
            metrics.observe_queue_wait(self.control.label(group.name, None), seconds)

    def _gauges(self) -> Gauges:
        """What ``/metrics`` reads at scrape time: each configured model's deployments (circuit state, upstream
        requests in flight) and its quota queue."""
        circuits: dict[tuple[str, ...], float] = {}
        in_flight: dict[tuple[str, ...], float] = {}
        queues: dict[tuple[str, ...], float] = {}
        label = self.control.label
        for name, group in self.router.groups.items():
            model = label(name, None)
            queues[(model,)] = queues.get((model,), 0.0) + len(group.queue)
            breaker = group.policy.circuit is not None
            for dep in group.deployments:
                key = (model, self.control.deployment_label(dep))
                state = CIRCUIT_STATES.get(dep.circuit.state.value, 0) if breaker else 0
                circuits[key] = max(circuits.get(key, 0.0), state)
                in_flight[key] = in_flight.get(key, 0.0) + dep.stats.local_in_flight
        return {
            "modelway_deployment_circuit_state": circuits,
            "modelway_deployment_in_flight": in_flight,
            "modelway_queue_length": queues,
        }

    # -- queries --------------------------------------------------------------------------------
    def models(self) -> list[ModelInfo]:
        """Configured aliases first, then known models of providers with credentials (when direct calls are on)."""
        out = [ModelInfo(id=g.name, owned_by=g.owned_by) for g in self.router.groups.values()]
        if self.config.server.allow_direct:
            seen = {m.id for m in out}
            for provider in sorted(PROVIDERS):
                if self._provider_settings(provider) is None:
                    continue
                for info in PROVIDERS[provider](ProviderSettings()).models():
                    if info.id not in seen:
                        out.append(info)
        return out

    def model(self, model_id: str) -> ModelInfo | None:
        for m in self.models():
            if m.id == model_id:
                return m
        try:
            g = self.router.group(model_id)
        except ModelwayError:
            return None
        return ModelInfo(id=g.name, owned_by=g.owned_by)

    def describe(self) -> dict[str, Any]:
        """What the readiness check tells the master key: settings, counts, and the worker's live tasks (a number
        that must come back down when the load stops: the soak test watches it)."""
        return {
            "models": len(self.router.groups),
            "unavailable_deployments": sum(
                1 for g in self.router.groups.values() for d in g.deployments if d.unavailable is not None
            ),
            "direct": self.config.server.allow_direct,
            "tasks": len(asyncio.all_tasks()),
            **self.control.describe(),
            **({"cluster_workers": len(self.cluster.workers)} if self.cluster is not None else {}),
        }

    def deployments(self) -> list[dict[str, Any]]:
        """Every deployment in rotation, configured or registered by a worker (``GET /admin/deployments``)."""
        now = time.monotonic()
        out = []
        for name, group in sorted(self.router.groups.items()):
            for dep in group.deployments:
                worker = self.cluster.worker_of.get(dep) if self.cluster is not None else None
                dep_id, source, changed = self.source_of.get(dep, (None, "config", False))
                entry: dict[str, Any] = {
                    # the router's view: strategy, tier, disabled, circuit, in flight, latency averages, errors, quota
                    **self.router.describe(name, group, dep, now),
                    "id": dep_id,
                    "source": worker.kind if worker is not None else source,
                    "changed": changed,
                    "address": dep.adapter.base_url,
                    "cooling": dep.cooling(now),
                    # why it cannot work as configured (never tried), or null
                    "unavailable": dep.unavailable,
                    "last_heartbeat": worker.last_heartbeat if worker is not None else None,
                    "queue_length": worker.queue_length if worker is not None else None,
                }
                if worker is not None:
                    entry["worker_name"] = worker.name
                out.append(entry)
        return out

    async def aclose(self) -> None:
        if self._runtime_task is not None:
            self._runtime_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runtime_task
            self._runtime_task = None
        if self.cluster is not None:
            await self.cluster.aclose()
        await self.router.aclose()
        await self.transport.aclose()
        await self.control.aclose()
        if self._owns_demo and self.demo is not None:
            await self.demo.astop()


def _problem(adapter: Adapter) -> str | None:
    """Why ``adapter`` cannot send a request as configured (no key for its provider, a malformed key), or ``None``.
    Nothing is sent: the adapter is asked for the headers it would authenticate with."""
    try:
        adapter.auth_headers()
    except ConfigError as exc:
        if adapter.api_key:
            return str(exc)
        env = " or ".join(adapter.key_env) or "a key"
        return (
            f"no API key for provider {adapter.name!r}: set {env}, or give the "
            f"deployment an api_key (or providers.{adapter.name}.api_key)"
        )
    return None


def _warn_unavailable(model: str, deployments: list[Deployment]) -> None:
    """Tell the operator, at start, of each deployment of ``model`` that cannot work, and what callers get."""
    bad = [d for d in deployments if d.unavailable is not None]
    for dep in bad:
        log.warning("model %r: deployment %s cannot work and is skipped: %s", model, dep.address, dep.unavailable)
    if bad and len(bad) == len(deployments):
        log.warning(
            "model %r: none of its deployments can work: requests for it get 503 deployment_unavailable "
            "(after its fallbacks, if any)",
            model,
        )
