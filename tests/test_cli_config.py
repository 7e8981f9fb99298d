"""``modelway config`` and ``modelway serve`` configured by the environment alone (MODELWAY_*, *_FILE)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from modelway.cli import main
from modelway.cli_config import redacted


@pytest.fixture(autouse=True)
def _no_modelway_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tests' own MODELWAY_* variables only (CliRunner adds its env to the process's)."""
    for name in list(os.environ):
        if name.startswith("MODELWAY_"):
            monkeypatch.delenv(name)


def _printed(stdout: str) -> tuple[list[str], Any]:
    comments = [line for line in stdout.splitlines() if line.startswith("#")]
    return comments, yaml.safe_load(stdout)


def test_config_prints_what_the_environment_gave_with_secrets_redacted(tmp_path: Path) -> None:
    key = tmp_path / "master-key"
    key.write_text("mk-s3cret-value\n")
    env = {
        "MODELWAY_SERVER__PORT": "8080",
        "MODELWAY_SERVER__MASTER_KEY_FILE": str(key),
        "MODELWAY_STORE__URL": "postgresql://gw:db-pa55word@db:5432/gw",
        "MODELWAY_MODELS": '[{"name": "chat", "deployments": [{"model": "zhipu/glm-4-flash", "api_key": "zk-1"}]}]',
    }
    r = CliRunner(env=env).invoke(main, ["config"])
    assert r.exit_code == 0, r.output
    comments, printed = _printed(r.stdout)
    assert comments == [
        "# no config file: the embedded defaults, with the environment's settings:",
        "#   models: MODELWAY_MODELS",
        "#   server.master_key: MODELWAY_SERVER__MASTER_KEY_FILE",
        "#   server.port: MODELWAY_SERVER__PORT",
        "#   store.url: MODELWAY_STORE__URL",
    ]
    assert printed["server"]["port"] == 8080 and printed["server"]["master_key"] == "<redacted>"
    assert printed["store"]["url"] == "postgresql://gw:<redacted>@db:5432/gw"
    assert printed["models"][0]["deployments"][0]["api_key"] == "<redacted>"
    for secret in ("mk-s3cret-value", "db-pa55word", "zk-1"):
        assert secret not in r.stdout


def test_config_json_and_an_invalid_variable(tmp_path: Path) -> None:
    r = CliRunner(env={"MODELWAY_USAGE__RETENTION_DAYS": "30"}).invoke(main, ["config", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["environment"] == {"usage.retention_days": "MODELWAY_USAGE__RETENTION_DAYS"}
    assert out["config"]["usage"]["retention_days"] == 30.0
    r = CliRunner(env={"MODELWAY_USAGE__RETENTION_DAYZ": "30"}).invoke(main, ["config"])
    assert r.exit_code == 2 and "MODELWAY_USAGE__RETENTION_DAYZ: usage has no setting 'retention_dayz'" in r.stderr


def test_dash_c_wins_over_modelway_config(tmp_path: Path) -> None:
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("server:\n  port: 5001\n")
    b.write_text("server:\n  port: 5002\n")
    runner = CliRunner(env={"MODELWAY_CONFIG": str(a)})
    r = runner.invoke(main, ["config"])
    assert r.exit_code == 0 and _printed(r.stdout)[1]["server"]["port"] == 5001
    assert r.stdout.startswith(f"# {a}\n")
    r = runner.invoke(main, ["config", "-c", str(b)])
    assert r.exit_code == 0 and _printed(r.stdout)[1]["server"]["port"] == 5002
    # and the environment over either
    r = CliRunner(env={"MODELWAY_CONFIG": str(a), "MODELWAY_SERVER__PORT": "5003"}).invoke(
        main, ["config", "-c", str(b)]
    )
    assert _printed(r.stdout)[1]["server"]["port"] == 5003


def test_serve_refuses_an_invalid_variable_naming_it() -> None:
    r = CliRunner(env={"MODELWAY_SERVER__PORT": "0"}).invoke(main, ["serve"])
    assert r.exit_code == 2
    assert "invalid configuration: MODELWAY_SERVER__PORT (server.port): must be a positive integer" in r.stderr


def test_redacted_hides_keys_headers_and_url_passwords() -> None:
    data = {
        "api_key": "k",
        "max_tokens": 5,
        "key_refresh": 5.0,
        "headers": {"x-team": "t"},
        "url": "redis://:pw@r:6379/0",
        "plain": "https://example.com/a:b@c",
        "options": {"secret_key": "s", "region": "cn"},
        "empty_key": None,
    }
    assert redacted(data) == {
        "api_key": "<redacted>",
        "max_tokens": 5,
        "key_refresh": 5.0,
        "headers": {"x-team": "<redacted>"},
        "url": "redis://:<redacted>@r:6379/0",
        "plain": "https://example.com/a:b@c",
        "options": {"secret_key": "<redacted>", "region": "cn"},
        "empty_key": None,
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _call(url: str, key: str | None) -> tuple[int, bytes]:
    body = json.dumps({"model": "chat", "messages": [{"role": "user", "content": "hi"}]}).encode()
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=body, headers=headers), timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_serve_from_the_environment_alone(tmp_path: Path) -> None:
    """No config file: the port, the master key (a mounted secret), the models and the usage files from variables,
    read by every worker of --workers 2."""
    port = _free_port()
    key = tmp_path / "master-key"
    key.write_text("mk-" + os.urandom(8).hex() + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELWAY_") and not k.endswith("_API_KEY")}
    env.update(
        MODELWAY_SERVER__HOST="127.0.0.1",
        MODELWAY_SERVER__PORT=str(port),
        MODELWAY_SERVER__MASTER_KEY_FILE=str(key),
        MODELWAY_MODELS="[{name: chat, deployments: [demo/glm-4-flash]}]",
        MODELWAY_SERVER__ALLOW_DIRECT="false",
        MODELWAY_USAGE__SPILL_PATH=str(tmp_path / "spill.jsonl"),
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelway.cli", "serve", "--workers", "2"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its workers with it, should it have to be killed
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(url + "/health/readiness", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                os.killpg(proc.pid, signal.SIGKILL)
                raise AssertionError(f"modelway serve did not become ready: {proc.communicate()[1].decode()}")
            time.sleep(0.05)
        for _ in range(4):  # new connections each time: either worker may take one
            assert _call(url + "/v1/chat/completions", None)[0] == 401
            status, raw = _call(url + "/v1/chat/completions", key.read_text().strip())
            assert status == 200 and b"You said: hi" in raw, raw
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=20)
    assert proc.returncode in (0, -15), err.decode()


def test_admin_commands_use_the_environments_store(tmp_path: Path) -> None:
    """With no config file, ``modelway keys`` works on the store MODELWAY_STORE__URL names."""
    runner = CliRunner(env={"MODELWAY_STORE__URL": f"sqlite:///{tmp_path}/gw.db"})
    r = runner.invoke(main, ["keys", "create", "--name", "team-a"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(main, ["keys", "list", "--json"])
    assert r.exit_code == 0 and [k["name"] for k in json.loads(r.stdout)] == ["team-a"]
    r = CliRunner().invoke(main, ["keys", "list"])
    assert r.exit_code == 2
    assert "no config file (-c or MODELWAY_CONFIG), and the environment has no store.url (nor MODELWAY_STORE__URL)" in (
        r.stderr
    )


def test_redacted_hides_passwords_given_as_url_options() -> None:
    """A password may also be a URL's query option: redis-py's (password, sentinel_password, ssl_password) and
    libpq's (password, sslpassword)."""
    data = {
        "redis_url": "rediss+sentinel://s1,s2/main?sentinel_password=sp&ssl_password=kp&password=rp&db=1",
        "url": "postgresql://gw@db/gw?sslmode=require&password=pgpw&sslpassword=kp2",
        "plain": "https://example.com/a?passwords=many",
    }
    assert redacted(data) == {
        "redis_url": "rediss+sentinel://s1,s2/main?sentinel_password=<redacted>&ssl_password=<redacted>"
        "&password=<redacted>&db=1",
        "url": "postgresql://gw@db/gw?sslmode=require&password=<redacted>&sslpassword=<redacted>",
        "plain": "https://example.com/a?passwords=many",
    }


def test_redacted_hides_a_secret_that_yaml_read_as_a_number() -> None:
    """``api_key: 123456789`` in a provider's settings is an int: it was printed as is."""
    data = {"providers": {"qianfan": {"api_key": 123456789, "secret_key": 0.5, "max_key": None, "token": False}}}
    assert redacted(data) == {
        "providers": {"qianfan": {"api_key": "<redacted>", "secret_key": "<redacted>", "max_key": None, "token": False}}
    }
