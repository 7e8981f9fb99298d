"""The fault-injection rig: a faulty and a healthy simulator, a raw fault server, a refused port, and one gateway
over them (with a SQLite usage ledger), all shared by the whole directory.

The gateway serves, for each faulty upstream ``U`` in ``sim`` (an OpenAI simulator), ``raw`` (the raw fault
server) and ``dead`` (a port that refuses connections):

* ``U-1``: the faulty deployment alone;
* ``U-2``: the faulty deployment first (weight 1000) and the healthy simulator second (weight 0.001: it comes
  first about once in a million requests).

Every alias works for chat and for embeddings. The server's limits are small (:data:`fault_harness.TIMEOUT`,
:data:`fault_harness.MAX_ANSWER`, :data:`fault_harness.MAX_EVENT`), ``max_retries`` is 0 and ``cooldown`` 0, and
the cool-downs a provider's ``Retry-After`` starts are undone after each test, so cases do not influence each
other.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fault_harness import FAULTY_TEXT, HEALTHY_TEXT
from fault_rig import FAULTY_KEY, HEALTHY_KEY, Rig, RunningGateway, rig_config
from raw_fault_server import RawFaultServer

from modelway.config import parse_config
from modelway.server import create_app
from modelway.testing import OpenAISimulator, Reply


@pytest.fixture(scope="session")
def faulty_sim() -> Iterator[OpenAISimulator]:
    with OpenAISimulator(api_key=FAULTY_KEY, default_reply=Reply(FAULTY_TEXT)) as sim:
        yield sim


@pytest.fixture(scope="session")
def healthy_sim() -> Iterator[OpenAISimulator]:
    with OpenAISimulator(api_key=HEALTHY_KEY, default_reply=Reply(HEALTHY_TEXT)) as sim:
        yield sim


@pytest.fixture(scope="session")
def raw_server() -> Iterator[RawFaultServer]:
    with RawFaultServer() as server:
        yield server


@pytest.fixture(scope="session")
def dead_port() -> Iterator[int]:
    """A port that refuses connections: bound, never listening (so no other server can take it meanwhile)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


@pytest.fixture(scope="session")
def start_gateway() -> Iterator[Callable[[dict[str, Any]], RunningGateway]]:
    running: list[RunningGateway] = []

    def start(cfg: dict[str, Any]) -> RunningGateway:
        gw = RunningGateway(create_app(parse_config(cfg, env={}), env={})).start()
        running.append(gw)
        return gw

    yield start
    for gw in running:
        gw.stop()


@pytest.fixture(scope="session")
def rig(
    start_gateway: Callable[[dict[str, Any]], RunningGateway],
    faulty_sim: OpenAISimulator,
    healthy_sim: OpenAISimulator,
    raw_server: RawFaultServer,
    dead_port: int,
    tmp_path_factory: pytest.TempPathFactory,
) -> Rig:
    data = tmp_path_factory.mktemp("faults-rig")
    dead = f"http://127.0.0.1:{dead_port}/v1"
    cfg = rig_config(faulty_sim.base_url, healthy_sim.base_url, raw_server.base_url, dead, data)
    return Rig(start_gateway(cfg), faulty_sim, healthy_sim, raw_server, dead_port)


@pytest.fixture(autouse=True)
def _fresh(request: pytest.FixtureRequest) -> Iterator[None]:
    """Each test starts with empty queues and records, and no deployment cooling down."""
    rig_: Rig | None = request.getfixturevalue("rig") if "rig" in request.fixturenames else None
    if rig_ is not None:
        rig_.reset()
    yield
    if rig_ is not None:
        rig_.reset()
