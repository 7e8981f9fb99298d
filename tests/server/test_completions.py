"""Legacy text completions (``POST /v1/completions``) served by chat models, with the official openai SDK."""

from __future__ import annotations

import httpx
import openai
import pytest
from gw import MASTER_KEY, RunningGateway

from modelway.testing import DashScopeSimulator, OpenAISimulator, Reply, ZhipuSimulator


def sdk(gw: RunningGateway) -> openai.OpenAI:
    return openai.OpenAI(api_key=MASTER_KEY, base_url=gw.base_url, max_retries=0)


@pytest.mark.parametrize("model", ["glm", "qwen", "gpt"])
def test_completion(gateway: RunningGateway, model: str) -> None:
    with sdk(gateway) as c:
        r = c.completions.create(model=model, prompt="你好", max_tokens=20)
    assert r.object == "text_completion" and r.model == model
    assert r.choices[0].text == "You said: 你好" and r.choices[0].finish_reason == "stop"
    assert r.usage is not None and r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens > 0
    assert r.id.startswith("cmpl-")


def test_prompt_and_params_reach_the_provider(gateway: RunningGateway, openai_sim: OpenAISimulator) -> None:
    with sdk(gateway) as c:
        c.completions.create(model="gpt", prompt="Once upon", max_tokens=7, temperature=0, stop=["\n"], seed=1)
    sent = openai_sim.last_request.json
    assert sent["messages"] == [{"role": "user", "content": "Once upon"}]
    assert (sent["max_tokens"], sent["temperature"], sent["stop"], sent["seed"]) == (7, 0, ["\n"], 1)


@pytest.mark.parametrize("model", ["glm", "qwen", "gpt"])
def test_stream_with_echo_and_usage(gateway: RunningGateway, model: str) -> None:
    with sdk(gateway) as c:
        chunks = list(
            c.completions.create(
                model=model, prompt="abc ", echo=True, stream=True, stream_options={"include_usage": True}
            )
        )
    text = "".join(ch.choices[0].text for ch in chunks if ch.choices)
    assert text == "abc You said: abc "
    assert [ch.choices[0].finish_reason for ch in chunks if ch.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0
    assert len({ch.id for ch in chunks}) == 1


def test_reasoning_is_not_text(gateway: RunningGateway, zhipu_sim: ZhipuSimulator) -> None:
    zhipu_sim.push(Reply(text="ok", reasoning="thinking hard"))
    with sdk(gateway) as c:
        chunks = list(c.completions.create(model="glm", prompt="x", stream=True))
    assert "".join(ch.choices[0].text for ch in chunks if ch.choices) == "ok"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"prompt": ["a", "b"]}, "prompt"),
        ({"prompt": [1, 2, 3]}, "prompt"),
        ({}, "prompt"),
        ({"prompt": "a", "suffix": "z"}, "suffix"),
        ({"prompt": "a", "best_of": 3}, "best_of"),
        ({"prompt": "a", "logprobs": 2}, "logprobs"),
        ({"prompt": "a", "echo": "yes"}, "echo"),
        ({"prompt": "a", "max_tokens": 0}, "max_tokens"),
    ],
)
def test_what_a_chat_model_cannot_do_is_a_400(gateway: RunningGateway, body: dict[str, object], param: str) -> None:
    r = httpx.post(
        gateway.base_url + "/completions",
        json={"model": "gpt", **body},
        headers={"authorization": f"Bearer {MASTER_KEY}"},
    )
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param


def test_metrics_say_completions(gateway: RunningGateway, dashscope_sim: DashScopeSimulator) -> None:
    with sdk(gateway) as c:
        c.completions.create(model="qwen", prompt="x")
    text = httpx.get(gateway.url + "/metrics", headers={"authorization": f"Bearer {MASTER_KEY}"}).text
    line = next(
        ln
        for ln in text.splitlines()
        if ln.startswith("modelway_requests_total") and 'endpoint="completions"' in ln and 'model="qwen"' in ln
    )
    assert float(line.rsplit(" ", 1)[1]) >= 1
