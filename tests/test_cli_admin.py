"""``modelway keys`` and ``modelway usage`` against a real SQLite store; ``serve`` refusing unsafe worker setups."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from modelway.cli import main
from modelway.store.sql import SQLStore
from modelway.usage import UsageRecord


@pytest.fixture
def config(tmp_path: Path) -> Path:
    cfg = tmp_path / "gw.yaml"
    cfg.write_text(f"store:\n  url: sqlite:///{tmp_path / 'gw.db'}\n")
    return cfg


def _store_url(config: Path) -> str:
    return f"sqlite:///{config.parent / 'gw.db'}"


def test_keys_create_list_revoke(config: Path) -> None:
    runner = CliRunner()
    r = runner.invoke(
        main,
        [
            "keys",
            "create",
            "-c",
            str(config),
            "--name",
            "team-a",
            "--models",
            "chat",
            "--models",
            "embed",
            "--rpm",
            "60",
            "--budget",
            "20",
            "--budget-period",
            "month",
        ],
    )
    assert r.exit_code == 0, r.output
    secret = r.stdout.strip()
    assert secret.startswith("mw-") and len(secret) > 30 and "shown only once" in r.stderr
    r = runner.invoke(main, ["keys", "list", "-c", str(config), "--json"])
    [key] = json.loads(r.stdout)
    assert key["name"] == "team-a" and key["models"] == ["chat", "embed"] and key["rpm"] == 60
    assert key["budget"] == 20.0 and key["budget_period"] == "month" and key["prefix"] == secret[:7]
    r = runner.invoke(main, ["keys", "list", "-c", str(config)])
    assert r.exit_code == 0 and "team-a" in r.stdout and "20/month" in r.stdout and "chat,embed" in r.stdout
    r = runner.invoke(main, ["keys", "revoke", "-c", str(config), key["id"]])
    assert r.exit_code == 0 and key["id"] in r.stdout
    r = runner.invoke(main, ["keys", "revoke", "-c", str(config), key["id"]])
    assert r.exit_code == 1 and "no active key" in r.stderr
    assert json.loads(runner.invoke(main, ["keys", "list", "-c", str(config), "--json"]).stdout) == []
    [revoked] = json.loads(runner.invoke(main, ["keys", "list", "-c", str(config), "--json", "--all"]).stdout)
    assert revoked["revoked_at"] is not None


def test_keys_need_a_store(tmp_path: Path) -> None:
    cfg = tmp_path / "gw.yaml"
    cfg.write_text("server:\n  port: 4000\n")
    r = CliRunner().invoke(main, ["keys", "list", "-c", str(cfg)])
    assert r.exit_code == 2 and "no store.url" in r.stderr


def test_usage_summarises_the_ledger(config: Path) -> None:
    now = time.time()

    async def seed() -> None:
        store = SQLStore(_store_url(config))
        await store.open()
        try:
            await store.insert_usage(
                [
                    UsageRecord(now, "r1", "key_a", "chat", "zhipu/glm-4-flash", "chat", False, 10, 5, 15, 0.25),
                    UsageRecord(now, "r2", "key_a", "chat", "zhipu/glm-4-flash", "chat", True, 20, 10, 30, 0.5),
                    UsageRecord(now, "r3", "key_b", "embed", None, "embeddings", False, status=502, error="x"),
                ]
            )
        finally:
            await store.aclose()

    asyncio.run(seed())
    runner = CliRunner()
    rows = json.loads(runner.invoke(main, ["usage", "-c", str(config), "--json"]).stdout)
    totals = ("group", "requests", "errors", "prompt_tokens", "completion_tokens", "total_tokens", "cost")
    assert [{k: r[k] for k in totals} for r in rows] == [
        {
            "group": "chat",
            "requests": 2,
            "errors": 0,
            "prompt_tokens": 30,
            "completion_tokens": 15,
            "total_tokens": 45,
            "cost": 0.75,
        },
        {
            "group": "embed",
            "requests": 1,
            "errors": 1,
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "total_tokens": 0,
            "cost": 0.0,
        },
    ]
    r = runner.invoke(main, ["usage", "-c", str(config), "--by", "key", "--days", "1"])
    assert r.exit_code == 0 and "key_a" in r.stdout and "0.750000" in r.stdout
    by_endpoint = json.loads(runner.invoke(main, ["usage", "-c", str(config), "--by", "endpoint", "--json"]).stdout)
    assert [(r["group"], r["requests"], r["total_tokens"]) for r in by_endpoint] == [
        ("chat", 2, 45),
        ("embeddings", 1, 0),
    ]


def test_serve_refuses_workers_without_redis_when_limits_are_on(config: Path) -> None:
    r = CliRunner().invoke(main, ["serve", "-c", str(config), "--workers", "2"])
    assert r.exit_code == 2 and "store.redis_url" in r.stderr and "2x" in r.stderr
