"""Calls to the real providers. Deselected by default; run with ``python -m pytest -m live`` and keys set.
Each test skips when its provider's key is not in the environment."""

from __future__ import annotations

import os

import pytest

import modelway

pytestmark = pytest.mark.live

CASES = [
    ("ZHIPUAI_API_KEY", "zhipu/glm-4-flash", "zhipu/embedding-3"),
    ("DASHSCOPE_API_KEY", "dashscope/qwen-turbo", "dashscope/text-embedding-v3"),
    ("OPENAI_API_KEY", "openai/gpt-4o-mini", "openai/text-embedding-3-small"),
    ("DEEPSEEK_API_KEY", "deepseek/deepseek-chat", None),
    ("MOONSHOT_API_KEY", "moonshot/moonshot-v1-8k", None),
]


@pytest.mark.parametrize(("env", "model", "embed_model"), CASES, ids=[c[1] for c in CASES])
def test_live_provider(env: str, model: str, embed_model: str | None) -> None:
    if not os.environ.get(env):
        pytest.skip(f"{env} is not set")
    with modelway.Client(timeout=60) as client:
        r = client.chat(model, "Reply with the single word: pong", temperature=0, max_tokens=10)
        assert r.content and "pong" in r.content.lower()
        assert r.usage is not None and r.usage.total_tokens > 0
        chunks = list(client.chat(model, "Count from 1 to 5, digits only.", stream=True, max_tokens=30))
        text = "".join(c.content or "" for c in chunks)
        assert "1" in text and "5" in text
        assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
        with pytest.raises(modelway.ProviderError):
            client.chat(model.split("/")[0] + "/no-such-model-xyz", "hi")
        if embed_model:
            e = client.embed(embed_model, ["你好", "world"])
            assert len(e.data) == 2 and len(e.data[0].embedding) > 8
