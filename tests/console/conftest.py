from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelway.config import parse_config
from modelway.server import create_app
from modelway.testing import OpenAISimulator

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "server"))  # (the server tests' running gateway)
from gw import MASTER_KEY, RunningGateway


@pytest.fixture(scope="module")
def sims() -> Iterator[tuple[OpenAISimulator, OpenAISimulator]]:
    with OpenAISimulator() as a, OpenAISimulator() as b:
        yield a, b


@pytest.fixture(scope="module")
def gateway(
    sims: tuple[OpenAISimulator, OpenAISimulator], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningGateway]:
    """A gateway with a SQLite store (keys, usage, run-time changes, bodies), one alias over two deployments."""
    a, b = sims
    tmp: Path = tmp_path_factory.mktemp("console")
    doc = {
        "server": {"master_key": MASTER_KEY, "max_retries": 0},
        "store": {"url": f"sqlite:///{tmp / 'gw.db'}", "key_refresh": 0.5},
        "usage": {"flush_interval": 0.1, "spill_path": str(tmp / "spill.jsonl")},
        "request_log": {"bodies": True},  # (kept with the records for the request log's dialog; no log lines)
        "models": [
            {
                "name": "gpt",
                "price": {"input": 1, "output": 2},
                "deployments": [
                    {"model": "openai/gpt-4o-mini", "api_key": a.api_key, "api_base": a.base_url},
                    {"model": "openai/gpt-4o", "api_key": b.api_key, "api_base": b.base_url},
                ],
            }
        ],
    }
    gw = RunningGateway(create_app(parse_config(doc, env={}))).start()
    try:
        yield gw
    finally:
        gw.stop()
