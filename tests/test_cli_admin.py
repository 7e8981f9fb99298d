"""``modelway keys`` and ``modelway usage`` against a real SQLite store; ``serve`` refusing unsafe worker setups."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from modelway.auth.keys import ApiKey
from modelway.cli import main
from modelway.cli_chart import bar, bars
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


def test_keys_create_admin_and_list_after_a_revoke(config: Path) -> None:
    runner = CliRunner()
    r = runner.invoke(main, ["keys", "list", "-c", str(config)])
    assert r.exit_code == 0 and r.stderr == "no keys yet: create one with `modelway keys create`\n"
    r = runner.invoke(main, ["keys", "create", "-c", str(config), "--name", "ops", "--admin", "--json"])
    admin = json.loads(r.stdout)
    assert admin["metadata"] == {"role": "admin"}
    plain = json.loads(runner.invoke(main, ["keys", "create", "-c", str(config), "--name", "app", "--json"]).stdout)
    assert plain["metadata"] == {}
    r = runner.invoke(main, ["keys", "list", "-c", str(config)])
    header, *lines = r.stdout.splitlines()
    assert header.split() == ["id", "name", "role", "prefix", "models", "rpm", "tpm", "parallel", "budget", "expires"]
    assert [line.split()[1:3] for line in lines] == [["ops", "admin"], ["app", "-"]]
    runner.invoke(main, ["keys", "revoke", "-c", str(config), plain["id"]])
    r = runner.invoke(main, ["keys", "list", "-c", str(config)])
    assert [line.split()[1] for line in r.stdout.splitlines()[1:]] == ["ops"]
    assert r.stderr == "1 revoked (--all to list them)\n"
    runner.invoke(main, ["keys", "revoke", "-c", str(config), admin["id"]])
    r = runner.invoke(main, ["keys", "list", "-c", str(config)])
    assert r.exit_code == 0 and r.stdout == "" and r.stderr == "no active keys; 2 revoked (--all to list them)\n"
    r = runner.invoke(main, ["keys", "list", "-c", str(config), "--all"])
    assert r.stdout.splitlines()[0].split()[-1] == "revoked" and len(r.stdout.splitlines()) == 3


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


DAY = 86_400


def _seed_named(config: Path) -> float:
    """Two named keys (one revoked) and records over the last three days; today's UTC midnight."""
    today = time.time() // DAY * DAY

    async def seed() -> None:
        store = SQLStore(_store_url(config))
        await store.open()
        try:
            for key_id, name in (("key_a", "team a"), ("key_b", "team b")):
                await store.insert_key(ApiKey(id=key_id, name=name, key_hash=key_id * 8, prefix="mw-x", created_at=1))
            await store.revoke_key("key_b", at=2.0)
            await store.insert_usage(
                [
                    UsageRecord(today - 2 * DAY + 5, "r1", "key_a", "chat", "zhipu/glm", "chat", False, 1, 1, 2, 0.25),
                    UsageRecord(today - DAY + 5, "r2", "key_b", "chat", "zhipu/glm", "chat", False, 1, 1, 2, 1.0),
                    UsageRecord(today + 1, "r3", None, "chat", None, "chat", False, status=429, error="x"),
                    UsageRecord(today + 2, "r4", "key_a", "embed", "openai/e", "embeddings", False, 5, 0, 5, 0.5),
                ]
            )
        finally:
            await store.aclose()

    asyncio.run(seed())
    return today


def test_usage_shows_key_names_none_as_a_word_and_a_chart(config: Path) -> None:
    today = _seed_named(config)
    runner = CliRunner()
    r = runner.invoke(main, ["usage", "-c", str(config), "--by", "key", "--days", "3"])
    assert r.exit_code == 0, r.output
    table, chart = r.stdout.split("\n\n")
    lines = table.splitlines()
    assert lines[0].split() == ["key", "requests", "errors", "prompt", "completion", "cost", "p50", "ms", "p95", "ms",
                                "ttft", "p50", "ms"]  # fmt: skip
    assert [line[:10].rstrip() for line in lines[1:]] == ["team b", "team a", "(no key)"]
    assert "key_a" not in table and "None" not in r.stdout
    day = time.strftime
    assert chart.splitlines() == [
        "cost per day (UTC), the last 3 days",
        f"{day('%Y-%m-%d %a', time.gmtime(today - 2 * DAY))}  {'█' * 10:40}  0.250000",
        f"{day('%Y-%m-%d %a', time.gmtime(today - DAY))}  {'█' * 40}  1.000000",
        f"{day('%Y-%m-%d %a', time.gmtime(today))}  {'█' * 20:40}  0.500000",
    ]
    r = runner.invoke(main, ["usage", "-c", str(config), "--by", "deployment", "--no-chart"])
    assert "(none)" in r.stdout and "None" not in r.stdout and "per day" not in r.stdout
    rows = json.loads(runner.invoke(main, ["usage", "-c", str(config), "--by", "key", "--json"]).stdout)
    assert [(row["group"], row["key_name"]) for row in rows] == [("key_b", "team b"), ("key_a", "team a"), (None, None)]
    assert rows[2]["p50_ms"] == 5.0


def test_usage_of_one_key_by_name_or_id(config: Path) -> None:
    _seed_named(config)
    runner = CliRunner()
    for key in ("team a", "key_a"):
        rows = json.loads(runner.invoke(main, ["usage", "-c", str(config), "--key", key, "--json"]).stdout)
        assert [(row["group"], row["requests"]) for row in rows] == [("embed", 1), ("chat", 1)]
    r = runner.invoke(main, ["usage", "-c", str(config), "--key", "nobody"])
    assert r.exit_code == 2 and "no key has the id or name 'nobody'" in r.stderr
    r = runner.invoke(main, ["usage", "-c", str(config), "--model", "embed", "--by", "endpoint", "--no-chart"])
    assert r.stdout.splitlines()[1].split()[:2] == ["embeddings", "1"]


def test_usage_by_hour_is_bounded(config: Path) -> None:
    today = _seed_named(config)
    r = CliRunner().invoke(main, ["usage", "-c", str(config), "--by", "hour", "--days", "30"])
    assert r.exit_code == 2 and "--by hour covers at most 14 days" in r.stderr

    def counted(now: float) -> int:
        """The seeded records in the last 2 days, the start rounded down to a whole hour as the totals are: in the
        first hour of a UTC day that takes in the one from two days ago at 00:00:05."""
        since = (now - 2 * DAY) // 3600 * 3600
        return sum(at >= since for at in (today - 2 * DAY + 5, today - DAY + 5, today + 1, today + 2))

    before = time.time()
    r = CliRunner().invoke(main, ["usage", "-c", str(config), "--by", "hour", "--json"])  # the last 2 days
    assert r.exit_code == 0
    assert sum(row["requests"] for row in json.loads(r.stdout)) in {counted(before), counted(time.time())}


def test_an_empty_ledger_says_so_without_a_chart(config: Path) -> None:
    r = CliRunner().invoke(main, ["usage", "-c", str(config)])
    assert r.exit_code == 0 and r.stdout == "" and r.stderr == "no usage recorded yet\n"


def test_bars_in_eighths() -> None:
    assert bar(0, 10, 4) == "" and bar(10, 10, 4) == "████" and bar(1, 10, 4) == "▍"
    assert bar(0.001, 10, 4) == "▏"  # above zero: never invisible
    assert bars([("a", 1.0), ("bb", 4.0)], str, width=4) == ["a   █     1.0", "bb  ████  4.0"]
    assert bars([], str) == []


#: run the CLI with a module made impossible to import, as on an install without the extra
_WITHOUT = "import sys; sys.modules[{mod!r}] = None; from modelway.cli import main; main()"


@pytest.mark.parametrize("args", [["keys", "list"], ["keys", "create", "--name", "x"], ["usage"]])
def test_without_the_server_extra_the_cli_names_it(config: Path, args: list[str]) -> None:
    cmd = [sys.executable, "-c", _WITHOUT.format(mod="sqlalchemy"), *args, "-c", str(config)]
    r = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert r.returncode == 1, r.stderr
    assert "pip install 'modelway[server]'" in r.stderr and "Traceback" not in r.stderr
    assert f"`modelway {' '.join(args[:2] if args[0] == 'keys' else args[:1])}`" in r.stderr


def test_without_asyncpg_a_postgresql_store_names_the_postgres_extra(tmp_path: Path) -> None:
    cfg = tmp_path / "pg.yaml"
    cfg.write_text("store:\n  url: postgresql://u@127.0.0.1:1/db\n")
    cmd = [sys.executable, "-c", _WITHOUT.format(mod="asyncpg"), "usage", "-c", str(cfg)]
    r = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert r.returncode == 1 and "pip install 'modelway[postgres]'" in r.stderr and "Traceback" not in r.stderr


def test_serve_refuses_workers_without_redis_when_limits_are_on(config: Path) -> None:
    r = CliRunner().invoke(main, ["serve", "-c", str(config), "--workers", "2"])
    assert r.exit_code == 2 and "store.redis_url" in r.stderr and "2x" in r.stderr
