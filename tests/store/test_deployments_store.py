"""Run-time changes of deployments and aliases in the store (SQLite and a throwaway-or-local PostgreSQL): the rows,
the version, how they lay over the YAML config, the checks (the YAML's own parser) and the masking of keys."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from sqlalchemy import text

from modelway.config import Config, parse_config
from modelway.errors import ConfigError, InvalidRequestError
from modelway.store import SQLStore
from modelway.store.deployment_specs import config_ids
from modelway.store.deployments import RuntimeChanges

CONFIG_KEY = "sk-config-secret-0123456789"
API_KEY = "sk-api-secret-abcdefghijkl"


def config() -> Config:
    return parse_config(
        {
            "models": [
                {
                    "name": "chat",
                    "routing": {"strategy": "least_busy", "fallbacks": ["backup"]},
                    "deployments": [
                        {"model": "openai/gpt-4o-mini", "api_key": CONFIG_KEY, "api_base": "http://127.0.0.1:9/v1"},
                        {"model": "openai/gpt-4o-mini", "api_key": CONFIG_KEY, "weight": 2},
                    ],
                },
                {"name": "backup", "deployments": ["deepseek/deepseek-chat"]},
            ]
        },
        env={},
    )


@pytest.fixture
async def changes(url: str) -> AsyncIterator[RuntimeChanges]:
    store = SQLStore(url)
    await store.open()
    try:
        yield RuntimeChanges(store, config())
    finally:
        await store.aclose()


async def raw_rows(changes: RuntimeChanges) -> dict[str, dict[str, Any]]:
    async with changes.store._connect() as conn:
        rows = (await conn.execute(text("SELECT id, spec, removed FROM mw_deployment_changes"))).all()
    return {r[0]: {"spec": orjson.loads(r[1]), "removed": bool(r[2])} for r in rows}


def test_configured_deployments_have_stable_distinct_ids() -> None:
    a, b = config(), config()
    ids = config_ids(a.models[0])
    assert ids == config_ids(b.models[0])
    assert len(set(ids)) == 2 and all(i.startswith("cfg_") for i in ids)
    # another field of the YAML changing (the weight) keeps the id: a change over it still applies
    a.models[0].deployments[1].weight = 5
    assert config_ids(a.models[0]) == ids


async def test_the_config_alone_is_the_catalog_and_every_change_bumps_the_version(changes: RuntimeChanges) -> None:
    assert await changes.version() == 0
    catalog = await changes.catalog()
    assert [(a.name, a.source, len(a.deployments)) for a in catalog] == [("chat", "config", 2), ("backup", "config", 1)]
    chat = catalog[0]
    assert chat.spec["routing"] == {"strategy": "least_busy", "fallbacks": ["backup"]}
    assert {d.source for d in chat.deployments} == {"config"} and not any(d.changed for d in chat.deployments)

    added = await changes.add_deployment({"model_name": "fresh", "model": "openai/gpt-4o", "api_key_env": "KEY_VAR"})
    assert await changes.version() == 1
    assert added.id.startswith("dep_") and added.source == "api" and added.state == "active"
    fresh = (await changes.get_alias("fresh")).to_dict()
    assert fresh["source"] == "api" and [d["id"] for d in fresh["deployments"]] == [added.id]
    await changes.set_disabled(added.id, True)
    assert await changes.version() == 2
    assert (await changes.get_deployment(added.id)).state == "disabled"


async def test_a_change_of_a_configured_deployment_stores_only_its_fields(changes: RuntimeChanges) -> None:
    dep_id = (await changes.catalog())[0].deployments[0].id
    changed = await changes.update_deployment(dep_id, {"weight": 3, "quota": {"rpm": 60}})
    assert changed.changed and changed.source == "config"
    assert changed.spec["weight"] == 3 and changed.spec["model"] == "openai/gpt-4o-mini"
    # the key written in the YAML is used, never copied into the store
    assert changed.spec["api_key"] == CONFIG_KEY
    assert (await raw_rows(changes))[dep_id] == {"spec": {"weight": 3, "quota": {"rpm": 60}}, "removed": False}
    # null: back to the YAML's value
    back = await changes.update_deployment(dep_id, {"weight": None})
    assert "weight" not in back.spec and back.spec["quota"] == {"rpm": 60}

    removed = await changes.remove_deployment(dep_id)
    assert removed.state == "removed"
    chat = (await changes.catalog())[0]
    assert [d.id for d in chat.active()] == [chat.deployments[1].id]
    reset = await changes.reset_deployment(dep_id)
    assert reset.state == "active" and not reset.changed and "quota" not in reset.spec
    assert await raw_rows(changes) == {}


async def test_removing_an_api_deployment_deletes_it(changes: RuntimeChanges) -> None:
    added = await changes.add_deployment({"model_name": "chat", "model": "openai/gpt-4o", "weight": 0.5})
    assert [d.id for d in (await changes.catalog())[0].active()][-1] == added.id
    await changes.remove_deployment(added.id)
    with pytest.raises(InvalidRequestError) as exc:
        await changes.get_deployment(added.id)
    assert exc.value.http_status == 404
    with pytest.raises(InvalidRequestError) as exc:  # an API deployment has no YAML to go back to
        await changes.reset_deployment("dep_0000000000000000")
    assert exc.value.http_status == 404


async def test_keys_are_masked_in_every_listing(changes: RuntimeChanges) -> None:
    added = await changes.add_deployment(
        {"model_name": "chat", "model": "openai/gpt-4o", "api_key": API_KEY, "headers": {"X-Secret": "hush"}}
    )
    assert added.to_dict()["spec"]["api_key"] == "****" + API_KEY[-4:]
    listing = orjson.dumps([a.to_dict() for a in await changes.catalog()]).decode()
    assert API_KEY not in listing and CONFIG_KEY not in listing and "hush" not in listing
    # stored as given (like the YAML file holds it): the gateway needs it
    assert (await raw_rows(changes))[added.id]["spec"]["api_key"] == API_KEY


def _yaml_error(deployment: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as exc:
        parse_config({"models": [{"name": "m", "deployments": [deployment]}]}, env={})
    return str(exc.value).removeprefix("models[0].deployments[0].")


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"model": "openai/gpt-4o", "weight": -1}, "weight"),
        ({"model": "nowhere/x"}, "model"),
        ({"model": "openai/gpt-4o", "api_base": "ftp://x"}, "api_base"),
        ({"model": "openai/gpt-4o", "quota": {"rpm": 0}}, "quota.rpm"),
        ({"model": "openai/gpt-4o", "tier": "high"}, "tier"),
        ({"model": "openai/gpt-4o", "disabled": "yes"}, "disabled"),
    ],
)
async def test_a_bad_field_is_refused_naming_it_as_the_yaml_does(
    changes: RuntimeChanges, fields: dict[str, Any], param: str
) -> None:
    with pytest.raises(InvalidRequestError) as exc:
        await changes.add_deployment({"model_name": "m", **fields})
    assert exc.value.param == param and exc.value.http_status == 400
    assert str(exc.value) == _yaml_error(fields)
    assert await changes.version() == 0  # nothing written


async def test_other_bad_input(changes: RuntimeChanges) -> None:
    cases: list[tuple[dict[str, Any], str | None]] = [
        ({"model": "openai/gpt-4o"}, "model_name"),
        ({"model_name": "a/b", "model": "openai/gpt-4o"}, "model_name"),
        ({"model_name": "m", "model": "openai/gpt-4o", "colour": "red"}, "colour"),
        ({"model_name": "m", "model": "openai/gpt-4o", "api_key_env": "1BAD"}, "api_key_env"),
        ({"model_name": "m", "model": "openai/gpt-4o", "api_key_env": "K", "api_key": "sk"}, "api_key_env"),
    ]
    for body, param in cases:
        with pytest.raises(InvalidRequestError) as exc:
            await changes.add_deployment(body)
        assert exc.value.param == param, body
    dep_id = (await changes.catalog())[0].deployments[0].id
    with pytest.raises(InvalidRequestError) as exc:
        await changes.update_deployment(dep_id, {"model_name": "elsewhere"})
    assert exc.value.param == "model_name"


async def test_aliases_change_remove_and_reset(changes: RuntimeChanges) -> None:
    chat = await changes.update_alias("chat", {"system_prompt": "Be brief.", "routing": {"strategy": "latency"}})
    assert chat.spec["system_prompt"] == "Be brief." and chat.spec["routing"] == {"strategy": "latency"}
    with pytest.raises(InvalidRequestError) as exc:
        await changes.update_alias("chat", {"routing": {"strategy": "fastest"}})
    assert exc.value.param == "routing.strategy"
    with pytest.raises(InvalidRequestError) as exc:
        await changes.add_alias({"name": "chat"})
    assert exc.value.http_status == 409
    for fallbacks, message in ((["nowhere"], "is not a model"), (["chat"], "cannot fall back to itself")):
        with pytest.raises(InvalidRequestError) as exc:
            await changes.update_alias("chat", {"routing": {"fallbacks": fallbacks}})
        assert exc.value.param == "routing.fallbacks" and message in str(exc.value)
    ok = await changes.update_alias("chat", {"routing": {"fallbacks": ["backup", "openai/gpt-4o"]}})
    assert ok.spec["routing"] == {"fallbacks": ["backup", "openai/gpt-4o"]}

    removed = await changes.remove_alias("chat")
    assert removed.removed and (await changes.get_alias("chat")).active() == []
    back = await changes.reset_alias("chat")
    assert not back.removed and back.spec["routing"] == {"strategy": "least_busy", "fallbacks": ["backup"]}
    assert len(back.active()) == 2

    new = await changes.add_alias({"name": "fast", "routing": {"strategy": "priority"}, "price": {"input": 1}})
    assert new.source == "api" and new.spec["price"] == {"input": 1}
    await changes.remove_alias("fast")
    revived = await changes.add_alias({"name": "fast"})  # a removed name can be added again
    assert not revived.removed and revived.spec == {}


async def test_two_stores_on_one_database_see_the_same_changes(changes: RuntimeChanges, url: str) -> None:
    other_store = SQLStore(url)
    await other_store.open()
    try:
        other = RuntimeChanges(other_store, config())
        added = await changes.add_deployment({"model_name": "chat", "model": "openai/gpt-4o"})
        assert await other.version() == await changes.version() == 1
        await other.set_disabled(added.id, True)
        assert (await changes.get_deployment(added.id)).state == "disabled"
        assert await changes.version() == 2
    finally:
        await other_store.aclose()
