"""The limiter against a real redis-server over TLS (a CA, a server certificate for ``localhost``, client
certificates required), and with an ACL user: what works, and the clear error of what must not.

Each test runs on asyncio's loop and on uvloop (whose TLS is its own).
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis_servers import Certs, command, make_certs, port_of, start_tls_redis

from modelway.limits import LimiterUnavailableError, Limits
from modelway.limits.redis import RedisLimiter
from modelway.router.shared_redis import RedisRouterState

Run = Callable[[Coroutine[Any, Any, Any]], Any]
LIMITS = Limits(rpm=100, tpm=10_000, max_parallel=5)


@pytest.fixture(scope="module")
def certs() -> Iterator[Certs]:
    with tempfile.TemporaryDirectory(prefix="modelway-test-tls-") as d:
        yield make_certs(Path(d))


@pytest.fixture(scope="module")
def tls(certs: Certs) -> Iterator[tuple[int, int]]:
    """(plain port, TLS port) of a Redis whose TLS port wants a client certificate."""
    server, tls_port = start_tls_redis(certs)
    try:
        yield port_of(server), tls_port
    finally:
        server.stop()


def _url(certs: Certs, port: int, host: str = "localhost", *, client: bool = True, extra: str = "") -> str:
    query = f"ssl_ca_certs={certs.ca_pem}&socket_timeout=2&socket_connect_timeout=2"
    if client:
        query += f"&ssl_certfile={certs.client_pem}&ssl_keyfile={certs.client_key}"
    return f"rediss://{host}:{port}/0?{query}{extra}"


async def _round_trip(url: str) -> None:
    """acquire + release through the limiter at ``url``; the counts land in Redis."""
    limiter = RedisLimiter(url, prefix=f"mw:test:{uuid.uuid4().hex}:")
    try:
        await limiter.ping()
        permit = await limiter.acquire("k", LIMITS)
        assert permit.remaining_requests == 99
        await limiter.release(permit, tokens=7)
        permit = await limiter.acquire("k", LIMITS)
        assert (permit.remaining_requests, permit.remaining_tokens) == (98, 10_000 - 7)
        await limiter.release(permit)
    finally:
        await limiter.aclose()


async def _refused(url: str) -> str:
    """The limiter's error at ``url`` (it must be LimiterUnavailableError)."""
    limiter = RedisLimiter(url)
    try:
        with pytest.raises(LimiterUnavailableError) as info:
            await limiter.acquire("k", LIMITS)
        return str(info.value)
    finally:
        await limiter.aclose()


class TestTLS:
    def test_verified_with_the_ca_file_and_a_client_certificate(
        self, run: Run, certs: Certs, tls: tuple[int, int]
    ) -> None:
        run(_round_trip(_url(certs, tls[1])))

    def test_the_router_state_speaks_tls_too(self, run: Run, certs: Certs, tls: tuple[int, int]) -> None:
        async def main() -> None:
            state = RedisRouterState(_url(certs, tls[1]))
            try:
                await state.sync()
                assert state.available
            finally:
                await state.aclose()

        run(main())

    def test_hostname_mismatch_is_refused_clearly(self, run: Run, certs: Certs, tls: tuple[int, int]) -> None:
        # the certificate is for localhost, not 127.0.0.1
        message = run(_refused(_url(certs, tls[1], "127.0.0.1")))
        assert f"TLS with 127.0.0.1:{tls[1]} failed: the server's certificate was refused" in message
        assert "IP address mismatch, certificate is not valid for '127.0.0.1'" in message
        assert "see ssl_ca_certs and ssl_check_hostname" in message
        run(_round_trip(_url(certs, tls[1], "127.0.0.1", extra="&ssl_check_hostname=false")))

    def test_a_server_of_another_ca_is_refused(self, run: Run, certs: Certs, tls: tuple[int, int]) -> None:
        url = _url(certs, tls[1]).replace(certs.ca_pem, certs.other_ca_pem)
        message = run(_refused(url))
        assert "the server's certificate was refused (self-signed certificate in certificate chain" in message
        # the system's CAs do not know the test CA either
        message = run(_refused(url.replace(f"ssl_ca_certs={certs.other_ca_pem}&", "")))
        assert "the server's certificate was refused" in message

    def test_cert_reqs_none_skips_the_check(self, run: Run, certs: Certs, tls: tuple[int, int]) -> None:
        url = _url(certs, tls[1], "127.0.0.1").replace(f"ssl_ca_certs={certs.ca_pem}", "ssl_cert_reqs=none")
        run(_round_trip(url))

    def test_without_a_client_certificate_the_server_refuses(
        self, run: Run, certs: Certs, tls: tuple[int, int]
    ) -> None:
        message = run(_refused(_url(certs, tls[1], client=False)))
        assert f"localhost:{tls[1]}" in message
        assert "the server wants a client certificate: give ssl_certfile and ssl_keyfile" in message


class TestACL:
    """A user with only what modelway needs (the ACL the README gives), over TLS with a database number."""

    ACL = "~mw:* ~modelway:cluster:* -@all +@read +@write +@scripting +@connection +select -@dangerous +role"

    @pytest.fixture
    def user(self, tls: tuple[int, int]) -> Iterator[str]:
        name = f"mwtest-{uuid.uuid4().hex[:8]}"
        command(tls[0], "ACL", "SETUSER", name, "on", ">pa ss:@/w", "resetkeys", *self.ACL.split())
        try:
            yield name
        finally:
            command(tls[0], "ACL", "DELUSER", name)

    def test_the_limiter_and_router_state_work_as_the_user(
        self, run: Run, certs: Certs, tls: tuple[int, int], user: str
    ) -> None:
        url = _url(certs, tls[1]).replace("localhost", f"{user}:pa%20ss%3A%40%2Fw@localhost").replace("/0?", "/5?")

        async def main() -> None:
            await _round_trip(url)
            limiter = RedisLimiter(url)
            try:
                await limiter.seed_spend("k", "total", 1.5)
                assert await limiter.spent("k", "total") == 1.5
            finally:
                await limiter.aclose()
            state = RedisRouterState(url)
            try:
                await state.sync()
                assert state.available
            finally:
                await state.aclose()

        run(main())
        assert command(tls[0], "SELECT", "5") == "OK"

    def test_a_wrong_password_is_a_clear_error_without_the_password(
        self, run: Run, certs: Certs, tls: tuple[int, int], user: str
    ) -> None:
        url = _url(certs, tls[1]).replace("localhost", f"{user}:wrong-s3cret@localhost")
        message = run(_refused(url))
        assert f"refused the login as user '{user}': WRONGPASS" in message
        assert "wrong-s3cret" not in message and f"{user}:***@localhost" in message

    def test_a_command_the_user_may_not_run_is_a_clear_error(
        self, run: Run, certs: Certs, tls: tuple[int, int], user: str
    ) -> None:
        command(tls[0], "ACL", "SETUSER", user, "-evalsha")
        url = _url(certs, tls[1]).replace("localhost", f"{user}:pa%20ss%3A%40%2Fw@localhost")
        message = run(_refused(url))
        assert "NOPERM" in message and "evalsha" in message.lower()
