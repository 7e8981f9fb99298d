"""Deployments and aliases changed at run time, without I/O: the definitions (the YAML config with the store's
changes laid over it), and the checks of API input, which are the YAML's own parser
(:func:`modelway.config._deployment`, :func:`modelway.config._model`) so that both accept the same fields and name
errors alike. The rows and the rules are described in :mod:`modelway.store.deployments`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from ..config import Config, DeploymentConfig, ModelConfig, _deployment, _model
from ..envfile import env_value
from ..errors import ConfigError, InvalidRequestError
from ..router.policy import RoutingPolicy

__all__ = [
    "AliasDef",
    "Change",
    "ConflictError",
    "DeploymentDef",
    "NotFoundError",
    "Snapshot",
    "alias_spec",
    "build_catalog",
    "check_alias",
    "check_deployment",
    "check_name",
    "config_ids",
    "deployment_spec",
    "find_deployment",
    "lay",
    "mask",
    "patched",
]

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_ALIAS_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@+-]{0,127}")
_ALIAS_FIELDS = ("system_prompt", "merge_system", "description", "price", "routing")
#: fields of a deployment that make its adapter: a change of one of them builds a new upstream (fresh statistics)
ADAPTER_FIELDS = ("model", "api_key", "api_key_env", "api_base", "headers", "options")


class NotFoundError(InvalidRequestError):
    http_status = 404


class ConflictError(InvalidRequestError):
    http_status = 409


# -- rows and definitions -------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Change:
    """One row: a deployment's (``key`` its id, ``model_name`` its alias) or an alias's (``key`` its name)."""

    key: str
    spec: dict[str, Any]
    removed: bool = False
    model_name: str = ""
    created_at: float = 0.0
    updated_at: float = 0.0


@dataclass(slots=True)
class Snapshot:
    version: int
    aliases: list[Change]
    deployments: list[Change]


@dataclass(slots=True)
class DeploymentDef:
    """A deployment as defined now: the YAML's, with the store's change laid over it, or one added by the API."""

    id: str
    model_name: str
    source: str  # config | api
    spec: dict[str, Any]
    removed: bool = False
    changed: bool = False
    updated_at: float | None = None

    @property
    def state(self) -> str:
        return "removed" if self.removed else "disabled" if self.spec.get("disabled") else "active"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "model_name": self.model_name,
            "source": self.source,
            "state": self.state,
            "changed": self.changed,
            "updated_at": self.updated_at,
            "spec": mask(self.spec),
        }


@dataclass(slots=True)
class AliasDef:
    name: str
    source: str  # config | api
    spec: dict[str, Any]
    removed: bool = False
    changed: bool = False
    updated_at: float | None = None
    deployments: list[DeploymentDef] = field(default_factory=list)

    def active(self) -> list[DeploymentDef]:
        """The deployments in rotation (disabled ones included: the router skips them): none if the alias is gone."""
        return [] if self.removed else [d for d in self.deployments if not d.removed]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "state": "removed" if self.removed else "active",
            "changed": self.changed,
            "updated_at": self.updated_at,
            "spec": dict(self.spec),
            "deployments": [d.to_dict() for d in self.deployments],
        }


def mask(spec: dict[str, Any]) -> dict[str, Any]:
    """``spec`` fit to show: the key masked (its last 4 characters kept when it is long), header values too."""
    out = dict(spec)
    key = out.get("api_key")
    if isinstance(key, str) and key:
        out["api_key"] = "****" + key[-4:] if len(key) >= 16 else "****"
    if isinstance(out.get("headers"), dict):
        out["headers"] = {k: "****" for k in out["headers"]}
    return out


# -- the config as specs, and the checks (the YAML's parser) --------------------------------------------------------


def deployment_spec(d: DeploymentConfig) -> dict[str, Any]:
    """A configured deployment in the YAML's shape (what :func:`modelway.config._deployment` reads back)."""
    out: dict[str, Any] = {"model": d.model}
    if d.api_key:
        out["api_key"] = d.api_key
    if d.api_base:
        out["api_base"] = d.api_base
    if d.weight != 1.0:
        out["weight"] = d.weight
    if d.timeout is not None:
        out["timeout"] = d.timeout
    for name in ("params", "options", "headers"):
        if getattr(d, name):
            out[name] = dict(getattr(d, name))
    if d.price is not None:
        out["price"] = asdict(d.price)
    if d.tier:
        out["tier"] = d.tier
    if d.quota is not None:
        out["quota"] = {k: v for k, v in asdict(d.quota).items() if v is not None}
    if d.disabled:
        out["disabled"] = True
    return out


def _routing_spec(p: RoutingPolicy) -> dict[str, Any]:
    default = RoutingPolicy()
    out: dict[str, Any] = {}
    for f in fields(p):
        v = getattr(p, f.name)
        if v == getattr(default, f.name):
            continue
        out[f.name] = list(v) if isinstance(v, tuple) else asdict(v) if hasattr(v, "__dataclass_fields__") else v
    return out


def alias_spec(m: ModelConfig) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if m.system_prompt is not None:
        out["system_prompt"] = m.system_prompt
    if m.merge_system:
        out["merge_system"] = True
    if m.description is not None:
        out["description"] = m.description
    if m.price is not None:
        out["price"] = asdict(m.price)
    if m.routing is not None:
        out["routing"] = _routing_spec(m.routing)
    return out


def config_ids(m: ModelConfig) -> list[str]:
    """Stable ids of a configured model's deployments: they survive restarts and edits of other fields."""
    seen: dict[str, int] = {}
    out = []
    for d in m.deployments:
        base = f"{m.name}\0{d.model}\0{d.api_base or ''}"
        n = seen[base] = seen.get(base, -1) + 1
        out.append("cfg_" + hashlib.sha256(f"{base}\0{n}".encode()).hexdigest()[:12])
    return out


def _invalid(exc: ConfigError, where: str) -> InvalidRequestError:
    """The parser's error for the API: the field path without the parser's prefix, as ``param``."""
    msg = str(exc)
    param = None
    if msg.startswith(where + "."):
        msg = msg[len(where) + 1 :]
        param = msg.split(":", 1)[0]
    elif msg.startswith(where + ": "):
        msg = msg[len(where) + 2 :]
        m = re.match(r"unknown field '([^']*)'", msg)
        param = m.group(1) if m else None
        if where == "deployment":  # the API's own fields, besides the YAML's
            msg = msg.replace("(allowed: ", "(allowed: model_name, api_key_env, ", 1)
    return InvalidRequestError(msg, param=param, code="invalid_field")


def check_deployment(spec: dict[str, Any], env: Mapping[str, str] | None = None) -> DeploymentConfig:
    """The YAML's checks on a deployment ``spec`` (plus ``api_key_env``); with ``env``, the key it names is read."""
    spec = dict(spec)
    var = spec.pop("api_key_env", None)
    if var is not None:
        if not isinstance(var, str) or not _ENV_NAME.fullmatch(var):
            raise InvalidRequestError(
                "api_key_env: must be the name of an environment variable", param="api_key_env", code="invalid_field"
            )
        if spec.get("api_key"):
            raise InvalidRequestError("api_key_env: give api_key or api_key_env, not both", param="api_key_env")
    try:
        dep = _deployment(spec, "deployment")
    except ConfigError as exc:
        raise _invalid(exc, "deployment") from None
    if var is not None and env is not None:
        try:
            key = env_value(env, var)  # or the file {var}_FILE names
        except ConfigError as exc:
            raise InvalidRequestError(f"api_key_env: {exc}", param="api_key_env") from None
        if not key:
            raise InvalidRequestError(
                f"api_key_env: the environment variable {var} is not set on this gateway", param="api_key_env"
            )
        dep.api_key = key
    return dep


def check_alias(name: str, spec: dict[str, Any]) -> ModelConfig:
    """The YAML's checks on a model's settings (its deployments are separate rows)."""
    for key in spec:
        if key not in _ALIAS_FIELDS:
            raise InvalidRequestError(
                f"unknown field {key!r} (allowed: {', '.join(_ALIAS_FIELDS)}; deployments are added with "
                "POST /admin/deployments)",
                param=key,
                code="invalid_field",
            )
    if spec.get("description") is not None and not isinstance(spec["description"], str):
        raise InvalidRequestError("description: must be a string", param="description", code="invalid_field")
    try:
        return _model({"name": name, **spec, "deployments": ["openai/placeholder"]}, "alias", {})
    except ConfigError as exc:
        raise _invalid(exc, "alias") from None


def check_name(name: Any, param: str = "model_name") -> str:
    if not isinstance(name, str) or not _ALIAS_NAME.fullmatch(name):
        raise InvalidRequestError(
            f"{param}: must be 1-128 letters, digits and . _ : @ + - (starting with a letter or digit)",
            param=param,
            code="invalid_field",
        )
    return name


def lay(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """``patch`` over ``base``: a key source given in one replaces the other's."""
    out = dict(base)
    if "api_key_env" in patch:
        out.pop("api_key", None)
    if "api_key" in patch:
        out.pop("api_key_env", None)
    out.update(patch)
    return out


def patched(old: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    """``body``'s fields set over ``old`` (``null``: the field is dropped, back to the config's or the default)."""
    out = dict(old)
    if "base_url" in body:
        body = {**{k: v for k, v in body.items() if k != "base_url"}, "api_base": body["base_url"]}
    for k, v in body.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = v
    return out


# -- the catalog: config + changes ----------------------------------------------------------------------------------


def build_catalog(config: Config, snap: Snapshot) -> list[AliasDef]:
    """Every alias with its deployments, as the config and the store's changes define them now."""
    dep_changes = {c.key: c for c in snap.deployments}
    out: dict[str, AliasDef] = {}
    for m in config.models:
        alias = out[m.name] = AliasDef(m.name, "config", alias_spec(m))
        for dep_id, d in zip(config_ids(m), m.deployments, strict=True):
            dd = DeploymentDef(dep_id, m.name, "config", deployment_spec(d))
            c = dep_changes.pop(dep_id, None)
            if c is not None:
                dd.spec, dd.removed, dd.changed, dd.updated_at = lay(dd.spec, c.spec), c.removed, True, c.updated_at
            alias.deployments.append(dd)
    for c in snap.aliases:
        alias = out.setdefault(c.key, AliasDef(c.key, "api", {}))
        alias.spec, alias.removed, alias.changed, alias.updated_at = (
            lay(alias.spec, c.spec),
            c.removed,
            True,
            c.updated_at,
        )
    for c in sorted(dep_changes.values(), key=lambda c: (c.created_at, c.key)):
        if c.key.startswith("cfg_"):
            continue  # a change of a deployment no longer in the YAML: kept, unused
        alias = out.setdefault(c.model_name, AliasDef(c.model_name, "api", {}))
        alias.deployments.append(DeploymentDef(c.key, c.model_name, "api", dict(c.spec), c.removed, True, c.updated_at))
    return list(out.values())


def find_deployment(catalog: list[AliasDef], dep_id: str) -> DeploymentDef | None:
    return next((d for a in catalog for d in a.deployments if d.id == dep_id), None)
