"""The provider registry: every provider listed, a code adapter's module imported only when its class is needed."""

from __future__ import annotations

import subprocess
import sys

import pytest

from modelway.providers import CODE_ADAPTERS, PROVIDERS, Registry, get_adapter_class, register
from modelway.providers.base import Adapter
from modelway.providers.openai_compat import OpenAISpec, make_adapter_class


def test_importing_modelway_loads_no_code_adapter() -> None:
    modules = sorted({f"modelway.providers{m}" for m, _ in CODE_ADAPTERS.values()})
    code = (
        "import sys, modelway\n"
        f"loaded = [m for m in {modules!r} if m in sys.modules]\n"
        "assert not loaded, loaded\n"
        "from modelway.providers import PROVIDERS\n"
        "assert 'zhipu' in PROVIDERS and 'modelway.providers.zhipu' not in sys.modules\n"
        "PROVIDERS['zhipu']\n"
        "assert 'modelway.providers.zhipu' in sys.modules and 'modelway.providers.anthropic' not in sys.modules\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("name", sorted(CODE_ADAPTERS))
def test_each_code_adapter_loads_under_its_own_name(name: str) -> None:
    cls = PROVIDERS[name]
    assert issubclass(cls, Adapter) and cls.name == name
    assert get_adapter_class(name) is cls and PROVIDERS.get(name) is cls


def test_listing_gives_every_provider_once_in_the_order_added() -> None:
    names = list(PROVIDERS)
    assert len(names) == len(set(names)) == len(PROVIDERS)
    assert names[-len(CODE_ADAPTERS) :] == list(CODE_ADAPTERS)  # (the OpenAI-compatible specs come first)
    assert dict(PROVIDERS.items()) == {n: PROVIDERS[n] for n in names}


def test_a_wrong_entry_names_what_is_wrong() -> None:
    reg = Registry()
    reg.lazy("not-zhipu", ".zhipu", "ZhipuAdapter")
    assert "not-zhipu" in reg and len(reg) == 1
    with pytest.raises(RuntimeError, match="adapter of 'zhipu', not of 'not-zhipu'"):
        reg["not-zhipu"]
    with pytest.raises(KeyError):
        reg["nobody"]


def test_register_adds_a_provider() -> None:
    before = dict(PROVIDERS.items())
    try:
        cls = register(OpenAISpec(name="my-compat", label="Mine", base_url="http://127.0.0.1:9/v1"))
        assert PROVIDERS["my-compat"] is cls and list(PROVIDERS)[-1] == "my-compat"
    finally:
        del PROVIDERS["my-compat"]
    assert dict(PROVIDERS.items()) == before


def test_a_key_error_while_an_adapter_loads_is_not_an_unknown_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    import modelway.providers as providers

    def failing(module: str, package: str | None = None) -> object:
        raise KeyError("ZHIPU_REGION")

    reg = Registry()
    reg.lazy("zhipu", ".zhipu", "ZhipuAdapter")
    monkeypatch.setattr(providers.importlib, "import_module", failing)
    with pytest.raises(ImportError, match="the adapter of 'zhipu' .* failed to load: KeyError") as err:
        reg["zhipu"]
    assert isinstance(err.value.__cause__, KeyError)
    monkeypatch.undo()
    assert reg["zhipu"].name == "zhipu"  # (a failed load is tried again)


def test_a_change_made_while_an_adapter_loads_stands(monkeypatch: pytest.MonkeyPatch) -> None:
    # another thread registers (or removes) the provider while this one imports its module for a first lookup
    import modelway.providers as providers

    reg = Registry()
    reg.lazy("zhipu", ".zhipu", "ZhipuAdapter")
    mine = make_adapter_class(OpenAISpec(name="zhipu", label="mine", base_url="http://127.0.0.1:9/v1"))
    real = providers.importlib.import_module

    def meanwhile(module: str, package: str | None = None) -> object:
        reg["zhipu"] = mine
        return real(module, package)

    monkeypatch.setattr(providers.importlib, "import_module", meanwhile)
    assert reg["zhipu"].__name__ == "ZhipuAdapter"  # (what this lookup loaded)
    assert reg["zhipu"] is mine


def test_a_copy_is_a_registry_of_its_own() -> None:
    import copy

    reg = Registry()
    reg.lazy("zhipu", ".zhipu", "ZhipuAdapter")
    for other in (reg.copy(), copy.copy(reg)):
        del other["zhipu"]
        assert "zhipu" in reg and "zhipu" not in other


def test_a_gateway_client_reranks_in_jina_s_shape_whatever_is_registered_as_jina() -> None:
    import modelway
    from modelway.providers.jina import JinaAdapter

    saved = PROVIDERS["jina"]
    try:
        register(OpenAISpec(name="jina", label="self-hosted", base_url="http://127.0.0.1:9/v1"))
        client = modelway.AsyncClient(base_url="http://127.0.0.1:4000/v1", api_key="k")
        assert type(client._gateway_rerank) is JinaAdapter
        del PROVIDERS["jina"]
        assert (
            type(modelway.AsyncClient(base_url="http://127.0.0.1:4000/v1", api_key="k")._gateway_rerank) is JinaAdapter
        )
    finally:
        PROVIDERS["jina"] = saved
