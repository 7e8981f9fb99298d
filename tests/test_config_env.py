"""Settings from MODELWAY_* variables over the config file, and *_FILE secrets (config_env, envfile)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest

from modelway import config as config_module
from modelway.config import env_sections, load_config, load_config_explained, parse_config
from modelway.config_env import OTHER_USES, read_overrides
from modelway.envfile import EnvReader
from modelway.errors import ConfigError, InvalidRequestError
from modelway.providers import PROVIDERS, settings_from_env
from modelway.store.deployment_specs import check_deployment

ROOT = Path(__file__).resolve().parents[1]


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def refused(env: dict[str, str], path: str | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path, env=env)
    return str(info.value)


# -- every setting of every section ------------------------------------------------------------------------------------

#: section.field → (the variable's text, the value the config gets, other variables it needs)
VALUES: dict[str, tuple[str, Any, dict[str, str]]] = {
    "server.host": ("0.0.0.0", "0.0.0.0", {}),
    "server.port": ("8080", 8080, {}),
    "server.master_key": ("0123", "0123", {}),  # text as written: not the YAML octal 83
    "server.max_body_bytes": ("2048", 2048, {}),
    "server.max_header_bytes": ("4096", 4096, {}),
    "server.max_headers": ("50", 50, {}),
    "server.header_timeout": ("2.5", 2.5, {}),
    "server.body_timeout": ("30", 30.0, {}),
    "server.shutdown_timeout": ("10", 10.0, {}),
    "server.max_answer_bytes": ("1000", 1000, {}),
    "server.max_event_bytes": ("500", 500, {}),
    "server.timeout": ("1.5", 1.5, {}),
    "server.max_retries": ("0", 0, {}),
    "server.cooldown": ("0", 0.0, {}),
    "server.allow_direct": ("false", False, {}),
    "server.log_level": ("DEBUG", "debug", {}),
    "server.http": ("uvicorn", "uvicorn", {}),
    "server.backlog": ("10", 10, {}),
    "server.upstream_connections": ("64", 64, {}),
    "server.cors_origins": ("https://a.example, https://b.example/", ["https://a.example", "https://b.example"], {}),
    "store.url": ("postgresql://u:p@db:5432/gw", "postgresql://u:p@db:5432/gw", {}),
    "store.redis_url": ("redis://r:6379/1", "redis://r:6379/1", {}),
    "store.key_refresh": ("2", 2.0, {}),
    "usage.flush_interval": ("0.5", 0.5, {}),
    "usage.batch_size": ("10", 10, {}),
    "usage.spill_path": ("/var/spill.jsonl", "/var/spill.jsonl", {}),
    "usage.journal": ("false", False, {}),
    "usage.journal_dir": ("/var/journal", "/var/journal", {}),
    "usage.retention_days": ("30", 30.0, {}),
    "usage.currency": ("CNY", "CNY", {}),
    "metrics.enabled": ("false", False, {}),
    "metrics.public": ("false", False, {"MODELWAY_SERVER__MASTER_KEY": "k"}),
    "request_log.enabled": ("true", True, {}),
    "request_log.format": ("text", "text", {}),
    "request_log.path": ("/var/log/requests", "/var/log/requests", {}),
    "request_log.bodies": ("true", True, {}),
    "request_log.max_body_bytes": ("100", 100, {}),
    "request_log.skip_probes": ("false", False, {}),
    "tracing.enabled": ("false", False, {}),
    "tracing.endpoint": ("http://collector:4318", "http://collector:4318", {}),
    "tracing.service_name": ("gw", "gw", {}),
    "tracing.headers": ('{"x-api-key": "k"}', {"x-api-key": "k"}, {}),
    "tracing.sample_ratio": ("0.25", 0.25, {}),
    "responses.retention_days": ("7", 7.0, {}),
    "responses.max_stored_bytes": ("1000", 1000, {}),
    "responses.memory_max_items": ("5", 5, {}),
    "cluster.controller": ("true", True, {}),
    "cluster.path_prefix": ("/cluster-abc", "/cluster-abc", {}),
    "cluster.allowed_networks": ("10.0.0.0/8,192.168.0.0/16", ["10.0.0.0/8", "192.168.0.0/16"], {}),
    "cluster.heartbeat_expiration": ("30", 30.0, {}),
    "cluster.dispatch": ("lottery", "lottery", {}),
    "cluster.max_workers": ("4", 4, {}),
    "cluster.max_models_per_worker": ("2", 2, {}),
}


def var(setting: str) -> str:
    return "MODELWAY_" + setting.upper().replace(".", "__")


@pytest.mark.parametrize("setting", sorted(VALUES))
def test_every_setting_comes_from_its_variable(setting: str) -> None:
    text, expected, others = VALUES[setting]
    cfg, sources = load_config_explained(None, env={var(setting): text, **others})
    section, field = setting.split(".")
    assert getattr(getattr(cfg, section), field) == expected
    assert sources[setting] == var(setting)


def test_every_section_and_field_has_a_variable() -> None:
    """Each field of every section is a setting a variable gives (a field added later too), and every section of
    the file can be given whole."""
    sections = env_sections()
    assert sections.keys() == config_module._SECTIONS
    env = {f"MODELWAY_{name.upper()}": "" for name in sections}
    env.update({var(f"{s}.{f}"): "" for s, fields in sections.items() for f in fields or ()})
    overrides = read_overrides(EnvReader(env), sections)
    assert set(overrides.sources.values()) == set(env)
    # the table above names only real settings (a field it lacks is still checked here: recognised)
    assert VALUES.keys() <= {f"{s}.{f}" for s, fields in sections.items() for f in fields or ()}


def test_routing_defaults_from_variables_reach_every_model() -> None:
    env = {
        "MODELWAY_MODELS": "[{name: chat, deployments: [demo/glm-4-flash]}]",
        "MODELWAY_ROUTING__STRATEGY": "least_busy",
        "MODELWAY_ROUTING__MAX_ATTEMPTS": "4",
        "MODELWAY_ROUTING__TIMEOUT": "30",
        "MODELWAY_ROUTING__FALLBACKS": "zhipu/glm-4-flash,deepseek/deepseek-chat",
        "MODELWAY_ROUTING__CIRCUIT": "{failures: 3}",
    }
    (model,) = load_config(None, env=env).models
    policy = model.routing
    assert policy is not None and policy.strategy == "least_busy" and policy.max_attempts == 4
    assert policy.timeout == 30.0 and policy.fallbacks == ("zhipu/glm-4-flash", "deepseek/deepseek-chat")
    assert policy.circuit is not None and policy.circuit.failures == 3


def test_whole_sections_as_documents(tmp_path: Path) -> None:
    models = write(tmp_path / "models.yaml", "- name: chat\n  deployments:\n    - model: demo/glm-4-flash\n")
    env = {
        "MODELWAY_MODELS_FILE": models,
        "MODELWAY_PROVIDERS": '{"zhipu": {"api_key": "k", "auth": "jwt"}}',
        "MODELWAY_PRICES": "{deepseek/deepseek-chat: {input: 2, output: 8}}",
        "MODELWAY_SERVER": "{port: 9000, host: 0.0.0.0}",
    }
    cfg, sources = load_config_explained(None, env=env)
    assert [m.name for m in cfg.models] == ["chat"] and cfg.models[0].deployments[0].model == "demo/glm-4-flash"
    assert cfg.providers == {"zhipu": {"api_key": "k", "auth": "jwt"}}
    assert cfg.prices["deepseek/deepseek-chat"].output == 8
    assert (cfg.server.port, cfg.server.host) == (9000, "0.0.0.0")
    assert sources["models"] == "MODELWAY_MODELS_FILE" and sources["server"] == "MODELWAY_SERVER"


# -- how values are read -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "text", "field", "expected"),
    [
        ("MODELWAY_SERVER__ALLOW_DIRECT", "true", ("server", "allow_direct"), True),
        ("MODELWAY_SERVER__ALLOW_DIRECT", "no", ("server", "allow_direct"), False),  # YAML's booleans
        ("MODELWAY_SERVER__TIMEOUT", "1.5", ("server", "timeout"), 1.5),
        (
            "MODELWAY_SERVER__CORS_ORIGINS",
            '["https://a.example", "*"]',
            ("server", "cors_origins"),
            ["https://a.example", "*"],
        ),
        ("MODELWAY_SERVER__CORS_ORIGINS", "", ("server", "cors_origins"), []),
        ("MODELWAY_STORE__URL", "", ("store", "url"), None),  # empty: no store, as an unset ${VAR:-} in the file
        ("MODELWAY_TRACING__ENABLED", "null", ("tracing", "enabled"), None),
        ("MODELWAY_SERVER__MASTER_KEY", "true", ("server", "master_key"), "true"),  # text settings: as written
        ("MODELWAY_SERVER__MASTER_KEY", " 12:30 ", ("server", "master_key"), " 12:30 "),
    ],
)
def test_values_are_yaml_except_text_and_lists(name: str, text: str, field: tuple[str, str], expected: Any) -> None:
    cfg = load_config(None, env={name: text})
    assert getattr(getattr(cfg, field[0]), field[1]) == expected


def test_a_mapping_of_text_keeps_its_values_as_written() -> None:
    """tracing.headers (a mapping of text): its values are taken as written, not as YAML's octal, booleans or
    numbers (an API key 0123456 was sent as 42798, a value on as True)."""
    env = {"MODELWAY_TRACING__HEADERS": "{x-api-key: 0123456, x-flag: on, x-n: 1_000, x-e: 1e3}"}
    cfg = load_config(None, env=env)
    assert cfg.tracing.headers == {"x-api-key": "0123456", "x-flag": "on", "x-n": "1_000", "x-e": "1e3"}


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MODELWAY_SERVER__PORT": "0"}, "MODELWAY_SERVER__PORT (server.port): must be a positive integer (got 0)"),
        ({"MODELWAY_SERVER__PORT": "80a"}, "MODELWAY_SERVER__PORT (server.port): must be a positive integer"),
        ({"MODELWAY_SERVER__HTTP": "h2"}, "MODELWAY_SERVER__HTTP (server.http): must be modelway or uvicorn"),
        ({"MODELWAY_USAGE__RETENTION_DAYS": "0.5"}, "MODELWAY_USAGE__RETENTION_DAYS (usage.retention_days): must be 0"),
        ({"MODELWAY_ROUTING__STRATEGY": "fastest"}, "MODELWAY_ROUTING__STRATEGY (routing.strategy): unknown strategy"),
        ({"MODELWAY_MODELS": "[{name: chat}]"}, "MODELWAY_MODELS (models[0].deployments): required"),
        ({"MODELWAY_SERVER": "[1]"}, "MODELWAY_SERVER (server): must be a mapping"),
        ({"MODELWAY_SERVER": "{prot: 1}"}, "MODELWAY_SERVER (server): unknown field 'prot'"),
        ({"MODELWAY_MODELS": "[{name: chat"}, "MODELWAY_MODELS (models): not valid YAML at line 1, column 13"),
        (
            {"MODELWAY_METRICS__PUBLIC": "false"},
            "MODELWAY_METRICS__PUBLIC (metrics.public): false needs server.master_key",
        ),
    ],
)
def test_errors_name_the_variable_and_the_field(env: dict[str, str], message: str) -> None:
    assert message in refused(env)


# -- names that are no setting ---------------------------------------------------------------------------------------


#: names that look like settings but are none, and how they are refused (the docs show some of them as examples)
REFUSED = {
    "MODELWAY_SERVER__PROT": "MODELWAY_SERVER__PROT: server has no setting 'prot' (its settings: allow_direct,",
    "MODELWAY_SERVR__PORT": "MODELWAY_SERVR__PORT: no settings section 'servr' (sections: cluster,",
    "MODELWAY_SERVER_PORT": "MODELWAY_SERVER_PORT: not a setting; MODELWAY_SERVER__PORT is",
    "MODELWAY_STORE_DSN": "MODELWAY_STORE_DSN: looks like a setting of store but is none",
    "MODELWAY_REQUEST_LOG_PATH": "MODELWAY_REQUEST_LOG_PATH: not a setting; MODELWAY_REQUEST_LOG__PATH is",
    "MODELWAY_MODELS__CHAT": "MODELWAY_MODELS__CHAT: models is given whole, as a YAML or JSON document",
    "MODELWAY_SERVER__PORT__X": "MODELWAY_SERVER__PORT__X: server has no setting 'port__x'",
    "MODELWAY_SERVER__PROT_FILE": "MODELWAY_SERVER__PROT_FILE: server has no setting 'prot'",
    "MODELWAY_USAGE__RETENTION_DAYZ": "MODELWAY_USAGE__RETENTION_DAYZ: usage has no setting 'retention_dayz'",
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_a_name_that_looks_like_a_setting_but_is_none_is_refused(name: str) -> None:
    assert REFUSED[name] in refused({name: "1"})


def test_other_modelway_variables_are_left_alone(tmp_path: Path) -> None:
    env = {name: "1" for name in OTHER_USES} | {"MODELWAY_AGENTS": "1", "MODELWAY_TEST_PG_URL": "x", "MODELWAY_X": "y"}
    assert load_config(None, env=env).server.port == 4000
    # a name of one's own that begins with a section's: fine when the file uses it
    path = write(tmp_path / "c.yaml", "store:\n  url: ${MODELWAY_STORE_DSN}\n")
    assert load_config(path, env={"MODELWAY_STORE_DSN": "sqlite:///:memory:"}).store.url == "sqlite:///:memory:"


def test_every_modelway_name_the_project_uses_is_accepted() -> None:
    """The MODELWAY_* names in the sources, tests, benchmarks, deployment files and docs: each is a setting or is
    left alone, so that no shell or container of the project's own is refused (the examples of refused names
    aside)."""
    files = [p for folder in ("src", "tests", "bench", "deploy", "docs", "scripts") for p in (ROOT / folder).rglob("*")]
    files += list(ROOT.glob("*"))
    names: set[str] = set()
    for path in files:
        if path.is_file() and path.suffix in (".py", ".md", ".yaml", ".yml", ".sh", ".tpl", ".toml", ""):
            names |= set(re.findall(r"\bMODELWAY_[A-Z0-9_]*[A-Z0-9]", path.read_text(errors="replace")))
    assert {"MODELWAY_CONFIG", "MODELWAY_METRICS_DIR", "MODELWAY_AGENTS", "MODELWAY_TEST_PG_URL"} <= names
    for name in sorted(names - REFUSED.keys()):
        read_overrides(EnvReader({name: ""}), env_sections())  # raises for a refused name


# -- the file and the environment ------------------------------------------------------------------------------------


def test_the_environment_wins_over_the_file(tmp_path: Path) -> None:
    path = write(
        tmp_path / "c.yaml",
        "server:\n  port: 5000\n  host: 0.0.0.0\n  master_key: ${MASTER}\nusage:\n  batch_size: 7\n",
    )
    env = {"MASTER": "from-file-ref", "MODELWAY_SERVER__PORT": "7000", "MODELWAY_USAGE__CURRENCY": "EUR"}
    cfg = load_config(path, env=env)
    assert (cfg.server.port, cfg.server.host, cfg.server.master_key) == (7000, "0.0.0.0", "from-file-ref")
    assert (cfg.usage.batch_size, cfg.usage.currency) == (7, "EUR")
    # a whole section replaces the file's; a field's variable wins over its section's
    env = {"MASTER": "m", "MODELWAY_SERVER": "{port: 6000}", "MODELWAY_SERVER__PORT": "6001"}
    cfg = load_config(path, env=env)
    assert (cfg.server.port, cfg.server.host, cfg.server.master_key) == (6001, "127.0.0.1", None)


def test_a_reference_the_environment_replaces_need_not_be_set(tmp_path: Path) -> None:
    path = write(tmp_path / "c.yaml", "server:\n  master_key: ${MODELWAY_MASTER_KEY}\n")
    assert "MODELWAY_MASTER_KEY is not set" in refused({}, path)
    assert load_config(path, env={"MODELWAY_SERVER__MASTER_KEY": "k"}).server.master_key == "k"


def test_values_from_the_environment_are_not_expanded() -> None:
    cfg = load_config(None, env={"MODELWAY_SERVER__MASTER_KEY": "a${B}c", "B": "x"})
    assert cfg.server.master_key == "a${B}c"


def test_relative_paths_from_the_environment_stay_relative_to_the_working_directory(tmp_path: Path) -> None:
    path = write(tmp_path / "c.yaml", "store:\n  url: sqlite:///gw.db\nusage:\n  spill_path: spill.jsonl\n")
    cfg = load_config(path, env={})
    assert cfg.store.url == f"sqlite:///{tmp_path}/gw.db" and cfg.usage.spill_path == str(tmp_path / "spill.jsonl")
    cfg = load_config(path, env={"MODELWAY_STORE__URL": "sqlite:///other.db", "MODELWAY_USAGE__SPILL_PATH": "s.jsonl"})
    assert cfg.store.url == "sqlite:///other.db" and cfg.usage.spill_path == "s.jsonl"
    cfg = load_config(path, env={"MODELWAY_STORE": "{url: 'sqlite:///whole.db'}", "MODELWAY_USAGE": "{}"})
    assert cfg.store.url == "sqlite:///whole.db" and cfg.usage.spill_path == "modelway-usage-spill.jsonl"


# -- *_FILE ----------------------------------------------------------------------------------------------------------


def test_a_setting_from_a_file(tmp_path: Path) -> None:
    key = write(tmp_path / "master-key", "s3cret-master\n")
    cfg, sources = load_config_explained(None, env={"MODELWAY_SERVER__MASTER_KEY_FILE": key})
    assert cfg.server.master_key == "s3cret-master"  # its line break removed
    assert sources == {"server.master_key": "MODELWAY_SERVER__MASTER_KEY_FILE"}
    # an empty variable counts as unset (compose's ${VAR:-}): the file gives the value
    env = {"MODELWAY_SERVER__MASTER_KEY": "", "MODELWAY_SERVER__MASTER_KEY_FILE": key}
    assert load_config(None, env=env).server.master_key == "s3cret-master"


def test_a_reference_reads_var_file_when_var_is_unset(tmp_path: Path) -> None:
    key = write(tmp_path / "zhipu", "id.secret\r\n")
    path = write(
        tmp_path / "c.yaml",
        "models:\n  - name: chat\n    deployments:\n"
        "      - model: zhipu/glm-4-flash\n        api_key: ${ZHIPU_API_KEY}\n",
    )
    cfg = load_config(path, env={"ZHIPU_API_KEY_FILE": key})
    assert cfg.models[0].deployments[0].api_key == "id.secret"
    doc = {"server": {"master_key": "${MK:-fallback}"}}
    assert parse_config(doc, env={"MK_FILE": key}).server.master_key == "id.secret"
    assert parse_config(doc, env={}).server.master_key == "fallback"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MODELWAY_SERVER__MASTER_KEY": "a", "MODELWAY_SERVER__MASTER_KEY_FILE": "{key}"},
         "MODELWAY_SERVER__MASTER_KEY and MODELWAY_SERVER__MASTER_KEY_FILE are both set: set one of them"),
        ({"MK": "a", "MK_FILE": "{key}"}, "MK and MK_FILE are both set: set one of them"),
        ({"MODELWAY_SERVER__MASTER_KEY_FILE": "{missing}"},
         "MODELWAY_SERVER__MASTER_KEY_FILE: cannot read '{missing}': No such file or directory"),
        ({"MK_FILE": "{missing}"}, "MK_FILE: cannot read '{missing}': No such file or directory"),
        ({"MK_FILE": "{dir}"}, "MK_FILE: cannot read '{dir}': Is a directory"),
        ({"MODELWAY_MODELS_FILE": "{binary}"}, "MODELWAY_MODELS_FILE: '{binary}' is not UTF-8 text"),
    ],
)  # fmt: skip
def test_file_errors_name_the_variable_and_the_path(tmp_path: Path, env: dict[str, str], message: str) -> None:
    places = {
        "key": write(tmp_path / "key", "s3cret-in-file"),
        "missing": str(tmp_path / "missing"),
        "dir": str(tmp_path),
        "binary": str(tmp_path / "binary"),
    }
    (tmp_path / "binary").write_bytes(b"\xff\xfe\x00s3cret-in-file")
    path = write(tmp_path / "c.yaml", "server:\n  master_key: ${MK}\n")
    text = refused({k: v.format(**places) for k, v in env.items()}, path)
    assert message.format(**places) in text
    assert "s3cret-in-file" not in text


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_a_file_without_read_permission_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "key"
    secret.write_text("k")
    secret.chmod(0)
    message = refused({"MODELWAY_SERVER__MASTER_KEY_FILE": str(secret)})
    assert message == f"MODELWAY_SERVER__MASTER_KEY_FILE: cannot read {str(secret)!r}: Permission denied"


def test_secrets_never_appear_in_errors(tmp_path: Path) -> None:
    url = write(tmp_path / "url", "mysql://gw:pa55-w0rd-xyz@db/gw\n")
    message = refused({"MODELWAY_STORE__URL_FILE": url})
    assert message.startswith("MODELWAY_STORE__URL_FILE (store.url): must be sqlite:///path.db or postgresql://")
    assert "pa55-w0rd-xyz" not in message and "'<hidden>'" in message
    # the same from a plain variable, and from a ${VAR} reference to a file
    message = refused({"MODELWAY_STORE__URL": "mysql://gw:pa55-w0rd-xyz@db/gw"})
    assert "pa55-w0rd-xyz" not in message and message.startswith("MODELWAY_STORE__URL (store.url):")
    path = write(tmp_path / "c.yaml", "store:\n  url: ${DB_URL}\n")
    message = refused({"DB_URL_FILE": url}, path)
    assert "pa55-w0rd-xyz" not in message and message.startswith("store.url: must be")
    # a document's invalid YAML is located, not quoted
    message = refused({"MODELWAY_PROVIDERS": "{zhipu: {api_key: pa55-w0rd-xyz}"})
    assert "pa55-w0rd-xyz" not in message and "MODELWAY_PROVIDERS (providers): not valid YAML" in message


# -- provider keys and run-time deployments --------------------------------------------------------------------------


def test_provider_keys_from_files(tmp_path: Path) -> None:
    key = write(tmp_path / "zhipu", "id.secret\n")
    zhipu = PROVIDERS["zhipu"]
    assert settings_from_env(zhipu, {"ZHIPUAI_API_KEY_FILE": key}).api_key == "id.secret"
    assert settings_from_env(zhipu, {"ZHIPUAI_API_KEY": "plain"}).api_key == "plain"
    with pytest.raises(ConfigError, match="ZHIPUAI_API_KEY and ZHIPUAI_API_KEY_FILE are both set"):
        settings_from_env(zhipu, {"ZHIPUAI_API_KEY": "plain", "ZHIPUAI_API_KEY_FILE": key})
    with pytest.raises(ConfigError, match="ZHIPUAI_API_KEY_FILE: cannot read"):
        settings_from_env(zhipu, {"ZHIPUAI_API_KEY_FILE": str(tmp_path / "missing")})


def test_a_run_time_deployments_api_key_env_reads_its_file(tmp_path: Path) -> None:
    key = write(tmp_path / "team", "sk-team\n")
    spec = {"model": "openai/gpt-4o-mini", "api_key_env": "TEAM_OPENAI_KEY"}
    assert check_deployment(spec, {"TEAM_OPENAI_KEY_FILE": key}).api_key == "sk-team"
    with pytest.raises(InvalidRequestError, match="api_key_env: TEAM_OPENAI_KEY_FILE: cannot read"):
        check_deployment(spec, {"TEAM_OPENAI_KEY_FILE": str(tmp_path / "missing")})
