from __future__ import annotations

import re
from pathlib import Path

import pytest

from modelway.config import load_config, parse_config
from modelway.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def test_example_config_loads() -> None:
    cfg = load_config(ROOT / "modelway.example.yaml", env={"ZHIPUAI_API_KEY": "a.b"})
    assert cfg.server.port == 4000 and cfg.server.master_key is None
    chat = cfg.models[0]
    assert chat.name == "chat" and [d.model for d in chat.deployments] == ["zhipu/glm-4-flash", "dashscope/qwen-plus"]
    assert chat.deployments[0].weight == 3 and chat.deployments[0].timeout == 60
    assert chat.deployments[1].params == {"enable_search": False}
    assert cfg.providers["zhipu"] == {"api_key": "a.b", "auth": "key"}
    assert cfg.models[2].merge_system is True


def test_env_references() -> None:
    cfg = parse_config({"server": {"master_key": "${KEY}"}}, env={"KEY": "sk-1"})
    assert cfg.server.master_key == "sk-1"
    with pytest.raises(ConfigError, match=r"config.server.master_key: environment variable KEY is not set"):
        parse_config({"server": {"master_key": "${KEY}"}}, env={})


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"server": {"port": "eighty"}}, r"server.port: must be a positive integer"),
        ({"server": {"prot": 1}}, r"server: unknown field 'prot'"),
        ({"server": {"upstream_connections": 0}}, r"server.upstream_connections: must be a positive integer"),
        ({"server": {"backlog": 1.5}}, r"server.backlog: must be a positive integer"),
        ({"models": [{"name": "a"}]}, r"models\[0\].deployments: required"),
        ({"models": [{"name": "a", "deployments": []}]}, r"models\[0\].deployments: must be a non-empty list"),
        (
            {"models": [{"name": "a", "deployments": [{"model": "glm-4"}]}]},
            r"models\[0\].deployments\[0\].model: 'glm-4' is not provider/model",
        ),
        (
            {"models": [{"name": "a", "deployments": [{"model": "zhipu/glm-4", "weight": 0}]}]},
            r"models\[0\].deployments\[0\].weight: must be a positive number",
        ),
        (
            {"models": [{"name": "a", "deployments": [{"model": "zhipu/glm-4", "api_base": "ftp://x"}]}]},
            r"models\[0\].deployments\[0\].api_base: must be an http\(s\) URL",
        ),
        (
            {"models": [{"name": "a", "deployments": ["zhipu/x"]}, {"name": "a", "deployments": ["zhipu/y"]}]},
            r"models\[1\].name: 'a' is defined twice",
        ),
        ({"providers": {"zhipuu": {}}}, r"providers.zhipuu: unknown provider"),
        ([1, 2], r"the top level must be a mapping"),
        ({"store": {"url": "mysql://x"}}, r"store.url: must be sqlite:///path.db or postgresql://"),
        (
            {"store": {"url": "sqlite:///x.db", "redis_url": "http://x"}},
            r"store.redis_url: the scheme must be redis://",
        ),
        ({"store": {"key_refresh": 0}}, r"store.key_refresh: must be a positive number"),
        ({"usage": {"batch_size": 1.5}}, r"usage.batch_size: must be a positive integer"),
        ({"metrics": {"enabled": "yes"}}, r"metrics.enabled: must be true or false"),
        ({"prices": {"zhipu/glm-4": {"input": -1}}}, r"prices.zhipu/glm-4.input: must be a non-negative number"),
        (
            {"models": [{"name": "a", "price": {"in": 1}, "deployments": ["zhipu/x"]}]},
            r"models\[0\].price: unknown field 'in'",
        ),
    ],
)
def test_invalid_config_names_the_field(doc: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(doc, env={})


def test_unreadable_and_invalid_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("server: [unclosed\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(bad)


def test_control_plane_sections_and_prices() -> None:
    cfg = parse_config(
        {
            "store": {"url": "${DB:-sqlite:///x.db}", "redis_url": "redis://127.0.0.1:6379/1"},
            "usage": {"currency": "CNY"},
            "server": {"master_key": "m"},
            "metrics": {"public": False},
            "prices": {"deepseek/deepseek-chat": {"input": 2, "output": 8}},
            "models": [
                {
                    "name": "m",
                    "price": {"input": 1},
                    "deployments": ["zhipu/glm-4-flash", {"model": "dashscope/qwen-plus", "price": {"output": 3}}],
                }
            ],
        },
        env={},
    )
    assert cfg.control_plane and cfg.store.url == "sqlite:///x.db" and cfg.store.redis_url.endswith("/1")
    assert cfg.usage.currency == "CNY" and cfg.metrics.public is False and cfg.metrics.enabled is True
    assert cfg.prices["deepseek/deepseek-chat"].cost(1_000_000, 500_000) == 6.0
    assert cfg.models[0].price is not None and cfg.models[0].price.cost(2_000_000, 7) == 2.0
    assert cfg.models[0].deployments[1].price is not None and cfg.models[0].deployments[1].price.input == 0.0
    with pytest.raises(ConfigError, match="metrics.public: false needs server.master_key"):
        parse_config({"metrics": {"public": False}}, env={})
    # an empty store URL (an unset ${VAR:-}) means no control plane
    assert not parse_config({"store": {"url": "${DB:-}"}}, env={}).control_plane


def test_string_deployments_shorthand() -> None:
    cfg = parse_config({"models": [{"name": "m", "deployments": "zhipu/glm-4-flash"}]}, env={})
    assert cfg.models[0].deployments[0].model == "zhipu/glm-4-flash"


def test_server_connection_settings_reach_the_listener_and_the_transport(monkeypatch: pytest.MonkeyPatch) -> None:
    import resource

    from modelway.server.gateway import Gateway
    from modelway.server.runner import raise_open_files, serve_config

    cfg = parse_config({"server": {"backlog": 100, "upstream_connections": 300}}, env={})
    assert serve_config(object(), cfg).backlog == 100
    assert Gateway(cfg, env={}).transport.limit == 300
    asked: list[tuple[int, int]] = []
    monkeypatch.setattr(resource, "getrlimit", lambda _: (256, 100_000))
    monkeypatch.setattr(resource, "setrlimit", lambda _, pair: asked.append(pair))
    raise_open_files(cfg, workers=2)
    assert asked == [((300 * 2 + 1024) * 2, 100_000)]  # a client and a provider connection per request, per worker
    asked.clear()
    monkeypatch.setattr(resource, "getrlimit", lambda _: (256, 1000))
    raise_open_files(cfg)
    assert asked == [(1000, 1000)]  # as far as the hard limit goes


@pytest.mark.parametrize("value", [["Bearer sk-a1b2c3"], {"Bearer": "sk-a1b2c3"}, True, None])
def test_a_header_value_that_is_not_text_is_refused(value: object) -> None:
    """A header's value is text (a number is written as it reads); a list, a mapping, a YAML boolean (``yes``) or
    nothing was sent as Python wrote it (``['Bearer ...']``, ``True``, ``None``). The message does not quote it."""
    dep = {"model": "openai/gpt-4o", "headers": {"x-team": value}}
    docs = [
        ({"tracing": {"headers": {"x-team": value}}}, "tracing.headers.x-team"),
        ({"models": [{"name": "m", "deployments": [dep]}]}, "models[0].deployments[0].headers.x-team"),
    ]
    for doc, where in docs:
        with pytest.raises(ConfigError, match=rf"^{re.escape(where)}: must be text") as info:
            parse_config(doc)
        assert "sk-a1b2c3" not in str(info.value)
    dep["headers"] = {"x-version": 2}
    assert parse_config({"models": [{"name": "m", "deployments": [dep]}]}).models[0].deployments[0].headers == {
        "x-version": "2"
    }
