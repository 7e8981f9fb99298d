"""``modelway check``: one tiny request to every deployment of a config, against the simulators (one working, one
failing, one timing out), the table, JSON, exit status, the concurrency bound and the progress bar."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from modelway.cli import main
from modelway.config import Config, parse_config
from modelway.health import model_kind, run_checks
from modelway.testing import DashScopeSimulator, Fault, JinaSimulator, OpenAISimulator, ZhipuSimulator

README = Path(__file__).resolve().parents[1] / "README.md"


def write(tmp_path: Path, config: dict[str, Any]) -> str:
    path = tmp_path / "check.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True))
    return str(path)


def at(sim: Any, model: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "api_key": sim.api_key, "api_base": sim.base_url, **extra}


@pytest.fixture
def sims() -> Iterator[tuple[ZhipuSimulator, OpenAISimulator, DashScopeSimulator]]:
    with ZhipuSimulator() as ok, OpenAISimulator() as failing, DashScopeSimulator() as slow:
        yield ok, failing, slow


def rows(stdout: str) -> dict[str, list[str]]:
    """The table's rows by deployment: [alias, status, latency, error]."""
    out = {}
    for line in stdout.splitlines()[1:]:
        alias, deployment, status, *rest = line.split(None, 3)
        latency, _, error = rest[0].partition(" ms") if "ms" in rest[0] else (rest[0][:1], "", rest[0][1:])
        out[deployment] = [alias, status, latency.strip(), error.strip()]
    return out


def test_one_working_one_failing_one_timing_out(
    tmp_path: Path, sims: tuple[ZhipuSimulator, OpenAISimulator, DashScopeSimulator]
) -> None:
    ok, failing, slow = sims
    failing.push(Fault.http(500, message="the upstream broke"))
    slow.push(Fault.stall(after_chunks=0, seconds=None))
    cfg = write(
        tmp_path,
        {
            "models": [
                {"name": "chat", "deployments": [at(ok, "zhipu/glm-4-flash"), at(failing, "openai/gpt-4o-mini")]},
                {"name": "qwen", "deployments": [at(slow, "dashscope/qwen-plus")]},
            ]
        },
    )
    started = time.monotonic()
    r = CliRunner(env={"ZHIPUAI_API_KEY": ""}).invoke(main, ["check", "-c", cfg, "--timeout", "1"])
    took = time.monotonic() - started
    assert r.exit_code == 1, r.output
    found = rows(r.stdout)
    assert r.stdout.splitlines()[0].split() == ["alias", "deployment", "status", "latency", "error"]
    assert found["zhipu/glm-4-flash"][:2] == ["chat", "ok"] and found["zhipu/glm-4-flash"][3] == ""
    assert found["openai/gpt-4o-mini"][:2] == ["chat", "error"] and "the upstream broke" in r.stdout
    assert found["dashscope/qwen-plus"][:2] == ["qwen", "error"] and "within 1s" in found["dashscope/qwen-plus"][3]
    assert "1 of 3 deployments answered; 2 failed" in r.stderr
    assert took < 5  # the stalled one was given up after its second, the others did not wait for it
    # one request each, of at most one token
    assert [q.json["max_tokens"] for q in ok.requests] == [1] and len(failing.requests) == 1
    assert ok.requests[0].json["messages"][-1]["content"] == "ping" and len(slow.requests) == 1


def test_json_and_exit_status_0_when_every_deployment_answers(
    tmp_path: Path, sims: tuple[ZhipuSimulator, OpenAISimulator, DashScopeSimulator]
) -> None:
    ok, other, third = sims
    cfg = write(
        tmp_path,
        {
            "models": [
                {"name": "a", "system_prompt": "be brief", "deployments": [at(ok, "zhipu/glm-4-flash")]},
                {"name": "b", "deployments": [at(other, "openai/gpt-4o-mini", params={"top_p": 0.5, "seed": 7})]},
                {
                    "name": "c",
                    "system_prompt": "no system role here",
                    "merge_system": True,
                    "deployments": [at(third, "dashscope/qwen-plus")],
                },
            ]
        },
    )
    r = CliRunner().invoke(main, ["check", "-c", cfg, "--json"])
    assert r.exit_code == 0, r.output
    got = json.loads(r.stdout)
    assert [(x["alias"], x["deployment"], x["status"], x["error"]) for x in got] == [
        ("a", "zhipu/glm-4-flash", "ok", None),
        ("b", "openai/gpt-4o-mini", "ok", None),
        ("c", "dashscope/qwen-plus", "ok", None),
    ]
    assert all(isinstance(x["latency_ms"], float) and x["kind"] == "chat" for x in got)
    # sent as the gateway sends it: the model's system prompt, the deployment's own parameters
    assert ok.last_request.json["messages"][0] == {"role": "system", "content": "be brief"}
    assert other.last_request.json["top_p"] == 0.5 and other.last_request.json["seed"] == 7
    [merged] = third.last_request.json["input"]["messages"]
    assert merged["role"] == "user" and "no system role here" in merged["content"] and "ping" in merged["content"]


def test_a_deployment_without_a_key_fails_without_a_request(tmp_path: Path) -> None:
    with ZhipuSimulator() as sim:
        cfg = write(tmp_path, {"models": [{"name": "m", "deployments": [{"model": "zhipu/glm-4-flash"}]}]})
        r = CliRunner(env={"ZHIPUAI_API_KEY": "", "ZHIPUAI_BASE_URL": sim.base_url}).invoke(main, ["check", "-c", cfg])
        assert sim.requests == []
    assert r.exit_code == 1
    [(alias, status, latency, error)] = rows(r.stdout).values()
    assert (alias, status, latency) == ("m", "error", "-") and "set ZHIPUAI_API_KEY" in error


def test_models_picks_aliases_and_direct_models(tmp_path: Path) -> None:
    with OpenAISimulator() as sim:
        cfg = write(
            tmp_path,
            {
                "providers": {"openai": {"api_key": sim.api_key, "base_url": sim.base_url}},
                "prices": {"openai/gpt-4o": {"input": 1, "output": 2}},
                "models": [
                    {"name": "one", "deployments": [at(sim, "openai/gpt-4o-mini")]},
                    {"name": "two", "deployments": [at(sim, "openai/o3")]},
                ],
            },
        )
        everything = CliRunner(env={"ZHIPUAI_API_KEY": ""}).invoke(main, ["check", "-c", cfg, "--json"])
        picked = CliRunner(env={"ZHIPUAI_API_KEY": ""}).invoke(
            main, ["check", "-c", cfg, "--json", "-m", "two", "-m", "zhipu/glm-4-flash", "-m", "nosuch/x"]
        )
    got = [(x["alias"], x["deployment"], x["status"]) for x in json.loads(everything.stdout)]
    assert got == [("one", "openai/gpt-4o-mini", "ok"), ("two", "openai/o3", "ok"), ("(direct)", "openai/gpt-4o", "ok")]
    assert everything.exit_code == 0
    got = [(x["alias"], x["deployment"], x["status"], x["error"]) for x in json.loads(picked.stdout)]
    assert got[0] == ("two", "openai/o3", "ok", None)
    assert got[1][:3] == ("(direct)", "zhipu/glm-4-flash", "error") and "set ZHIPUAI_API_KEY" in got[1][3]
    assert got[2][:3] == ("(direct)", "nosuch/x", "error") and picked.exit_code == 1


def test_embedding_and_rerank_models_get_their_own_request(tmp_path: Path) -> None:
    with OpenAISimulator() as emb, JinaSimulator() as rr:
        cfg = write(
            tmp_path,
            {
                "models": [
                    {"name": "e", "deployments": [at(emb, "openai/text-embedding-3-small")]},
                    {"name": "r", "deployments": [at(rr, "jina/jina-reranker-v2-base-multilingual")]},
                ]
            },
        )
        r = CliRunner().invoke(main, ["check", "-c", cfg, "--json"])
        assert r.exit_code == 0, r.output
        assert emb.last_request.path.endswith("/embeddings") and rr.last_request.path.endswith("/rerank")
    assert [x["kind"] for x in json.loads(r.stdout)] == ["embedding", "rerank"]


def test_demo_deployments_with_their_faults(tmp_path: Path) -> None:
    cfg = write(
        tmp_path,
        {
            "models": [
                {
                    "name": "demo",
                    "deployments": [
                        "demo/glm-4-flash",
                        {"model": "demo/qwen-plus", "options": {"fail_every": 1, "fail_status": 503}},
                        {"model": "demo/gpt-4o-mini", "timeout": 0.5, "options": {"timeout_every": 1}},
                    ],
                },
                {"name": "vectors", "deployments": ["demo/embedding-3"]},
            ]
        },
    )
    r = CliRunner().invoke(main, ["check", "-c", cfg, "--json"])
    got = {x["deployment"]: x for x in json.loads(r.stdout)}
    assert r.exit_code == 1
    assert got["demo/glm-4-flash"]["status"] == "ok" and got["demo/embedding-3"]["kind"] == "embedding"
    assert got["demo/embedding-3"]["status"] == "ok"
    assert got["demo/qwen-plus"]["status"] == "error" and "[demo 503" in got["demo/qwen-plus"]["error"]
    assert got["demo/gpt-4o-mini"]["status"] == "error" and got["demo/gpt-4o-mini"]["latency_ms"] >= 500


async def test_concurrency_is_bounded() -> None:
    slow = {"options": {"latency": 0.3}}
    config = parse_config(
        {"models": [{"name": n, "deployments": [{"model": f"demo/{n}", **slow}]} for n in ("glm-4-flash", "qwen-plus")]}
        | {"server": {"allow_direct": False}},
        env={},
    )
    times = {}
    for bound in (1, 2):
        started = time.monotonic()
        results = await run_checks(config, env={}, concurrency=bound)
        times[bound] = time.monotonic() - started
        assert [r.ok for r in results] == [True, True]
    assert times[1] >= 0.6  # one after the other
    assert times[2] < times[1] - 0.15  # side by side


async def test_without_a_file_the_providers_with_a_key_are_checked() -> None:
    with ZhipuSimulator() as sim:
        env = {"ZHIPUAI_API_KEY": sim.api_key, "ZHIPUAI_BASE_URL": sim.base_url}
        seen: list[int] = []
        results = await run_checks(Config(), env=env, file=False, on_start=seen.append)
    assert [(r.alias, r.deployment, r.ok) for r in results] == [("(direct)", "zhipu/glm-4-flash", True)]
    assert seen == [1]


def test_an_invalid_config_is_exit_2(tmp_path: Path) -> None:
    cfg = write(tmp_path, {"models": [{"name": "m", "deployments": [{"model": "demo/nope"}]}]})
    r = CliRunner().invoke(main, ["check", "-c", cfg])
    assert r.exit_code == 2 and "models[0].deployments[0].model" in r.stderr


def test_the_progress_bar_is_drawn_on_a_terminal_only(tmp_path: Path) -> None:
    cfg = write(tmp_path, {"models": [{"name": "m", "deployments": ["demo/glm-4-flash", "demo/qwen-plus"]}]})
    r = CliRunner().invoke(main, ["check", "-c", cfg])
    assert r.exit_code == 0 and "checking" not in r.stderr
    leader, follower = pty.openpty()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "modelway.cli", "check", "-c", cfg],
            stdout=subprocess.PIPE,
            stderr=follower,
            timeout=60,
            env={**os.environ, "COLUMNS": "100"},
        )
        os.close(follower)
        drawn = b""
        while True:
            try:
                piece = os.read(leader, 4096)
            except OSError:  # the terminal's other end is closed: all read
                break
            if not piece:
                break
            drawn += piece
    finally:
        os.close(leader)
    assert proc.returncode == 0 and b"checking" in drawn and b"2/2" in drawn, drawn
    assert b"checking" not in proc.stdout and b"demo/qwen-plus" in proc.stdout


def test_model_kind() -> None:
    assert [model_kind(m) for m in ("zhipu/embedding-3", "dashscope/gte-rerank-v2", "demo/jina-reranker-v2")] == [
        "embedding",
        "rerank",
        "rerank",
    ]
    assert model_kind("openai/text-embedding-3-small") == "embedding" and model_kind("deepseek/deepseek-chat") == "chat"


def test_the_readme_demo_config_works(tmp_path: Path) -> None:
    text = README.read_text()
    start = text.index("cat > demo.yaml <<'YAML'\n") + len("cat > demo.yaml <<'YAML'\n")
    cfg = tmp_path / "demo.yaml"
    cfg.write_text(text[start : text.index("\nYAML\n", start)])
    r = CliRunner().invoke(main, ["check", "-c", str(cfg)])
    assert r.exit_code == 0, r.output
    assert {line.split()[1] for line in r.stdout.splitlines()[1:]} == {
        "demo/glm-4-flash",
        "demo/qwen-plus",
        "demo/deepseek-chat",
    }
