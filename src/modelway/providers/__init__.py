"""The provider registry: provider id → adapter class. One explicit dict, greppable and type-checked."""

from __future__ import annotations

import os
from collections.abc import Mapping

from ..envfile import env_value
from ..errors import ConfigError
from .anthropic import AnthropicAdapter
from .base import Adapter, HTTPRequest, ProviderSettings, StreamParser
from .cohere import CohereAdapter
from .dashscope import DashScopeAdapter
from .fastchat_worker import DBGPTWorkerAdapter, FastChatWorkerAdapter
from .jina import JinaAdapter
from .openai_compat import OpenAICompatAdapter, OpenAISpec, make_adapter_class
from .specs import SPECS
from .zhipu import ZhipuAdapter

__all__ = [
    "PROVIDERS",
    "Adapter",
    "HTTPRequest",
    "OpenAICompatAdapter",
    "OpenAISpec",
    "ProviderSettings",
    "StreamParser",
    "get_adapter_class",
    "register",
    "settings_from_env",
    "split_model",
]

PROVIDERS: dict[str, type[Adapter]] = {spec.name: make_adapter_class(spec) for spec in SPECS}
PROVIDERS[ZhipuAdapter.name] = ZhipuAdapter
PROVIDERS[DashScopeAdapter.name] = DashScopeAdapter
PROVIDERS[AnthropicAdapter.name] = AnthropicAdapter
PROVIDERS[JinaAdapter.name] = JinaAdapter
PROVIDERS[CohereAdapter.name] = CohereAdapter
PROVIDERS.update({a.name: a for a in (FastChatWorkerAdapter, DBGPTWorkerAdapter)})


def register(adapter: type[Adapter] | OpenAISpec) -> type[Adapter]:
    """Add a provider (an adapter class, or a spec for an OpenAI-compatible one). Returns the adapter class."""
    cls = make_adapter_class(adapter) if isinstance(adapter, OpenAISpec) else adapter
    PROVIDERS[cls.name] = cls
    return cls


def get_adapter_class(provider: str) -> type[Adapter]:
    try:
        return PROVIDERS[provider]
    except KeyError:
        known = ", ".join(sorted(PROVIDERS))
        raise ConfigError(f"unknown provider {provider!r}; known providers: {known}") from None


def split_model(model: str) -> tuple[str, str]:
    """``"zhipu/glm-4-flash"`` → ``("zhipu", "glm-4-flash")``. Model names may contain more slashes."""
    provider, sep, name = model.partition("/")
    if not sep or not provider or not name:
        raise ValueError(model)
    return provider, name


def settings_from_env(cls: type[Adapter], env: Mapping[str, str] | None = None) -> ProviderSettings:
    """Credentials and base URL from the official SDKs' environment variables (``ZHIPUAI_API_KEY``, ...), each also
    from the file its ``_FILE`` twin names (``ZHIPUAI_API_KEY_FILE=/run/secrets/zhipu``; :mod:`modelway.envfile`)."""
    e = os.environ if env is None else env
    key = next((v for k in cls.key_env if (v := env_value(e, k))), None)
    base = next((v for k in cls.base_url_env if (v := env_value(e, k))), None)
    return ProviderSettings(api_key=key, base_url=base)
