"""Deployments and aliases changed at run time (issue 11): the changes made by the admin API and by
``modelway deployments``, kept in the SQL store, and how they combine with the YAML config.

The YAML config is the source at start; the store holds *changes* over it, one row per deployment or alias:

- a **config deployment** has a stable id derived from its alias, model, base URL and rank (``cfg_…``); a change of
  it stores only the fields set through the API (``spec``), laid over the YAML's (so a key written in the YAML is
  never copied into the store), or ``removed``: hidden until the change is reset;
- an **API deployment** (``dep_…``) is its whole definition, in the YAML's shape (the same fields, checked by the
  same parser: :func:`modelway.config._deployment`), plus ``api_key_env``: the name of an environment variable each
  gateway reads its key from, so that the secret need not be stored. An ``api_key`` given instead is stored as it
  is given (as the YAML file holds it) and never shown again: every listing masks it;
- an **alias** (a model name with its ``system_prompt``, ``merge_system``, ``description``, ``price``, ``routing``)
  changes the same way. Removing an alias hides it with all its deployments. A deployment added under a name that
  has no alias serves it with the default routing.

Every change bumps the single row of ``mw_runtime_version`` in the same transaction, so a gateway polls one row to
know whether anything changed (:mod:`modelway.server.gateway` does, every second).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import Boolean, Column, Double, MetaData, String, Table, select, text

from ..config import Config, ModelConfig
from ..errors import InvalidRequestError
from .deployment_specs import (
    AliasDef,
    Change,
    ConflictError,
    DeploymentDef,
    NotFoundError,
    Snapshot,
    alias_spec,
    build_catalog,
    check_alias,
    check_deployment,
    check_name,
    find_deployment,
    lay,
    patched,
)

if TYPE_CHECKING:
    from .sql import SQLStore

__all__ = ["AliasDef", "DeploymentDef", "RuntimeChanges", "Snapshot"]

_meta = MetaData()
_deps = Table(
    "mw_deployment_changes",
    _meta,
    Column("id", String, primary_key=True),
    Column("model_name", String),
    Column("spec", String),
    Column("removed", Boolean),
    Column("created_at", Double),
    Column("updated_at", Double),
)
_aliases = Table(
    "mw_alias_changes",
    _meta,
    Column("name", String, primary_key=True),
    Column("spec", String),
    Column("removed", Boolean),
    Column("created_at", Double),
    Column("updated_at", Double),
)


# -- the store ------------------------------------------------------------------------------------------------------


def _change(row: Any, *, alias: bool) -> Change:
    return Change(
        key=row["name"] if alias else row["id"],
        spec=orjson.loads(row["spec"]),
        removed=bool(row["removed"]),
        model_name="" if alias else row["model_name"],
        created_at=float(row["created_at"]),
        updated_at=float(row["updated_at"]),
    )


def _check_fallbacks(m: ModelConfig, catalog: list[AliasDef]) -> None:
    """As the YAML: fallbacks name models of this gateway (or provider/model), never the model itself."""
    known = {a.name for a in catalog if not a.removed}
    for key in ("fallbacks", "context_window_fallbacks", "content_filter_fallbacks"):
        for name in getattr(m.routing, key) if m.routing is not None else ():
            if name == m.name:
                raise InvalidRequestError(f"routing.{key}: a model cannot fall back to itself", param=f"routing.{key}")
            if name not in known and "/" not in name:
                raise InvalidRequestError(
                    f"routing.{key}: {name!r} is not a model of this gateway", param=f"routing.{key}"
                )


class RuntimeChanges:
    """The changes in ``store``, over ``config``: what the admin API and the CLI read and write.

    Every write is one transaction that bumps the version first (on PostgreSQL that row's lock orders concurrent
    writers; SQLite's write lock does the same), checks the result with the YAML's parser, and stores it."""

    def __init__(self, store: SQLStore, config: Config, env: Mapping[str, str] | None = None) -> None:
        self.store = store
        self.config = config
        #: where ``api_key_env`` is looked up when a change is checked (``None``: not checked, as in the CLI)
        self.env = env

    async def version(self) -> int:
        async with self.store._connect() as conn:
            return int((await conn.execute(text("SELECT version FROM mw_runtime_version"))).scalar_one())

    async def snapshot(self) -> Snapshot:
        async with self.store._connect() as conn:
            version = int((await conn.execute(text("SELECT version FROM mw_runtime_version"))).scalar_one())
            aliases = (await conn.execute(select(_aliases).order_by(_aliases.c.name))).mappings().all()
            deps = (await conn.execute(select(_deps).order_by(_deps.c.created_at, _deps.c.id))).mappings().all()
        return Snapshot(version, [_change(r, alias=True) for r in aliases], [_change(r, alias=False) for r in deps])

    async def catalog(self) -> list[AliasDef]:
        return build_catalog(self.config, await self.snapshot())

    async def _write(self, table: Table, key: str, work: Callable[[Change | None], Change | None]) -> None:
        """Read the row ``key``, let ``work`` decide its new value (``None``: deleted), write it: one transaction."""
        col = table.c.name if table is _aliases else table.c.id
        async with self.store._connect(write=True) as conn:
            await conn.execute(text("UPDATE mw_runtime_version SET version = version + 1"))
            row = (await conn.execute(select(table).where(col == key))).mappings().first()
            old = None if row is None else _change(row, alias=table is _aliases)
            new = work(old)
            if new is None:
                if old is not None:
                    await conn.execute(table.delete().where(col == key))
                return
            now = time.time()
            values: dict[str, Any] = {
                "spec": orjson.dumps(new.spec).decode(),
                "removed": new.removed,
                "updated_at": now,
            }
            if table is _deps:
                values["model_name"] = new.model_name
            if old is None:
                values["id" if table is _deps else "name"] = key
                await conn.execute(table.insert().values(created_at=now, **values))
            else:
                await conn.execute(table.update().where(col == key).values(**values))

    # -- deployments --
    def _config_base(self, dep_id: str) -> DeploymentDef | None:
        empty = Snapshot(0, [], [])
        found = find_deployment(build_catalog(self.config, empty), dep_id)
        return found if found is not None and found.source == "config" else None

    async def get_deployment(self, dep_id: str) -> DeploymentDef:
        found = find_deployment(await self.catalog(), dep_id)
        if found is None:
            raise NotFoundError(f"no deployment {dep_id!r}", param="id", code="deployment_not_found")
        return found

    async def add_deployment(self, body: dict[str, Any]) -> DeploymentDef:
        body = dict(body)
        name = check_name(body.pop("model_name", None))
        spec = patched({}, body)
        check_deployment(spec, self.env)
        dep_id = "dep_" + secrets.token_hex(8)
        await self._write(_deps, dep_id, lambda _old: Change(dep_id, spec, model_name=name))
        return await self.get_deployment(dep_id)

    async def update_deployment(self, dep_id: str, body: dict[str, Any]) -> DeploymentDef:
        if not body:
            raise InvalidRequestError("nothing to change: send the fields to set (null: back to the default)")
        base = self._config_base(dep_id)

        def work(old: Change | None) -> Change:
            if old is None and base is None:
                raise NotFoundError(f"no deployment {dep_id!r}", param="id", code="deployment_not_found")
            fields_ = dict(body)
            name = fields_.pop("model_name", None)
            if base is not None and name is not None and name != base.model_name:
                raise InvalidRequestError(
                    "model_name: a configured deployment stays in its model (add a new one instead)", param="model_name"
                )
            if name is not None:
                check_name(name)
            patch = patched(old.spec if old is not None else {}, fields_)
            check_deployment(lay(base.spec, patch) if base is not None else patch, self.env)
            model_name = name or (old.model_name if old is not None else base.model_name if base else "")
            return Change(dep_id, patch, old.removed if old is not None else False, model_name)

        await self._write(_deps, dep_id, work)
        return await self.get_deployment(dep_id)

    async def set_disabled(self, dep_id: str, disabled: bool) -> DeploymentDef:
        return await self.update_deployment(dep_id, {"disabled": disabled})

    async def remove_deployment(self, dep_id: str) -> DeploymentDef:
        """An API deployment is deleted; a configured one is hidden until :meth:`reset_deployment`."""
        found = await self.get_deployment(dep_id)

        def work(old: Change | None) -> Change | None:
            if found.source == "api":
                return None
            return Change(dep_id, old.spec if old else {}, True, found.model_name)

        await self._write(_deps, dep_id, work)
        found.removed = True
        return found

    async def reset_deployment(self, dep_id: str) -> DeploymentDef:
        """Drop the store's change of a configured deployment: it is back as the YAML defines it."""
        if self._config_base(dep_id) is None:
            raise NotFoundError(
                f"no configured deployment {dep_id!r} (an API deployment is removed with DELETE)", param="id"
            )
        await self._write(_deps, dep_id, lambda _old: None)
        return await self.get_deployment(dep_id)

    # -- aliases --
    async def get_alias(self, name: str) -> AliasDef:
        found = next((a for a in await self.catalog() if a.name == name), None)
        if found is None:
            raise NotFoundError(f"no model {name!r}", param="name", code="model_not_found")
        return found

    def _config_alias(self, name: str) -> ModelConfig | None:
        return next((m for m in self.config.models if m.name == name), None)

    async def add_alias(self, body: dict[str, Any]) -> AliasDef:
        body = dict(body)
        name = check_name(body.pop("name", None), "name")
        spec = patched({}, body)
        catalog = await self.catalog()
        _check_fallbacks(check_alias(name, spec), catalog)
        existing = next((a for a in catalog if a.name == name), None)
        if existing is not None and not existing.removed:
            raise ConflictError(f"the model {name!r} exists: change it with PATCH", param="name", code="model_exists")
        await self._write(_aliases, name, lambda _old: Change(name, spec))
        return await self.get_alias(name)

    async def update_alias(self, name: str, body: dict[str, Any]) -> AliasDef:
        if not body:
            raise InvalidRequestError("nothing to change: send the fields to set (null: back to the default)")
        catalog = await self.catalog()
        current = next((a for a in catalog if a.name == name), None)
        if current is None:
            raise NotFoundError(f"no model {name!r}", param="name", code="model_not_found")
        config = self._config_alias(name)
        base = alias_spec(config) if config is not None else {}

        def work(old: Change | None) -> Change:
            patch = patched(old.spec if old is not None else {}, body)
            _check_fallbacks(check_alias(name, lay(base, patch)), catalog)
            return Change(name, patch, old.removed if old is not None else False)

        if current.removed:
            raise ConflictError(f"the model {name!r} is removed: reset it first", param="name")
        await self._write(_aliases, name, work)
        return await self.get_alias(name)

    async def remove_alias(self, name: str) -> AliasDef:
        """The model and its deployments leave rotation: kept as a removed change (a new POST revives the name)."""
        current = await self.get_alias(name)
        await self._write(_aliases, name, lambda old: Change(name, old.spec if old else {}, True))
        current.removed = True
        return current

    async def reset_alias(self, name: str) -> AliasDef:
        """Drop the store's change of the alias (its settings and removal; its deployments' changes stay)."""
        await self.get_alias(name)
        await self._write(_aliases, name, lambda _old: None)
        return await self.get_alias(name)
