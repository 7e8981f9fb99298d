"""The provider registry: provider id → adapter class. One explicit table, greppable and type-checked.

The OpenAI-compatible providers are classes made from their specs at import; each code adapter's module (Zhipu,
DashScope, Anthropic, ...) is imported the first time its class is asked for, so ``import modelway`` does not load
every provider's code (BENCHMARKS.md, decision 35).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator, Mapping, MutableMapping

from ..envfile import env_value
from ..errors import ConfigError
from .base import Adapter, HTTPRequest, ProviderSettings, StreamParser
from .openai_compat import OpenAICompatAdapter, OpenAISpec, make_adapter_class
from .specs import SPECS

__all__ = [
    "CODE_ADAPTERS",
    "PROVIDERS",
    "Adapter",
    "HTTPRequest",
    "OpenAICompatAdapter",
    "OpenAISpec",
    "ProviderSettings",
    "Registry",
    "StreamParser",
    "get_adapter_class",
    "register",
    "settings_from_env",
    "split_model",
]

#: the code adapters: provider id → (module in this package, class), imported on first use
CODE_ADAPTERS: dict[str, tuple[str, str]] = {
    "zhipu": (".zhipu", "ZhipuAdapter"),
    "dashscope": (".dashscope", "DashScopeAdapter"),
    "anthropic": (".anthropic", "AnthropicAdapter"),
    "jina": (".jina", "JinaAdapter"),
    "cohere": (".cohere", "CohereAdapter"),
    "fastchat-worker": (".fastchat_worker", "FastChatWorkerAdapter"),
    "dbgpt-worker": (".fastchat_worker", "DBGPTWorkerAdapter"),
}


class Registry(MutableMapping[str, type[Adapter]]):
    """Provider id → adapter class, in the order providers were added; a code adapter's class is imported when it
    is first looked up (or listed with its class: ``items()``, ``values()``)."""

    def __init__(self) -> None:
        self._entries: dict[str, type[Adapter] | tuple[str, str]] = {}

    def lazy(self, name: str, module: str, attr: str) -> None:
        """Add ``name``, whose class is ``attr`` of ``module`` (relative to this package), imported on first use."""
        self._entries[name] = (module, attr)

    def __getitem__(self, name: str) -> type[Adapter]:
        got = self._entries[name]
        if not isinstance(got, tuple):
            return got
        module, attr = got
        try:
            cls: type[Adapter] = getattr(importlib.import_module(module, __package__), attr)
        except KeyError as exc:  # (not a KeyError out of here: that would read as "no such provider")
            raise ImportError(f"the adapter of {name!r} ({module}.{attr}) failed to load: {exc!r}") from exc
        if cls.name != name:  # (a typo in the table would otherwise register a provider under a wrong name)
            raise RuntimeError(f"{module}.{attr} is the adapter of {cls.name!r}, not of {name!r}")
        # (another thread may have registered or removed ``name`` while the module loaded: that change stands)
        if self._entries.get(name) is got:
            self._entries[name] = cls
        return cls

    def copy(self) -> Registry:
        """A registry of its own with the same entries (what is not loaded yet stays so)."""
        other = Registry()
        other._entries = dict(self._entries)
        return other

    __copy__ = copy

    def __setitem__(self, name: str, cls: type[Adapter]) -> None:
        self._entries[name] = cls

    def __delitem__(self, name: str) -> None:
        del self._entries[name]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({sorted(self._entries)})"


PROVIDERS = Registry()
for _spec in SPECS:
    PROVIDERS[_spec.name] = make_adapter_class(_spec)
for _name, (_module, _attr) in CODE_ADAPTERS.items():
    PROVIDERS.lazy(_name, _module, _attr)


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
