"""The routing part of the config: ``routing:`` (defaults for every model, and per model) and the deployments'
``tier``, ``quota`` and ``disabled``. Errors name the field, as in :mod:`modelway.config`.

```yaml
routing:                         # defaults for every model; a model's own routing: overrides them key by key
  strategy: weighted             # weighted | least_busy | latency | cost | priority
  max_attempts: 3                # upstream requests per call, over every deployment (default: each one once)
  timeout: 60                    # seconds for the whole call, retries and waits included
  circuit: true                  # or a mapping: failures, error_rate, min_requests, window, cooldown, ...
models:
  - name: chat
    routing:
      fallbacks: [chat-backup]
      context_window_fallbacks: [chat-long]
      hedge: {after: p95, default: 2.0}
    deployments:
      - model: zhipu/glm-4-flash
        tier: 0
        quota: {max_concurrent: 20, rpm: 600, tpm: 200000}
      - model: dashscope/qwen-plus
        tier: 1
        disabled: false
```
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import fields
from typing import TYPE_CHECKING, Any

from .errors import ConfigError
from .router.policy import CircuitSettings, HedgeSettings, Quota, RoutingPolicy
from .router.strategies import STRATEGIES

if TYPE_CHECKING:
    from .config import ModelConfig

__all__ = ["ROUTING_FIELDS", "check_fallbacks", "parse_deployment_routing", "parse_routing"]

_LISTS = ("fallbacks", "context_window_fallbacks", "content_filter_fallbacks")
_INTS = ("max_attempts", "queue_depth", "typical_prompt_tokens", "typical_completion_tokens")
_FLOATS = ("timeout", "queue_wait")
ROUTING_FIELDS = frozenset({"strategy", "circuit", "hedge", *_LISTS, *_INTS, *_FLOATS})


def _fail(where: str, message: str) -> ConfigError:
    return ConfigError(f"{where}: {message}")


def _number(v: Any, where: str, *, integer: bool = False, minimum: float = 0.0) -> Any:
    ok = isinstance(v, int) if integer else isinstance(v, int | float)
    if isinstance(v, bool) or not ok or not math.isfinite(v) or v < minimum:
        kind = "an integer" if integer else "a finite number"
        raise _fail(where, f"must be {kind} of at least {minimum:g} (got {v!r})")
    return v


def _settings(cls: type[Any], v: Any, where: str) -> Any:
    """A settings dataclass from a mapping of its fields (``true``: its defaults)."""
    if v is True:
        return cls()
    if not isinstance(v, dict):
        raise _fail(where, "must be true or a mapping")
    known = {f.name for f in fields(cls)}
    for key in v:
        if key not in known:
            raise _fail(f"{where}.{key}", f"unknown field (allowed: {', '.join(sorted(known))})")
    try:
        return cls(**v)
    except (TypeError, ValueError) as exc:
        raise _fail(where, str(exc)) from None


def merged(defaults: dict[str, Any], own: dict[str, Any]) -> dict[str, Any]:
    """A model's routing over the top-level defaults, key by key (``null`` turns a default off)."""
    return {**defaults, **own}


def parse_routing(v: Any, where: str) -> RoutingPolicy:
    """A :class:`~modelway.router.policy.RoutingPolicy` from a ``routing:`` mapping."""
    if v is None:
        return RoutingPolicy()
    if not isinstance(v, dict):
        raise _fail(where, "must be a mapping (strategy, max_attempts, timeout, fallbacks, circuit, hedge, ...)")
    for key in v:
        if key not in ROUTING_FIELDS:
            raise _fail(f"{where}.{key}", f"unknown field (allowed: {', '.join(sorted(ROUTING_FIELDS))})")
    out: dict[str, Any] = {}
    strategy = v.get("strategy")
    if strategy is not None:
        if strategy not in STRATEGIES:
            raise _fail(f"{where}.strategy", f"unknown strategy {strategy!r} (known: {', '.join(sorted(STRATEGIES))})")
        out["strategy"] = strategy
    for key in _LISTS:
        names = v.get(key)
        if names is None:
            continue
        if isinstance(names, str):
            names = [names]
        if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
            raise _fail(f"{where}.{key}", "must be a list of model names")
        out[key] = tuple(names)
    for key in _INTS:
        if v.get(key) is not None:
            out[key] = _number(v[key], f"{where}.{key}", integer=True, minimum=1 if key != "queue_depth" else 0)
    for key in _FLOATS:
        if v.get(key) is not None:
            out[key] = float(_number(v[key], f"{where}.{key}"))
    circuit = v.get("circuit")
    if circuit is not None and circuit is not False:
        out["circuit"] = _settings(CircuitSettings, circuit, f"{where}.circuit")
    hedge = v.get("hedge")
    if hedge is not None and hedge is not False:
        if isinstance(hedge, int | float | str) and not isinstance(hedge, bool):
            hedge = {"after": hedge}
        out["hedge"] = _settings(HedgeSettings, hedge, f"{where}.hedge")
    try:
        return RoutingPolicy(**out)
    except ValueError as exc:
        raise _fail(where, str(exc)) from None


def parse_deployment_routing(d: dict[str, Any], where: str) -> tuple[int, Quota | None, bool]:
    """A deployment's ``tier`` (0 first), ``quota`` and ``disabled``."""
    tier = 0
    if d.get("tier") is not None:
        tier = _number(d["tier"], f"{where}.tier", integer=True)
    quota = None
    q = d.get("quota")
    if q is not None:
        if not isinstance(q, dict):
            raise _fail(f"{where}.quota", "must be a mapping (max_concurrent, rpm, tpm)")
        for key, value in q.items():
            if key not in ("max_concurrent", "rpm", "tpm"):
                raise _fail(f"{where}.quota.{key}", "unknown field (allowed: max_concurrent, rpm, tpm)")
            if value is not None:
                _number(value, f"{where}.quota.{key}", integer=True, minimum=1)
        quota = Quota(**q)
    disabled = d.get("disabled", False)
    if not isinstance(disabled, bool):
        raise _fail(f"{where}.disabled", f"must be true or false (got {disabled!r})")
    return tier, quota, disabled


def check_fallbacks(
    models: list[ModelConfig], routing_own: list[dict[str, Any]], seen: set[str], *, allow_direct: bool
) -> None:
    """Every fallback names a model of this config or a ``provider/model`` that can be called directly; a list
    inherited from the top-level ``routing:`` drops the model itself (named as written: the model's, or the top's)."""
    from .providers import PROVIDERS

    for i, m in enumerate(models):  # fallbacks name models of this config (or provider/model, called directly)
        r = m.routing
        if r is None:
            continue
        lists: dict[str, Any] = {}
        for key in ("fallbacks", "context_window_fallbacks", "content_filter_fallbacks"):
            names = getattr(r, key)
            own = routing_own[i].get(key) is not None
            if m.name in names and not own:  # inherited from the top-level defaults: not to itself
                names = tuple(n for n in names if n != m.name)
                lists[key] = names
            for name in names:
                where = f"models[{i}].routing.{key}" if own else f"routing.{key}"
                if name == m.name:
                    raise ConfigError(f"{where}: a model cannot fall back to itself")
                if name in seen:
                    continue
                provider, slash, rest = name.partition("/")
                if not slash or not rest:
                    raise ConfigError(f"{where}: {name!r} is not a model of this config")
                if provider not in PROVIDERS:
                    raise ConfigError(f"{where}: {name!r} names an unknown provider {provider!r}")
                if not allow_direct:
                    raise ConfigError(f"{where}: {name!r} is called directly, but server.allow_direct is false")
        if lists:
            m.routing = dataclasses.replace(r, **lists)
