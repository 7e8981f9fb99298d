"""``modelway deployments`` against a real SQLite store: the round trip of add, list, update, disable, enable,
remove and reset, the aliases, --json, errors that name the field, and what a running gateway then serves (the
gateway's own sync, in process)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from modelway.cli import main
from modelway.config import load_config
from modelway.server.gateway import Gateway
from modelway.store.deployments import RuntimeChanges
from modelway.store.sql import SQLStore

CONFIG_KEY = "sk-config-key-abcdefghij"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    cfg = tmp_path / "gw.yaml"
    cfg.write_text(
        f"store:\n  url: sqlite:///{tmp_path / 'gw.db'}\n"
        "models:\n"
        "  - name: chat\n"
        "    deployments:\n"
        f"      - {{model: openai/gpt-4o-mini, api_key: {CONFIG_KEY}}}\n"
    )
    return cfg


def run(*args: str, code: int = 0) -> Result:
    r = CliRunner().invoke(main, ["deployments", *args])
    assert r.exit_code == code, (args, r.output)
    return r


def as_json(*args: str) -> Any:
    return json.loads(run(*args, "--json").stdout)


def test_round_trip(config: Path) -> None:
    c = str(config)
    [configured] = as_json("list", "-c", c)
    assert configured["source"] == "config" and configured["state"] == "active"
    assert configured["spec"]["api_key"] == "****" + CONFIG_KEY[-4:]

    added = run("add", "-c", c, "--model-name", "chat", "--model", "openai/gpt-4o", "--api-key-env", "OPENAI_KEY",
                "--weight", "2", "--set", 'quota={"rpm": 60}')  # fmt: skip
    dep_id = added.stdout.strip()
    assert dep_id.startswith("dep_")
    table = run("list", "-c", c).stdout.splitlines()
    assert table[0].split() == ["id", "model", "upstream", "source", "state", "weight", "tier", "key", "changed"]
    row = next(line.split() for line in table if line.startswith(dep_id))
    assert row[1:8] == ["chat", "openai/gpt-4o", "api", "active", "2", "0", "$OPENAI_KEY"]

    updated = as_json("update", "-c", c, dep_id, "--weight", "3", "--unset", "quota")
    assert updated["spec"]["weight"] == 3 and "quota" not in updated["spec"]
    assert as_json("disable", "-c", c, configured["id"])["state"] == "disabled"
    assert as_json("enable", "-c", c, configured["id"])["state"] == "active"
    assert as_json("remove", "-c", c, configured["id"])["state"] == "removed"
    assert {d["id"]: d["state"] for d in as_json("list", "-c", c)} == {configured["id"]: "removed", dep_id: "active"}
    assert as_json("reset", "-c", c, configured["id"])["changed"] is False
    assert "removed " + dep_id in run("remove", "-c", c, dep_id).stdout
    assert [d["id"] for d in as_json("list", "-c", c)] == [configured["id"]]


def test_aliases(config: Path) -> None:
    c = str(config)
    assert as_json("aliases", "add", "-c", c, "team", "--set", 'routing={"strategy": "latency"}')["source"] == "api"
    run("aliases", "update", "-c", c, "chat", "--set", "system_prompt=Be brief.")
    table = run("aliases", "list", "-c", c).stdout.splitlines()
    assert table[0].split() == ["name", "source", "state", "strategy", "deployments", "changed"]
    assert next(line for line in table if line.startswith("team")).split()[:5] == ["team", "api", "active", "latency",
                                                                                    "0/0"]  # fmt: skip
    chat = next(a for a in as_json("aliases", "list", "-c", c) if a["name"] == "chat")
    assert chat["spec"]["system_prompt"] == "Be brief." and chat["changed"] is True
    assert as_json("aliases", "remove", "-c", c, "chat")["state"] == "removed"
    assert as_json("aliases", "reset", "-c", c, "chat")["spec"] == {}


def test_errors_name_the_field(config: Path) -> None:
    c = str(config)
    r = run("add", "-c", c, "--model-name", "chat", "--model", "openai/gpt-4o", "--weight", "-1", code=2)
    assert "weight: must be a positive number" in r.stderr
    r = run("add", "-c", c, "--model-name", "chat", "--model", "nowhere/x", code=2)
    assert "model: 'nowhere/x' is not provider/model" in r.stderr
    r = run("add", "-c", c, "--model-name", "chat", "--model", "openai/gpt-4o", "--set", "colour=1", code=2)
    assert "unknown field 'colour'" in r.stderr
    r = run("aliases", "update", "-c", c, "chat", "--set", 'routing={"strategy": "fastest"}', code=2)
    assert "routing.strategy: unknown strategy 'fastest'" in r.stderr
    assert "no deployment 'dep_nope'" in run("disable", "-c", c, "dep_nope", code=1).stderr
    assert "--model is required" in run("add", "-c", c, "--model-name", "chat", code=2).output
    bare = config.parent / "bare.yaml"
    bare.write_text("models: []\n")
    assert "has no store.url" in run("list", "-c", str(bare), code=2).stderr


def test_help_explains() -> None:
    out = run("--help").stdout
    for word in ("list", "add", "update", "disable", "enable", "remove", "reset", "aliases", "--api-key-env"):
        assert word in out


def test_a_running_gateway_serves_what_the_cli_changed(config: Path) -> None:
    c = str(config)
    dep_id = run("add", "-c", c, "--model-name", "fresh", "--model", "deepseek/deepseek-chat", "--api-key", "sk-k",
                 "--tier", "1").stdout.strip()  # fmt: skip
    [configured] = [d for d in as_json("list", "-c", c) if d["source"] == "config"]
    run("disable", "-c", c, configured["id"])

    async def serve() -> None:
        cfg = load_config(config)
        gw = Gateway(cfg, env={})
        store = SQLStore(cfg.store.url or "")
        await store.open()
        try:
            gw.runtime = RuntimeChanges(store, cfg, {})
            await gw.sync_runtime()
            fresh = gw.router.groups["fresh"].deployments
            assert [(d.address, d.tier, d.adapter.api_key) for d in fresh] == [("deepseek/deepseek-chat", 1, "sk-k")]
            assert gw.router.groups["chat"].deployments[0].disabled
            assert {e["id"]: e["source"] for e in gw.deployments()} == {configured["id"]: "config", dep_id: "api"}
        finally:
            await store.aclose()
            await gw.aclose()

    asyncio.run(serve())
