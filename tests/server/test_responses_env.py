"""A gateway for the /v1/responses tests: every kind of upstream behind one model name each, a SQLite store (so that
virtual keys exist and responses are kept in SQL), and helpers to read what an upstream received."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import openai
from gw import MASTER_KEY, RunningGateway

from modelway.testing import (
    AnthropicSimulator,
    BaseSimulator,
    DashScopeSimulator,
    DeepSeekSimulator,
    OpenAISimulator,
    ZhipuSimulator,
)

#: model name → (simulator fixture name, the upstream path a translated or native request reaches)
UPSTREAMS: dict[str, tuple[str, str]] = {
    "glm": ("zhipu_sim", "/api/paas/v4/chat/completions"),
    "qwen": ("dashscope_sim", "/api/v1/services/aigc/text-generation/generation"),
    "gpt": ("openai_sim", "/v1/responses"),  # OpenAI itself: its own Responses API
    "gpt-chat": ("openai_sim", "/v1/chat/completions"),  # an OpenAI-compatible server (vLLM): translated
    "claude": ("anthropic_sim", "/v1/messages"),
    "deepseek": ("deepseek_sim", "/chat/completions"),
}
MODELS = list(UPSTREAMS)
#: upstreams whose simulator streams reasoning
REASONING = {"glm", "qwen", "gpt", "claude", "deepseek"}


def config(
    db: Path,
    zhipu: ZhipuSimulator,
    dashscope: DashScopeSimulator,
    oai: OpenAISimulator,
    anthropic: AnthropicSimulator,
    deepseek: DeepSeekSimulator,
) -> dict[str, Any]:
    def dep(model: str, sim: BaseSimulator) -> dict[str, Any]:
        return {"name": model, "deployments": [{"model": model, "api_key": sim.api_key, "api_base": sim.base_url}]}

    models = [
        dep("zhipu/glm-4-flash", zhipu) | {"name": "glm"},
        dep("dashscope/qwen-plus", dashscope) | {"name": "qwen"},
        dep("openai/gpt-4o-mini", oai) | {"name": "gpt"},
        dep("vllm/gpt-4o-mini", oai) | {"name": "gpt-chat"},
        dep("anthropic/claude-sonnet-4-5", anthropic) | {"name": "claude"},
        dep("deepseek/deepseek-chat", deepseek) | {"name": "deepseek"},
    ]
    return {
        "server": {"master_key": MASTER_KEY, "max_retries": 0},
        "store": {"url": f"sqlite:///{db}", "key_refresh": 3600},
        "usage": {"flush_interval": 0.05, "spill_path": str(db.parent / "spill.jsonl")},
        "models": models,
    }


def client(gw: RunningGateway, key: str = MASTER_KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.base_url, api_key=key, max_retries=0)


async def new_key(gw: RunningGateway) -> str:
    headers = {"Authorization": f"Bearer {MASTER_KEY}"}
    async with aiohttp.ClientSession() as s, s.post(gw.url + "/admin/keys", json={"name": "rk"}, headers=headers) as r:
        body = await r.json()
        assert r.status == 201, body
        return str(body["key"])


def check_stream(events: list[Any]) -> Any:
    """The stream rules every client relies on; the final event."""
    types = [e.type for e in events]
    assert types[:2] == ["response.created", "response.in_progress"], types[:3]
    seqs = [e.sequence_number for e in events]
    assert all(b > a for a, b in zip(seqs, seqs[1:], strict=False)), seqs
    assert events[0].response.id.startswith("resp_")
    ids = {e.response.id for e in events if hasattr(e, "response")}
    assert len(ids) == 1, ids
    added: list[int] = []
    item_ids: dict[int, str] = {}
    done: list[int] = []
    for e in events:
        if e.type == "response.output_item.added":
            assert e.output_index == len(added), (e.output_index, added)
            added.append(e.output_index)
            item_ids[e.output_index] = e.item.id
        elif e.type == "response.output_item.done":
            assert e.output_index in item_ids
            assert e.item.id == item_ids[e.output_index]
            done.append(e.output_index)
        elif hasattr(e, "output_index"):
            assert e.output_index in item_ids, e
            if hasattr(e, "item_id"):
                assert e.item_id == item_ids[e.output_index], e
    final = events[-1]
    assert final.type in ("response.completed", "response.incomplete", "response.failed"), types
    if final.type != "response.failed":
        assert sorted(done) == added
        assert all(t not in ("response.completed", "response.incomplete") for t in types[:-1])
        usage = final.response.usage
        assert isinstance(usage.input_tokens, int) and isinstance(usage.output_tokens, int)
        assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    return final
