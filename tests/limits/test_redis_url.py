"""store.redis_url: every scheme and option parsed, every mistake refused at config load naming the option, and
no password in any message."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelway.config import parse_config
from modelway.errors import ConfigError
from modelway.limits.redis_url import RedisSettings, TLSSettings, parse_redis_url, redact_url


def _config(url: str) -> dict[str, object]:
    return {"store": {"url": "sqlite:///x.db", "redis_url": url}}


class TestParse:
    def test_direct_with_options(self) -> None:
        s = parse_redis_url(
            "redis://app:p%40ss@redis.internal:6380/4?socket_timeout=0.5&socket_connect_timeout=3"
            "&socket_keepalive=false&health_check_interval=15&max_connections=50&timeout=9"
        )
        assert s == RedisSettings(
            scheme="redis",
            host="redis.internal",
            port=6380,
            db=4,
            username="app",
            password="p@ss",
            socket_timeout=0.5,
            socket_connect_timeout=3.0,
            socket_keepalive=False,
            health_check_interval=15.0,
        )
        assert s.where == "redis.internal:6380"

    def test_tls_defaults_verify_everything(self, tmp_path: Path) -> None:
        s = parse_redis_url("rediss://h")
        assert s.tls == TLSSettings(cert_reqs="required", check_hostname=True)
        assert s.socket_keepalive and s.health_check_interval == 0.0

    def test_tls_files_and_modes(self, tmp_path: Path) -> None:
        for name in ("ca.pem", "c.pem", "c.key"):
            (tmp_path / name).write_text("x")
        s = parse_redis_url(
            f"rediss://h:6390?ssl_ca_certs={tmp_path}/ca.pem&ssl_certfile={tmp_path}/c.pem"
            f"&ssl_keyfile={tmp_path}/c.key&ssl_password=kp&ssl_ca_path={tmp_path}&ssl_cert_reqs=optional"
            "&ssl_check_hostname=false"
        )
        assert s.tls == TLSSettings(
            ca_certs=f"{tmp_path}/ca.pem",
            ca_path=str(tmp_path),
            certfile=f"{tmp_path}/c.pem",
            keyfile=f"{tmp_path}/c.key",
            password="kp",
            cert_reqs="optional",
            check_hostname=False,
        )
        assert parse_redis_url("rediss://h?ssl_cert_reqs=none").tls == TLSSettings(
            cert_reqs="none", check_hostname=False
        )

    def test_sentinel(self) -> None:
        s = parse_redis_url(
            "rediss+sentinel://app:pw@s1,s2:26380,[::1]:5000/mymaster/2?sentinel_username=sen&sentinel_password=sp"
        )
        assert s.sentinels == (("s1", 26379), ("s2", 26380), ("::1", 5000))
        assert (s.service, s.db, s.username, s.password) == ("mymaster", 2, "app", "pw")
        assert (s.sentinel_username, s.sentinel_password) == ("sen", "sp")
        assert s.tls is not None
        assert s.where == "the master of 'mymaster' (Sentinel s1:26379,s2:26380,[::1]:5000)"
        assert parse_redis_url("redis+sentinel://s1/m?db=5").db == 5

    def test_unix(self) -> None:
        s = parse_redis_url("unix:///run/redis/redis.sock?db=1&password=pw&socket_keepalive=no")
        assert (s.path, s.db, s.password, s.socket_keepalive) == ("/run/redis/redis.sock", 1, "pw", False)


BAD = [
    ("http://h", "the scheme must be redis://, rediss:// (TLS), unix://, redis+sentinel://"),
    ("redis://h?ssl_ca_certs=/x.pem", "option 'ssl_ca_certs' needs TLS: use rediss://"),
    ("redis://h?sentinel_password=sp", "option 'sentinel_password' needs a Sentinel URL"),
    ("redis://h?colour=blue", "unknown option 'colour' (supported: db, health_check_interval"),
    ("redis://h?db=1&db=2", "option 'db' given twice"),
    ("redis://h/x", "db must be a whole number (got 'x')"),
    ("redis://h?socket_timeout=0", "socket_timeout must be a positive number of seconds"),
    ("redis://h?socket_connect_timeout=soon", "socket_connect_timeout must be a number of seconds"),
    ("redis://h?health_check_interval=-1", "health_check_interval must be a non-negative number"),
    ("redis://h?socket_keepalive=maybe", "socket_keepalive must be true or false"),
    ("rediss://h?ssl_cert_reqs=always", "ssl_cert_reqs must be none, optional or required"),
    ("rediss://h?ssl_cert_reqs=none&ssl_check_hostname=true", "ssl_check_hostname=true needs the certificate"),
    ("rediss://h?ssl_ca_certs=/nonexistent/ca.pem", "ssl_ca_certs: no file /nonexistent/ca.pem"),
    ("rediss://h?ssl_ca_path=/nonexistent", "ssl_ca_path: /nonexistent is not a directory"),
    ("redis+sentinel://s1:26379", "needs the master's service name"),
    ("redis+sentinel://s1/m/1/2", "path is /service_name or /service_name/db"),
    ("redis+sentinel://s1,,s2/m", "none empty"),
    ("redis+sentinel://s1:x/m", "the port of Sentinel 's1:x' must be a whole number"),
    ("redis://h:99999", "invalid host or port"),
    ("unix://", "needs the socket's path"),
]


class TestConfig:
    @pytest.mark.parametrize(("url", "message"), BAD)
    def test_refused_at_load_naming_the_field(self, url: str, message: str) -> None:
        with pytest.raises(ConfigError, match=r"^store\.redis_url: ") as info:
            parse_config(_config(url))
        assert message in str(info.value)

    def test_a_password_is_never_in_the_message(self) -> None:
        url = "redis://app:s3cret@h/0?password=s3cret&sentinel_password=s3cret&colour=blue"
        with pytest.raises(ConfigError) as info:
            parse_config(_config(url))
        assert "s3cret" not in str(info.value) and "app:***@h" in str(info.value)

    @pytest.mark.parametrize("sep", ["/", "?", "#"])
    def test_a_password_with_an_unencoded_delimiter_is_refused_unquoted(self, sep: str) -> None:
        """A base64 password (an Azure access key) pasted as is: its ``/`` (or a ``?``, ``#``) ends the URL's user
        part early, and what follows was quoted as a port, a db or an option, or the URL was shown whole."""
        url = f"redis://app:Kq3x{sep}Zt9w=@h:6379/0"
        with pytest.raises(ConfigError) as info:
            parse_config(_config(url))
        message = str(info.value)
        assert "Kq3x" not in message and "Zt9w" not in message, message
        assert "percent-encoded" in message and "h:6379/0" in message

    def test_a_keyfile_without_its_certificate(self, tmp_path: Path) -> None:
        (tmp_path / "c.key").write_text("x")
        with pytest.raises(ConfigError, match="ssl_keyfile needs ssl_certfile"):
            parse_config(_config(f"rediss://h?ssl_keyfile={tmp_path}/c.key"))

    def test_valid_urls_are_kept_as_given(self) -> None:
        for url in ("redis://h:6379/0", "rediss://h?ssl_cert_reqs=none", "redis+sentinel://a,b/m", "unix:///r.sock"):
            assert parse_config(_config(url)).store.redis_url == url


def test_redact_url() -> None:
    assert redact_url("redis://u:pw@h:1/0") == "redis://u:***@h:1/0"
    assert redact_url("redis://:pw@h") == "redis://:***@h"
    assert redact_url("redis+sentinel://:pw@a:1,b:2/m/0?sentinel_password=sp&ssl_password=kp&db=1") == (
        "redis+sentinel://:***@a:1,b:2/m/0?sentinel_password=***&ssl_password=***&db=1"
    )
    assert redact_url("rediss://h?ssl_ca_certs=/etc/ca.pem&password=x") == (
        "rediss://h?ssl_ca_certs=/etc/ca.pem&password=***"
    )
    assert redact_url("redis://u@h") == "redis://u@h"
    assert redact_url("redis://:Kq3x/Zt9w@h:1/0") == "redis://***@h:1/0"
    assert redact_url("redis://u:Kq3x?Zt9w@h:1/0") == "redis://***@h:1/0"
