"""Fixtures: simulators and a running gateway over them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from gw import RunningGateway, gateway_config

from modelway.config import parse_config
from modelway.server import create_app
from modelway.testing import DashScopeSimulator, OpenAISimulator, ZhipuSimulator


@pytest.fixture(scope="module")
def zhipu_sim() -> Iterator[ZhipuSimulator]:
    with ZhipuSimulator() as sim:
        yield sim


@pytest.fixture(scope="module")
def dashscope_sim() -> Iterator[DashScopeSimulator]:
    with DashScopeSimulator() as sim:
        yield sim


@pytest.fixture(scope="module")
def openai_sim() -> Iterator[OpenAISimulator]:
    with OpenAISimulator() as sim:
        yield sim


@pytest.fixture(autouse=True)
def _clean_sims(request: pytest.FixtureRequest) -> None:
    for name in ("zhipu_sim", "dashscope_sim", "openai_sim"):
        if name in request.fixturenames:
            request.getfixturevalue(name).clear()


@pytest.fixture(scope="module")
def start_gateway() -> Iterator[Callable[[dict[str, Any]], RunningGateway]]:
    running: list[RunningGateway] = []

    def start(cfg: dict[str, Any]) -> RunningGateway:
        gw = RunningGateway(create_app(parse_config(cfg, env={}), env={})).start()
        running.append(gw)
        return gw

    yield start
    for gw in running:
        gw.stop()


@pytest.fixture(scope="module")
def gateway(
    start_gateway: Callable[[dict[str, Any]], RunningGateway],
    zhipu_sim: ZhipuSimulator,
    dashscope_sim: DashScopeSimulator,
    openai_sim: OpenAISimulator,
) -> RunningGateway:
    return start_gateway(gateway_config(zhipu_sim, dashscope_sim, openai_sim))
