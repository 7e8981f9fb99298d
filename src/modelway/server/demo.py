"""``modelway serve --demo``: simulated providers from :mod:`modelway.testing`, so every feature can be tried with
no key and no network. Every demo model is named ``demo/...`` and answers from a local simulator, never from the
real provider.
"""

from __future__ import annotations

from typing import Any

from ..config import Config, DeploymentConfig, ModelConfig, Price
from .app import GatewayApp

__all__ = ["DEMO_MODELS", "add_demo"]

#: demo model name → (simulator class name in modelway.testing, provider, upstream model)
DEMO_MODELS: dict[str, tuple[str, str, str]] = {
    "demo/glm-4-flash": ("ZhipuSimulator", "zhipu", "glm-4-flash"),
    "demo/qwen-plus": ("DashScopeSimulator", "dashscope", "qwen-plus"),
    "demo/gpt-4o-mini": ("OpenAISimulator", "openai", "gpt-4o-mini"),
    "demo/deepseek-chat": ("DeepSeekSimulator", "deepseek", "deepseek-chat"),
    "demo/moonshot-v1-8k": ("MoonshotSimulator", "moonshot", "moonshot-v1-8k"),
    "demo/claude-haiku-4-5": ("AnthropicSimulator", "anthropic", "claude-haiku-4-5"),
    "demo/embedding-3": ("ZhipuSimulator", "zhipu", "embedding-3"),
    "demo/text-embedding-3-small": ("OpenAISimulator", "openai", "text-embedding-3-small"),
    "demo/gte-rerank-v2": ("DashScopeSimulator", "dashscope", "gte-rerank-v2"),
    "demo/jina-reranker-v2": ("JinaSimulator", "jina", "jina-reranker-v2-base-multilingual"),
}


def add_demo(config: Config, *, env: dict[str, str] | None = None) -> GatewayApp:
    """A gateway app whose start-up also starts the simulators (in the server's own event loop) and adds the
    ``demo/...`` models over them."""
    from .. import testing

    sims: dict[str, Any] = {}

    async def start(app: GatewayApp) -> None:
        reply = testing.Reply(chunk_delay=0.03)  # visible streaming in a terminal
        for name, (sim_name, provider, model) in DEMO_MODELS.items():
            sim = sims.get(sim_name)
            if sim is None:
                sim = sims[sim_name] = await getattr(testing, sim_name)(default_reply=reply).astart()
            if any(m.name == name for m in app.config.models):
                continue
            app.config.models.append(
                ModelConfig(
                    name=name,
                    deployments=[
                        DeploymentConfig(model=f"{provider}/{model}", api_key=sim.api_key, api_base=sim.base_url)
                    ],
                    description=f"simulated {provider} (modelway.testing.{sim_name}), not the real service",
                    # a simulator costs nothing: priced at zero, so keys with a budget may call it too
                    price=Price(0.0, 0.0),
                )
            )

    async def stop(app: GatewayApp) -> None:
        for sim in sims.values():
            await sim.astop()

    return GatewayApp(config, env=env, on_startup=[start], on_shutdown=[stop])
