"""Finding the master through Redis Sentinel, as Sentinel's client guidelines describe.

The Sentinels are asked in turn for ``SENTINEL get-master-addr-by-name <service>``; the first that answers with an
address is moved to the front of the list, so the next discovery asks it first. The client then connects to that
address and checks with ``ROLE`` that it is a master (during a failover a Sentinel may still name the old one).
Discovery runs whenever the client connects. The client also follows ``+switch-master`` on one Sentinel, and
closes its connection when the master moves (the old master may still take writes until Sentinel demotes it); a
failover that kills the old master breaks the connection anyway. Either way the next command finds the new master.

The I/O is the caller's (``ask``: send commands to one Sentinel, return their replies), so this module holds only
the procedure and its errors.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from .redis_url import RedisSettings

__all__ = ["Address", "Ask", "SentinelError", "discover_master", "master_role", "switched_master"]

Address = tuple[str, int]
#: sends commands to the Sentinel at an address and returns their replies (raising ``OSError`` when it cannot)
Ask = Callable[[Address, list[list[Any]]], Awaitable[list[Any]]]


class SentinelError(ConnectionError):
    """No Sentinel named a master for the service: none answered, or none knows it."""


async def discover_master(settings: RedisSettings, sentinels: list[Address], ask: Ask) -> Address:
    """The master's address for ``settings.service``, from the first Sentinel of ``sentinels`` that knows it;
    that Sentinel is moved to the front of ``sentinels``."""
    assert settings.service is not None
    login: list[list[Any]] = []
    if settings.sentinel_password is not None:
        user = [] if settings.sentinel_username is None else [settings.sentinel_username]
        login.append(["AUTH", *user, settings.sentinel_password])
    failures = []
    for address in list(sentinels):
        try:
            replies = await ask(address, [*login, ["SENTINEL", "get-master-addr-by-name", settings.service]])
        except OSError as exc:
            failures.append(f"{_show(address)}: {exc}")
            continue
        reply = replies[-1]
        if not isinstance(reply, list) or len(reply) != 2:
            failures.append(f"{_show(address)}: knows no master named {settings.service!r}")
            continue
        master = _address(reply)
        if master is None:
            failures.append(f"{_show(address)}: named no usable address for {settings.service!r}")
            continue
        sentinels.remove(address)
        sentinels.insert(0, address)
        return master
    raise SentinelError(f"no Sentinel named the master of {settings.service!r}: {'; '.join(failures)}")


def master_role(reply: Any) -> str | None:
    """``None`` when a ``ROLE`` reply says master, else the role it says (``slave``, ``sentinel``, ...)."""
    role = _text(reply[0]) if isinstance(reply, list) and reply else repr(reply)
    return None if role == "master" else role


def switched_master(message: Any, service: str | None) -> Address | None:
    """The new master's address when ``message`` (a ``+switch-master`` pub/sub message: ``<name> <old ip> <old
    port> <new ip> <new port>``) is about ``service``; else ``None``."""
    if not isinstance(message, list) or len(message) != 3 or message[0] != b"message":
        return None
    fields = _text(message[2]).split()
    if len(fields) != 5 or fields[0] != service:
        return None
    return fields[3], int(fields[4])


def _address(reply: list[Any]) -> Address | None:
    """``[host, port]`` as a Sentinel sends it, else ``None`` (no host, or a port that is none)."""
    host, port = reply
    if not isinstance(host, bytes | str) or not host or not isinstance(port, bytes | str | int):
        return None
    try:
        number = int(port)
    except ValueError:
        return None
    return (_text(host), number) if 0 < number < 65536 else None


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _show(address: Address) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
