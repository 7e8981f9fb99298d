"""Throwaway Redis setups of production shape for the tests: TLS with generated certificates, and a master with a
replica watched by Sentinel. Each is real ``redis-server`` (``throwaway.start_redis``); a test skips, saying why,
when the machine's binary cannot do it (no TLS in its build) or ``openssl`` is missing.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import throwaway

HOST = throwaway.HOST
SERVICE = "mymaster"


@dataclass
class Certs:
    """A CA, a server certificate for ``localhost`` only (not for 127.0.0.1: a hostname mismatch is one URL away),
    and a client certificate, all signed by the CA; and a CA that signed none of them."""

    directory: Path

    def file(self, name: str) -> str:
        return str(self.directory / name)

    @property
    def ca_pem(self) -> str:
        return self.file("ca.pem")

    @property
    def other_ca_pem(self) -> str:
        return self.file("other_ca.pem")

    @property
    def server_pem(self) -> str:
        return self.file("server.pem")

    @property
    def server_key(self) -> str:
        return self.file("server.key")

    @property
    def client_pem(self) -> str:
        return self.file("client.pem")

    @property
    def client_key(self) -> str:
        return self.file("client.key")


def _openssl(directory: Path, *args: str) -> None:
    done = subprocess.run(["openssl", *args], cwd=directory, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)}: {done.stderr}")


def make_certs(directory: Path) -> Certs:
    if shutil.which("openssl") is None:
        pytest.skip("no openssl on PATH to make the test certificates (apt-get install openssl)")
    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for ca in ("ca", "other_ca"):
        _openssl(
            directory, "req", "-x509", *key, "-keyout", f"{ca}.key", "-out", f"{ca}.pem", "-days", "2",
            "-subj", f"/CN=modelway test {ca}", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        )  # fmt: skip
    for name, usage, san in (("server", "serverAuth", "DNS:localhost"), ("client", "clientAuth", None)):
        _openssl(
            directory, "req", "-new", *key, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}"
        )
        ext = [
            "basicConstraints=critical,CA:FALSE",
            "keyUsage=critical,digitalSignature",
            f"extendedKeyUsage={usage}",
            "subjectKeyIdentifier=hash",
            "authorityKeyIdentifier=keyid",
        ]
        if san:
            ext.append(f"subjectAltName={san}")
        (directory / f"{name}.ext").write_text("\n".join(ext) + "\n")
        _openssl(
            directory, "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext",
        )  # fmt: skip
    return Certs(directory)


def start_tls_redis(certs: Certs, *args: str) -> tuple[throwaway.Server, int]:
    """A Redis with a plain port (for the test's own checks) and a TLS port that wants client certificates; the
    TLS port is returned beside the server."""
    try:
        throwaway.find_redis()
    except throwaway.ThrowawayError as exc:
        pytest.skip(str(exc))
    tls_port = throwaway.free_port()
    tls = [
        "--tls-port", str(tls_port), "--tls-cert-file", certs.server_pem, "--tls-key-file", certs.server_key,
        "--tls-ca-cert-file", certs.ca_pem, "--tls-auth-clients", "yes",
    ]  # fmt: skip
    try:
        server = throwaway.start_redis(throwaway.free_port(), *tls, *args)
    except throwaway.ThrowawayError as exc:
        if "tls" in str(exc).lower():
            pytest.skip(f"this redis-server was built without TLS: {str(exc)[-300:]}")
        raise
    return server, tls_port


def port_of(server: throwaway.Server) -> int:
    return int(server.url.rsplit(":", 1)[1].split("/")[0])


@dataclass
class Sentinels:
    """A master and its replica (password ``pw``), and Sentinels (password ``spw``) watching them as ``mymaster``."""

    master: throwaway.Server
    replica: throwaway.Server
    sentinels: list[throwaway.Server]
    stopped: list[throwaway.Server] = field(default_factory=list)

    def url(self, extra: str = "", *, dead_first: int | None = None) -> str:
        """The limiter's URL; ``dead_first``: a port where no Sentinel listens, listed first."""
        hosts = [f"{HOST}:{port_of(s)}" for s in self.sentinels]
        if dead_first is not None:
            hosts.insert(0, f"{HOST}:{dead_first}")
        query = "sentinel_password=spw&socket_timeout=1&socket_connect_timeout=1" + extra
        return f"redis+sentinel://:pw@{','.join(hosts)}/{SERVICE}/3?{query}"

    def master_port(self) -> int:
        """The master's port, as the first Sentinel says now."""
        reply = command(port_of(self.sentinels[0]), "SENTINEL", "get-master-addr-by-name", SERVICE, password="spw")
        return int(reply.split()[-1])

    def stop(self) -> None:
        for s in (*self.sentinels, self.replica, self.master):
            s.stop()


def start_sentinels(count: int = 1) -> Sentinels:
    try:
        throwaway.find_redis()
    except throwaway.ThrowawayError as exc:
        pytest.skip(str(exc))
    auth = ("--requirepass", "pw", "--masterauth", "pw", "--repl-diskless-sync-delay", "0")
    master = throwaway.start_redis(throwaway.free_port(), *auth, password="pw")
    replica = throwaway.start_redis(
        throwaway.free_port(), *auth, "--replicaof", HOST, str(port_of(master)), password="pw"
    )
    wait_until(lambda: "master_link_status:up" in command(port_of(replica), "INFO", "replication", password="pw"))
    sentinels = []
    for _ in range(count):
        config = (
            f"sentinel monitor {SERVICE} {HOST} {port_of(master)} 1\n"
            f"sentinel auth-pass {SERVICE} pw\n"
            f"sentinel down-after-milliseconds {SERVICE} 500\n"
            f"sentinel failover-timeout {SERVICE} 4000\n"
            "requirepass spw\n"
            "sentinel sentinel-pass spw\n"
        )
        sentinels.append(throwaway.start_redis(throwaway.free_port(), "--sentinel", config=config, password="spw"))
    fleet = Sentinels(master, replica, sentinels)
    # the Sentinels know the replica (from the master's INFO) before a test asks for a failover
    wait_until(
        lambda: "slaves=1" in command(port_of(sentinels[0]), "INFO", "sentinel", password="spw"),
    )
    return fleet


def command(port: int, *args: str, password: str | None = None, db: int | None = None, timeout: float = 2.0) -> str:
    """One command on 127.0.0.1:``port`` (after AUTH and SELECT), its reply as text (an array: one item a line)."""
    commands = ([["AUTH", password]] if password is not None else []) + ([["SELECT", str(db)]] if db else [])
    commands.append(list(args))
    with socket.create_connection((HOST, port), timeout=timeout) as s, s.makefile("rb") as reply:
        for c in commands:
            s.sendall(b"*%d\r\n" % len(c) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a.encode()) for a in c))
        out = [_read(reply) for _ in commands]
    for item in out:
        if isinstance(item, Exception):
            raise item
    return str(out[-1])


def _read(reply: object) -> str | Exception:
    line = reply.readline()  # type: ignore[attr-defined]
    kind, rest = line[:1], line[1:-2].decode()
    if kind == b"-":
        return RuntimeError(rest)
    if kind in (b"+", b":"):
        return rest
    if kind == b"$":
        if int(rest) < 0:
            return ""
        return reply.read(int(rest) + 2)[:-2].decode()  # type: ignore[attr-defined,no-any-return]
    if kind == b"*":
        items = [_read(reply) for _ in range(max(0, int(rest)))]
        return "\n".join(str(i) for i in items)
    raise RuntimeError(f"unexpected reply {line!r}")


def wait_until(ok: Callable[[], bool], seconds: float = 20.0) -> None:
    """Wait until ``ok()`` (a connection error or an error reply counts as not yet)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            if ok():
                return
        except (OSError, RuntimeError):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"not true after {seconds:g} s: {ok}")
        time.sleep(0.05)
