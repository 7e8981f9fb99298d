"""Local provider simulators: real HTTP servers that speak each provider's wire protocol.

Each simulator listens on an ephemeral loopback port, answers with scripted :class:`Reply` objects (or
an echo of the last user message by default) and injects :class:`Fault` objects on demand::

    from modelway.testing import Fault, Reply, ZhipuSimulator

    with ZhipuSimulator() as sim:
        sim.push(Reply("你好"), Fault.http(429, retry_after=1))
        client = SomeClient(api_key=sim.api_key, base_url=sim.base_url)
        ...
        assert sim.requests[0].json["model"] == "glm-4-flash"

``start()``/``stop()`` (or ``with``) serve from a daemon thread with its own event loop; ``await
astart()``/``await astop()`` (or ``async with``) serve inside the running event loop.
"""

from ._common import RecordedRequest, count_tokens, fake_embedding
from ._rerank import rerank_score
from ._server import BaseSimulator
from .anthropic import AnthropicSimulator
from .dashscope import DashScopeSimulator
from .openai import DashScopeCompatibleSimulator, DeepSeekSimulator, MoonshotSimulator, OpenAISimulator
from .rerank import CohereSimulator, JinaSimulator
from .script import Fault, Reply
from .zhipu import ZhipuSimulator

__all__ = [
    "AnthropicSimulator",
    "BaseSimulator",
    "CohereSimulator",
    "DashScopeCompatibleSimulator",
    "DashScopeSimulator",
    "DeepSeekSimulator",
    "Fault",
    "JinaSimulator",
    "MoonshotSimulator",
    "OpenAISimulator",
    "RecordedRequest",
    "Reply",
    "ZhipuSimulator",
    "count_tokens",
    "fake_embedding",
    "rerank_score",
]
