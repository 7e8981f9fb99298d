"""The gateway's configuration: a YAML file plus the environment, validated once at start.

Every problem is reported as a :class:`~modelway.errors.ConfigError` naming the field
(``models[1].deployments[0].weight: must be a positive number``). See ``modelway.example.yaml``.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from .config_env import Kind, Sections, kinds_of, read_overrides
from .envfile import FILE_SUFFIX, EnvReader
from .errors import ConfigError

if TYPE_CHECKING:
    from .router.policy import Quota, RoutingPolicy

__all__ = [
    "ClusterConfig",
    "Config",
    "DeploymentConfig",
    "MetricsConfig",
    "ModelConfig",
    "Price",
    "RequestLogConfig",
    "ResponsesConfig",
    "ServerConfig",
    "StoreConfig",
    "TracingConfig",
    "UsageConfig",
    "env_sections",
    "load_config",
    "load_config_explained",
    "parse_config",
]

log = logging.getLogger("modelway.config")

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


@dataclass(slots=True, frozen=True)
class Price:
    """What a model costs, in the gateway's currency per million tokens."""

    input: float = 0.0
    output: float = 0.0

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.input + completion_tokens * self.output) / 1_000_000


@dataclass(slots=True)
class DeploymentConfig:
    """One upstream that can serve a model: ``provider/model`` with its own key, base URL, weight and timeout."""

    model: str
    api_key: str | None = None
    api_base: str | None = None
    weight: float = 1.0
    timeout: float | None = None
    #: default parameters for this deployment (a caller's own value wins)
    params: dict[str, Any] = field(default_factory=dict)
    #: adapter options, e.g. ``{"auth": "jwt"}`` for Zhipu, ``{"workspace": "..."}`` for DashScope
    options: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    #: overrides the model's price for this deployment
    price: Price | None = None
    #: the ``priority`` strategy's tier (0 first), what this upstream may take, and whether an operator took it out
    tier: int = 0
    quota: Quota | None = None
    disabled: bool = False


@dataclass(slots=True)
class ModelConfig:
    """A model name clients call (an alias) over one or more deployments."""

    name: str
    deployments: list[DeploymentConfig]
    #: added as the first message when the request has no system message
    system_prompt: str | None = None
    #: the upstream model has no system role: merge system text into the first user message
    merge_system: bool = False
    description: str | None = None
    price: Price | None = None
    #: how the router serves it (``routing:``, over the top-level defaults); ``None``: the defaults of RoutingPolicy
    routing: RoutingPolicy | None = None


@dataclass(slots=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 4000
    #: clients must send ``Authorization: Bearer <master_key>``; ``None`` means no auth (local use only)
    master_key: str | None = None
    max_body_bytes: int = 10 * 1024 * 1024
    #: the request line and headers of one request, together (larger: 431, and the connection is closed)
    max_header_bytes: int = 64 * 1024
    #: header lines in one request (more: 431)
    max_headers: int = 100
    #: seconds a client has to send a request's line and headers, from its first byte (or from connecting)
    header_timeout: float = 10.0
    #: seconds a client has to send a request's body, once its headers arrived (later: 408)
    body_timeout: float = 60.0
    #: on SIGTERM: seconds to let requests and streams in flight finish before they are ended with an error
    shutdown_timeout: float = 25.0
    #: the largest decoded answer accepted from a provider (a JSON body, or a whole stream)
    max_answer_bytes: int = 64 * 1024 * 1024
    #: the largest single server-sent event accepted from a provider
    max_event_bytes: int = 16 * 1024 * 1024
    #: default upstream timeout (seconds) for deployments that set none
    timeout: float = 600.0
    #: retries of one deployment before failing over to the next
    max_retries: int = 1
    #: seconds a failing deployment is skipped while others are available
    cooldown: float = 5.0
    #: serve any ``provider/model`` whose provider has credentials, besides the configured aliases
    allow_direct: bool = True
    log_level: str = "info"
    #: the HTTP server protocol: ``modelway`` (the gateway's own, the default) or ``uvicorn`` (uvicorn's, bounded)
    http: str = "modelway"
    #: connections the kernel queues for the gateway while it is busy accepting (the listen backlog)
    backlog: int = 2048
    #: open connections to providers per worker process, idle ones included (more requests at once wait for one)
    upstream_connections: int = 4096
    #: origins browsers may call the gateway from (CORS; ``["*"]``: any); empty: no CORS headers, OPTIONS is 405
    cors_origins: list[str] = field(default_factory=list)


@dataclass(slots=True)
class StoreConfig:
    """Where the control plane keeps its state. Without ``url`` there are no virtual keys and no usage ledger."""

    #: ``sqlite:///modelway.db`` (embedded) or ``postgresql://user@host/db`` (shared by replicas)
    url: str | None = None
    #: ``redis://host:6379/0``: rate limits and budgets shared by every worker and replica (else in-process);
    #: ``rediss://`` for TLS, ``redis+sentinel://h1,h2/service`` through Sentinel, options in the query
    #: (``ssl_ca_certs``, ``socket_timeout``, ...: :mod:`modelway.limits.redis_url`)
    redis_url: str | None = None
    #: seconds between reloads of the keys (keys created or revoked by another worker or the CLI)
    key_refresh: float = 5.0


@dataclass(slots=True)
class UsageConfig:
    flush_interval: float = 1.0
    batch_size: int = 500
    #: records the database could not take at shutdown are appended here, and imported at the next start
    spill_path: str = "modelway-usage-spill.jsonl"
    #: every record is appended to a journal file before its request's answer completes, so a killed process
    #: loses none (the next start imports what was not stored); in ``journal_dir``, by default a directory
    #: ``modelway-usage-journal`` beside the spill file
    journal: bool = True
    journal_dir: str | None = None
    #: days the raw usage records are kept (older ones are deleted by the ledger's writer, in small batches); the
    #: hourly and daily aggregates, which totals, charts and budgets are read from, are kept; 0 keeps them forever
    retention_days: float = 90.0

    #: the currency of prices, costs and budgets (a label: no conversion is made)
    currency: str = "USD"

    @property
    def journal_path(self) -> str | None:
        """Where the journal is written; ``None`` when it is off."""
        if not self.journal:
            return None
        return self.journal_dir or os.path.join(os.path.dirname(self.spill_path), "modelway-usage-journal")


@dataclass(slots=True)
class MetricsConfig:
    enabled: bool = True
    #: ``/metrics`` answers without a key (Prometheus scrapers); false: it needs the master key
    public: bool = True


#: the largest ``request_log.max_body_bytes``
MAX_LOGGED_BODY = 1024 * 1024


@dataclass(slots=True)
class RequestLogConfig:
    """One line per request (:mod:`modelway.server.request_log`); off by default: the usage ledger keeps the same
    facts, and a line costs a few microseconds of every request."""

    enabled: bool = False
    #: ``json`` (one object a line) or ``text`` (``key=value`` pairs)
    format: str = "json"
    #: append to this file; ``None``: standard error (beside the other logs)
    path: str | None = None
    #: also keep the request's body and a whole answer's body (secret-looking fields redacted), cut at
    #: ``max_body_bytes``: in the log lines (when ``enabled``) and with the usage records (the console's request log
    #: shows them); a stream's answer is not kept
    bodies: bool = False
    #: at most :data:`MAX_LOGGED_BODY`
    max_body_bytes: int = 4096
    #: leave out requests to /health*, /metrics and /openapi.json that were answered (probes and scrapers)
    skip_probes: bool = True


@dataclass(slots=True)
class TracingConfig:
    """OpenTelemetry traces over OTLP/HTTP (``pip install 'modelway[otel]'``: :mod:`modelway.tracing`)."""

    #: ``None``: on when an endpoint is known (here or ``OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT``); false: off
    enabled: bool | None = None
    #: the collector's OTLP/HTTP base URL (``/v1/traces`` is added) or its traces URL ending in ``/v1/traces``
    endpoint: str | None = None
    #: ``service.name`` of the spans (default ``OTEL_SERVICE_NAME``, else ``modelway``)
    service_name: str | None = None
    #: headers sent to the collector (an API key of a tracing service)
    headers: dict[str, str] = field(default_factory=dict)
    #: share of new traces recorded (a caller's sampled ``traceparent`` decides for its own)
    sample_ratio: float = 1.0


@dataclass(slots=True)
class ResponsesConfig:
    """What ``/v1/responses`` keeps (``store: true``): in the SQL store when one is configured, else in memory."""

    #: days a stored response can be retrieved or continued (``previous_response_id``); older ones are deleted
    retention_days: float = 30.0
    #: the largest stored response (its input, output and body as JSON); a larger one is answered but not kept
    max_stored_bytes: int = 4 * 1024 * 1024
    #: responses kept in memory when no SQL store is configured (least recently used dropped first)
    memory_max_items: int = 1000


@dataclass(slots=True)
class ClusterConfig:
    """The gateway as the controller of FastChat / DB-GPT model workers (see :mod:`modelway.cluster.controller`)."""

    #: serve FastChat's controller endpoints and DB-GPT's /api/controller/* (registered workers become deployments)
    controller: bool = False
    #: the controller's endpoints live under this path (a secret part of the address workers are given)
    path_prefix: str = ""
    #: only workers from these networks may call the controller (CIDRs; loopback by default)
    allowed_networks: list[str] = field(default_factory=lambda: ["127.0.0.0/8", "::1/128"])
    #: seconds without a heartbeat after which a worker leaves rotation (FastChat's default)
    heartbeat_expiration: float = 90.0
    #: FastChat's /get_worker_address: shortest_queue or lottery
    dispatch: str = "shortest_queue"
    #: at most this many registered workers (new ones are refused beyond it), and model names per worker
    max_workers: int = 256
    max_models_per_worker: int = 32


@dataclass(slots=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    models: list[ModelConfig] = field(default_factory=list)
    #: per-provider credentials and options: ``{"zhipu": {"api_key": ..., "auth": "jwt"}}``
    providers: dict[str, dict[str, Any]] = field(default_factory=dict)
    store: StoreConfig = field(default_factory=StoreConfig)
    usage: UsageConfig = field(default_factory=UsageConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    request_log: RequestLogConfig = field(default_factory=RequestLogConfig)
    tracing: TracingConfig = field(default_factory=TracingConfig)
    responses: ResponsesConfig = field(default_factory=ResponsesConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    #: prices of ``provider/model`` names not priced in ``models`` (direct calls)
    prices: dict[str, Price] = field(default_factory=dict)

    @property
    def control_plane(self) -> bool:
        """Virtual keys, limits and the usage ledger are on (a store is configured)."""
        return self.store.url is not None


def _expand(value: Any, where: str, env: EnvReader) -> Any:
    """``value`` with its ``${VAR}`` references replaced: VAR, else the file VAR_FILE names (a mounted secret)."""
    if isinstance(value, str):

        def sub(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            found = env.get(name)
            if found is not None:
                return found
            if default is not None:
                return default
            raise ConfigError(
                f"{where}: environment variable {name} is not set (referenced as ${{{name}}}; "
                f"or set {name}{FILE_SUFFIX} to a file holding it)"
            )

        return _ENV_REF.sub(sub, value)
    if isinstance(value, dict):
        return {k: _expand(v, f"{where}.{k}", env) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, f"{where}[{i}]", env) for i, v in enumerate(value)]
    return value


def _take(d: dict[str, Any], where: str, allowed: set[str]) -> None:
    unknown = sorted(set(d) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown field {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})")


def _num(d: dict[str, Any], key: str, where: str, *, positive: bool = True, integer: bool = False) -> Any:
    v = d[key]
    ok = isinstance(v, int) if integer else isinstance(v, int | float)
    if isinstance(v, bool) or not ok or (positive and v <= 0) or (not positive and v < 0):
        kind = "integer" if integer else "number"
        raise ConfigError(f"{where}.{key}: must be a {'positive ' if positive else 'non-negative '}{kind} (got {v!r})")
    return v


def _str(d: dict[str, Any], key: str, where: str) -> str:
    v = d[key]
    if not isinstance(v, str) or not v:
        raise ConfigError(f"{where}.{key}: must be a non-empty string (got {v!r})")
    return v


def _dict(d: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    v = d.get(key)
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise ConfigError(f"{where}.{key}: must be a mapping (got {type(v).__name__})")
    return v


def _headers(d: dict[str, Any], where: str) -> dict[str, str]:
    """``d["headers"]``: names to text (a number is taken as it reads; a list, a mapping, a boolean or nothing is
    refused, without quoting it: a header's value is often a secret)."""
    out = {}
    for k, v in _dict(d, "headers", where).items():
        if isinstance(v, bool) or not isinstance(v, str | int | float):
            raise ConfigError(f"{where}.headers.{k}: must be text (got {type(v).__name__}; quote it)")
        out[str(k)] = str(v)
    return out


def _bool(d: dict[str, Any], key: str, where: str) -> bool:
    v = d[key]
    if not isinstance(v, bool):
        raise ConfigError(f"{where}.{key}: must be true or false (got {v!r})")
    return v


def _price(v: Any, where: str) -> Price:
    if not isinstance(v, dict):
        raise ConfigError(f"{where}: must be a mapping with input and output (per million tokens)")
    _take(v, where, {"input", "output"})
    return Price(
        input=float(_num(v, "input", where, positive=False)) if "input" in v else 0.0,
        output=float(_num(v, "output", where, positive=False)) if "output" in v else 0.0,
    )


def _deployment(d: Any, where: str) -> DeploymentConfig:
    if isinstance(d, str):
        d = {"model": d}
    if not isinstance(d, dict):
        raise ConfigError(f"{where}: must be a mapping with at least 'model'")
    fields = {"model", "api_key", "api_base", "base_url", "weight", "timeout", "params", "options", "headers", "price"}
    _take(d, where, fields | {"tier", "quota", "disabled"})
    if "model" not in d:
        raise ConfigError(f"{where}.model: required (provider/model, e.g. zhipu/glm-4-flash)")
    model = _str(d, "model", where)
    provider, sep, name = model.partition("/")
    from .providers import PROVIDERS

    if provider == "demo" and name:  # a local simulator (modelway.testing.demo): its options are fault modes
        _demo_deployment(d, model, where)
    elif not sep or not name or provider not in PROVIDERS:
        raise ConfigError(
            f"{where}.model: {model!r} is not provider/model with a known provider ({', '.join(sorted(PROVIDERS))}), "
            "nor a demo model (demo/glm-4-flash, ...)"
        )
    dep = DeploymentConfig(model=model)
    if d.get("api_key"):  # empty means "use the provider's key"
        dep.api_key = _str(d, "api_key", where)
    base = d.get("api_base", d.get("base_url"))
    if base is not None:
        if not isinstance(base, str) or not base.startswith(("http://", "https://")):
            raise ConfigError(f"{where}.api_base: must be an http(s) URL (got {base!r})")
        dep.api_base = base
    if "weight" in d:
        dep.weight = float(_num(d, "weight", where))
    if "timeout" in d:
        dep.timeout = float(_num(d, "timeout", where))
    dep.params = _dict(d, "params", where)
    dep.options = _dict(d, "options", where)
    dep.headers = _headers(d, where)
    if d.get("price") is not None:
        dep.price = _price(d["price"], f"{where}.price")
    from .config_routing import parse_deployment_routing

    dep.tier, dep.quota, dep.disabled = parse_deployment_routing(d, where)
    return dep


def _demo_deployment(d: dict[str, Any], model: str, where: str) -> None:
    from .testing.demo import check_demo_deployment

    for key in ("api_key", "api_base", "base_url"):
        if d.get(key):
            raise ConfigError(f"{where}.{key}: a demo deployment answers from a local simulator, it takes no {key}")
    try:
        check_demo_deployment(model, _dict(d, "options", where))
    except ValueError as exc:  # "options.<name>: ..." names its option; anything else is about the model
        message = str(exc)
        raise ConfigError(
            f"{where}.{message}" if message.startswith("options.") else f"{where}.model: {message}"
        ) from None


def _model(m: Any, where: str, routing: dict[str, Any]) -> ModelConfig:
    if not isinstance(m, dict):
        raise ConfigError(f"{where}: must be a mapping with 'name' and 'deployments'")
    _take(m, where, {"name", "deployments", "system_prompt", "merge_system", "description", "price", "routing"})
    for key in ("name", "deployments"):
        if key not in m:
            raise ConfigError(f"{where}.{key}: required")
    name = _str(m, "name", where)
    deps = m["deployments"]
    if isinstance(deps, str | dict):
        deps = [deps]
    if not isinstance(deps, list) or not deps:
        raise ConfigError(f"{where}.deployments: must be a non-empty list")
    sp = m.get("system_prompt")
    if sp is not None and not isinstance(sp, str):
        raise ConfigError(f"{where}.system_prompt: must be a string")
    ms = m.get("merge_system", False)
    if not isinstance(ms, bool):
        raise ConfigError(f"{where}.merge_system: must be true or false")
    return ModelConfig(
        name=name,
        deployments=[_deployment(d, f"{where}.deployments[{i}]") for i, d in enumerate(deps)],
        system_prompt=sp,
        merge_system=ms,
        description=m.get("description"),
        price=_price(m["price"], f"{where}.price") if m.get("price") is not None else None,
        routing=_routing(routing, m.get("routing"), f"{where}.routing"),
    )


def _routing(defaults: dict[str, Any], own: Any, where: str) -> RoutingPolicy | None:
    from .config_routing import merged, parse_routing

    if own is not None and not isinstance(own, dict):
        raise ConfigError(f"{where}: must be a mapping (strategy, max_attempts, timeout, fallbacks, circuit, hedge)")
    spec = merged(defaults, own or {})
    return parse_routing(spec, where) if spec else None


def _server(s: dict[str, Any]) -> ServerConfig:
    where = "server"
    _take(s, where, set(ServerConfig.__slots__))
    cfg = ServerConfig()
    if "host" in s:
        cfg.host = _str(s, "host", where)
    if "port" in s:
        cfg.port = int(_num(s, "port", where, integer=True))
    if s.get("master_key"):  # an empty value (e.g. an unset ${VAR:-}) means no key
        cfg.master_key = _str(s, "master_key", where)
    for name in (
        "max_body_bytes",
        "max_header_bytes",
        "max_headers",
        "max_answer_bytes",
        "max_event_bytes",
        "backlog",
        "upstream_connections",
    ):
        if name in s:
            setattr(cfg, name, int(_num(s, name, where, integer=True)))
    for name in ("header_timeout", "body_timeout", "shutdown_timeout"):
        if name in s:
            setattr(cfg, name, float(_num(s, name, where)))
    if "timeout" in s:
        cfg.timeout = float(_num(s, "timeout", where))
    if "max_retries" in s:
        cfg.max_retries = int(_num(s, "max_retries", where, positive=False, integer=True))
    if "cooldown" in s:
        cfg.cooldown = float(_num(s, "cooldown", where, positive=False))
    if "allow_direct" in s:
        if not isinstance(s["allow_direct"], bool):
            raise ConfigError(f"{where}.allow_direct: must be true or false")
        cfg.allow_direct = s["allow_direct"]
    if "log_level" in s:
        cfg.log_level = _str(s, "log_level", where).lower()
    if "http" in s:
        cfg.http = _str(s, "http", where).lower()
        if cfg.http not in ("modelway", "uvicorn"):
            raise ConfigError(f"{where}.http: must be modelway or uvicorn, not {s['http']!r}")
    if s.get("cors_origins") is not None:
        cfg.cors_origins = _origins(s["cors_origins"], f"{where}.cors_origins")
    return cfg


def _origins(v: Any, where: str) -> list[str]:
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list) or not all(isinstance(o, str) and o for o in v):
        raise ConfigError(f"{where}: must be a list of origins such as https://app.example.com, or ['*']")
    out = []
    for o in v:
        o = o.rstrip("/")
        if o != "*" and not re.fullmatch(r"https?://[^/\s?#]+", o):
            raise ConfigError(f"{where}: {o!r} is not an origin (scheme://host[:port], no path) nor '*'")
        out.append(o)
    return out


def _store(s: dict[str, Any]) -> StoreConfig:
    where = "store"
    _take(s, where, set(StoreConfig.__slots__))
    cfg = StoreConfig()
    if s.get("url"):  # empty (an unset ${VAR:-}) means no store
        url = _str(s, "url", where)
        if not url.startswith(("sqlite:", "sqlite+aiosqlite:", "postgresql:", "postgres:", "postgresql+asyncpg:")):
            raise ConfigError(f"{where}.url: must be sqlite:///path.db or postgresql://user@host/db (got {url!r})")
        cfg.url = url
    if s.get("redis_url"):
        from .limits.redis_url import parse_redis_url, redact_url

        url = _str(s, "redis_url", where)
        try:
            parse_redis_url(url)  # the TLS files too: read again when the clients are made, at start
        except ValueError as exc:
            raise ConfigError(f"{where}.redis_url: {exc} (in {redact_url(url)})") from None
        cfg.redis_url = url
    if "key_refresh" in s:
        cfg.key_refresh = float(_num(s, "key_refresh", where))
    return cfg


def _usage(s: dict[str, Any]) -> UsageConfig:
    where = "usage"
    _take(s, where, set(UsageConfig.__slots__))
    cfg = UsageConfig()
    if "flush_interval" in s:
        cfg.flush_interval = float(_num(s, "flush_interval", where))
    if "batch_size" in s:
        cfg.batch_size = int(_num(s, "batch_size", where, integer=True))
    if "spill_path" in s:
        cfg.spill_path = _str(s, "spill_path", where)
    if "journal" in s:
        cfg.journal = _bool(s, "journal", where)
    if "journal_dir" in s:
        cfg.journal_dir = _str(s, "journal_dir", where)
    if "currency" in s:
        cfg.currency = _str(s, "currency", where)
    if "retention_days" in s:
        days = float(_num(s, "retention_days", where, positive=False))
        # a record replayed from a dead process's journal is recognised as stored by its row: that row must still be
        # there, and a replay happens at the next start, well within a day
        if 0 < days < 1:
            raise ConfigError(
                f"{where}.retention_days: must be 0 (keep the records forever) or at least 1 (got {days:g})"
            )
        cfg.retention_days = days
    return cfg


def _metrics(s: dict[str, Any]) -> MetricsConfig:
    where = "metrics"
    _take(s, where, set(MetricsConfig.__slots__))
    cfg = MetricsConfig()
    if "enabled" in s:
        cfg.enabled = _bool(s, "enabled", where)
    if "public" in s:
        cfg.public = _bool(s, "public", where)
    return cfg


def _request_log(s: dict[str, Any]) -> RequestLogConfig:
    where = "request_log"
    _take(s, where, set(RequestLogConfig.__slots__))
    cfg = RequestLogConfig()
    for name in ("enabled", "bodies", "skip_probes"):
        if name in s:
            setattr(cfg, name, _bool(s, name, where))
    if "format" in s:
        cfg.format = _str(s, "format", where).lower()
        if cfg.format not in ("json", "text"):
            raise ConfigError(f"{where}.format: must be json or text (got {s['format']!r})")
    if s.get("path"):
        cfg.path = _str(s, "path", where)
    if "max_body_bytes" in s:
        cfg.max_body_bytes = int(_num(s, "max_body_bytes", where, integer=True))
        if cfg.max_body_bytes > MAX_LOGGED_BODY:
            raise ConfigError(
                f"{where}.max_body_bytes: at most {MAX_LOGGED_BODY} (a body is kept in the log line and with the usage "
                f"record; got {cfg.max_body_bytes})"
            )
    return cfg


def _tracing(s: dict[str, Any]) -> TracingConfig:
    where = "tracing"
    _take(s, where, set(TracingConfig.__slots__))
    cfg = TracingConfig()
    if s.get("enabled") is not None:
        cfg.enabled = _bool(s, "enabled", where)
    if s.get("endpoint"):  # empty (an unset ${VAR:-}) means the environment's, if any
        url = _str(s, "endpoint", where)
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"{where}.endpoint: must be an http(s) URL of an OTLP/HTTP collector (got {url!r})")
        cfg.endpoint = url
    if s.get("service_name"):
        cfg.service_name = _str(s, "service_name", where)
    cfg.headers = _headers(s, where)
    if "sample_ratio" in s:
        ratio = _num(s, "sample_ratio", where, positive=False)
        if ratio > 1:
            raise ConfigError(f"{where}.sample_ratio: must be between 0 and 1 (got {ratio!r})")
        cfg.sample_ratio = float(ratio)
    return cfg


def _responses(s: dict[str, Any]) -> ResponsesConfig:
    where = "responses"
    _take(s, where, set(ResponsesConfig.__slots__))
    cfg = ResponsesConfig()
    if "retention_days" in s:
        cfg.retention_days = float(_num(s, "retention_days", where))
    for name in ("max_stored_bytes", "memory_max_items"):
        if name in s:
            setattr(cfg, name, int(_num(s, name, where, integer=True)))
    return cfg


def _cluster(s: dict[str, Any]) -> ClusterConfig:
    import ipaddress

    where = "cluster"
    _take(s, where, set(ClusterConfig.__slots__))
    cfg = ClusterConfig()
    if "controller" in s:
        cfg.controller = _bool(s, "controller", where)
    if s.get("path_prefix"):
        prefix = _str(s, "path_prefix", where).rstrip("/")
        if not re.fullmatch(r"(/[A-Za-z0-9._~-]+)+", prefix):
            raise ConfigError(f"{where}.path_prefix: must be a path such as /cluster-<secret> (got {prefix!r})")
        cfg.path_prefix = prefix
    if "allowed_networks" in s:
        nets = s["allowed_networks"]
        if not isinstance(nets, list) or not all(isinstance(n, str) for n in nets):
            raise ConfigError(f"{where}.allowed_networks: must be a list of CIDRs such as 10.0.0.0/8")
        for n in nets:
            try:
                ipaddress.ip_network(n, strict=False)
            except ValueError:
                raise ConfigError(f"{where}.allowed_networks: {n!r} is not a network (CIDR)") from None
        cfg.allowed_networks = list(nets)
    if "heartbeat_expiration" in s:
        cfg.heartbeat_expiration = float(_num(s, "heartbeat_expiration", where))
    if "dispatch" in s:
        cfg.dispatch = _str(s, "dispatch", where)
        if cfg.dispatch not in ("shortest_queue", "lottery"):
            raise ConfigError(f"{where}.dispatch: must be shortest_queue or lottery (got {cfg.dispatch!r})")
    for name in ("max_workers", "max_models_per_worker"):
        if name in s:
            setattr(cfg, name, int(_num(s, name, where, integer=True)))
    return cfg


#: the config document's sections, each parsed by its own function below (or in :func:`_parse`)
_SECTIONS = frozenset(
    {
        *("server", "models", "providers", "store", "usage", "metrics", "prices", "responses", "cluster"),
        *("routing", "request_log", "tracing"),
    }
)


def _top(data: Any) -> dict[str, Any]:
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError("config: the top level must be a mapping (server, models, providers, store, ...)")
    return data


def parse_config(data: Any, env: Mapping[str, str] | None = None) -> Config:
    """Validate a decoded config document (``${VAR}`` references are expanded from ``env``; a ``VAR_FILE`` there
    names a file holding VAR). The ``MODELWAY_*`` variables are not read here: :func:`load_config` reads them."""
    reader = EnvReader(os.environ if env is None else env)
    try:
        return _parse(_expand(_top(data), "config", reader))
    except ConfigError as exc:
        raise ConfigError(reader.redact(exc.message)) from None


def _parse(data: dict[str, Any]) -> Config:
    """The config of a document whose references are expanded."""
    _take(data, "config", set(_SECTIONS))
    cfg = Config()
    cfg.server = _server(_dict(data, "server", "config"))
    cfg.store = _store(_dict(data, "store", "config"))
    cfg.usage = _usage(_dict(data, "usage", "config"))
    cfg.metrics = _metrics(_dict(data, "metrics", "config"))
    cfg.request_log = _request_log(_dict(data, "request_log", "config"))
    cfg.tracing = _tracing(_dict(data, "tracing", "config"))
    cfg.responses = _responses(_dict(data, "responses", "config"))
    cfg.cluster = _cluster(_dict(data, "cluster", "config"))
    cfg.prices = {str(k): _price(v, f"prices.{k}") for k, v in _dict(data, "prices", "config").items()}
    if not cfg.metrics.public and cfg.metrics.enabled and cfg.server.master_key is None:
        raise ConfigError("metrics.public: false needs server.master_key (/metrics would answer no one)")
    models = data.get("models") or []
    if not isinstance(models, list):
        raise ConfigError("models: must be a list")
    routing = _dict(data, "routing", "config")
    if routing:
        _routing({}, routing, "routing")  # checked once, named as written
    cfg.models = [_model(m, f"models[{i}]", routing) for i, m in enumerate(models)]
    routing_own = [(m.get("routing") or {}) if isinstance(m, dict) else {} for m in models]
    seen: set[str] = set()
    for i, m in enumerate(cfg.models):
        if m.name in seen:
            raise ConfigError(f"models[{i}].name: {m.name!r} is defined twice")
        seen.add(m.name)
    from .config_routing import check_fallbacks

    check_fallbacks(cfg.models, routing_own, seen, allow_direct=cfg.server.allow_direct)
    providers = _dict(data, "providers", "config")
    from .providers import PROVIDERS

    for name, p in providers.items():
        if name not in PROVIDERS:
            raise ConfigError(f"providers.{name}: unknown provider (known: {', '.join(sorted(PROVIDERS))})")
        if not isinstance(p, dict):
            raise ConfigError(f"providers.{name}: must be a mapping (api_key, base_url, options)")
    cfg.providers = providers
    return cfg


def load_config(path: str | os.PathLike[str] | None, env: Mapping[str, str] | None = None) -> Config:
    """Read and validate a YAML config file (``None``: the embedded defaults), with the ``MODELWAY_*`` variables of
    ``env`` (default: the process's) written over it (:mod:`modelway.config_env`)."""
    return load_config_explained(path, env)[0]


def load_config_explained(
    path: str | os.PathLike[str] | None, env: Mapping[str, str] | None = None
) -> tuple[Config, dict[str, str]]:
    """:func:`load_config`, and the settings the environment gave: ``{"server.port": "MODELWAY_SERVER__PORT"}``."""
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read config file {str(p)!r}: {exc.strerror}") from None
        try:
            data = _top(yaml.safe_load(text))
        except yaml.YAMLError as exc:
            raise ConfigError(f"{p}: invalid YAML: {exc}") from None
    reader = EnvReader(os.environ if env is None else env)
    overrides = read_overrides(reader, env_sections(), referenced=_references(data))
    kept = overrides.without(data)  # what the environment replaces goes before ${VAR} expansion
    try:
        cfg = _parse(overrides.apply(_expand(kept, "config", reader)))  # (the environment's values are not expanded)
    except ConfigError as exc:
        raise overrides.explain(exc, reader) from None
    if path is not None:
        usage = kept.get("usage")
        store = kept.get("store")
        _resolve_paths(
            cfg,
            Path(path).absolute().parent,
            set(usage) if isinstance(usage, dict) else set(),
            store_url=isinstance(store, dict) and "url" in store,
        )
    return cfg, overrides.sources


def env_sections() -> Sections:
    """The settings the ``MODELWAY_*`` variables may give: every field of every section, and the sections that are
    lists or free mappings (models, providers, prices) as whole documents."""
    from .config_routing import ROUTING_FIELDS

    sections: dict[str, dict[str, Kind] | None] = {
        name: kinds_of(cls)
        for name, cls in (
            ("server", ServerConfig),
            ("store", StoreConfig),
            ("usage", UsageConfig),
            ("metrics", MetricsConfig),
            ("request_log", RequestLogConfig),
            ("tracing", TracingConfig),
            ("responses", ResponsesConfig),
            ("cluster", ClusterConfig),
        )
    }
    sections["routing"] = {name: "list" if name.endswith("fallbacks") else "yaml" for name in ROUTING_FIELDS}
    sections.update(models=None, providers=None, prices=None)
    return sections


def _references(value: Any) -> set[str]:
    """The variables a document refers to as ``${NAME}``."""
    if isinstance(value, str):
        return {m.group(1) for m in _ENV_REF.finditer(value)}
    if isinstance(value, dict):
        return set().union(*(_references(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(_references(v) for v in value))
    return set()


_SQLITE_URL = re.compile(r"(sqlite(?:\+aiosqlite)?:///)([^?]*)(\?.*)?", re.DOTALL)


def _against(path: str, base: Path) -> str:
    return path if os.path.isabs(path) else str(base / path)


def _resolve_paths(cfg: Config, base: Path, usage_given: set[str], *, store_url: bool = True) -> None:
    """Relative paths written in a config file are relative to its directory (``base``), not to the working
    directory: a SQLite ``store.url`` (unless the environment gave it: ``store_url`` false), and ``usage.spill_path``
    and ``usage.journal_dir`` when the file sets them (their defaults, and values from the environment, stay relative
    to the working directory). A file left where an older modelway put it, in the working directory, is named in a
    warning."""
    old_spill, old_journal = os.path.abspath(cfg.usage.spill_path), cfg.usage.journal_path
    m = _SQLITE_URL.fullmatch(cfg.store.url or "") if store_url else None
    if m is not None and m.group(2) not in ("", ":memory:") and not os.path.isabs(m.group(2)):
        cfg.store.url = f"{m.group(1)}{base / m.group(2)}{m.group(3) or ''}"
        _moved("store.url", os.path.abspath(m.group(2)), str(base / m.group(2)))
    if "spill_path" in usage_given:
        cfg.usage.spill_path = _against(cfg.usage.spill_path, base)
        _moved("usage.spill_path", old_spill, cfg.usage.spill_path)
    if "journal_dir" in usage_given and cfg.usage.journal_dir is not None:
        cfg.usage.journal_dir = _against(cfg.usage.journal_dir, base)
    if old_journal is not None and cfg.usage.journal_path is not None:
        _moved("the usage journal", os.path.abspath(old_journal), os.path.abspath(cfg.usage.journal_path))


def _moved(what: str, old: str, new: str) -> None:
    if old != new and os.path.exists(old) and not os.path.exists(new):
        log.warning(
            "%s: %s is relative to the config file's directory (%s), not to the working directory; %s exists "
            "(an older modelway used it): move it there, or write an absolute path",
            what,
            os.path.basename(new),
            os.path.dirname(new),
            old,
        )
