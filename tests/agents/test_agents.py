"""Claude Code and Codex CLI, the real npm packages, through a real ``modelway serve --demo`` (what
``scripts/try-agents`` runs, as assertions).

Opt-in (marker ``agents``): ``scripts/test -m agents tests/agents``, or ``MODELWAY_AGENTS=1`` with any selection.
The first run installs both CLIs from npm into ``~/.cache/modelway-agents`` (pinned versions, about 10-15 s and
800 MB; later runs reuse them); without node/npm or the registry the tests skip and say why.

Each test asserts that the CLI exited 0, that its output is the simulator's answer ("You said: ..."), and that the
gateway counted the request(s) on the CLI's route in ``/metrics`` (``endpoint="messages"`` for Claude Code,
``endpoint="responses"`` for Codex) with status 200. The tool-call tests also check that the tool's output (a file
the CLI read on its own) reached the upstream simulator as a ``tool`` message of the second turn.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import agent_harness as h
import pytest

pytestmark = pytest.mark.agents

MASTER_KEY = "sk-modelway-agents-test"


def _wanted(config: pytest.Config) -> bool:
    return os.environ.get("MODELWAY_AGENTS") == "1" or "agents" in (config.option.markexpr or "")


@pytest.fixture(scope="module")
def clis(request: pytest.FixtureRequest) -> h.Clis:
    if not _wanted(request.config):
        pytest.skip("real agent CLIs from npm (a first install takes ~15 s): run with -m agents or MODELWAY_AGENTS=1")
    try:
        return h.ensure_clis()
    except h.Unavailable as exc:
        pytest.skip(f"Claude Code / Codex CLI unavailable: {exc}")


@pytest.fixture(scope="module")
def sim(clis: h.Clis) -> Iterator[Any]:
    s = h.scripted_simulator()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def gateway(clis: h.Clis, sim: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[h.Gateway]:
    gw = h.Gateway(
        tmp_path_factory.mktemp("gateway"),
        master_key=MASTER_KEY,
        extra_models=[h.tool_model_config(sim.base_url, sim.api_key)],
    )
    with gw:
        yield gw


@pytest.fixture
def workdir() -> Iterator[Path]:
    with h.scratch("test-") as d:
        yield d


def _check(outcome: h.Outcome, gw: h.Gateway) -> None:
    if not outcome.ok:
        log = "\n".join(gw.log().splitlines()[-15:])
        pytest.fail(f"{outcome.report()}\n--- gateway log (last lines) ---\n{log}", pytrace=False)


def test_claude_code_says_hello(clis: h.Clis, gateway: h.Gateway, workdir: Path) -> None:
    _check(h.claude_hello(clis, gateway, MASTER_KEY, workdir), gateway)


def test_claude_code_tool_call(clis: h.Clis, gateway: h.Gateway, sim: Any, workdir: Path) -> None:
    _check(h.claude_tool(clis, gateway, sim, MASTER_KEY, workdir), gateway)


def test_codex_says_hello(clis: h.Clis, gateway: h.Gateway, workdir: Path) -> None:
    _check(h.codex_hello(clis, gateway, MASTER_KEY, workdir), gateway)


def test_codex_tool_call(clis: h.Clis, gateway: h.Gateway, sim: Any, workdir: Path) -> None:
    _check(h.codex_tool(clis, gateway, sim, MASTER_KEY, workdir), gateway)


def test_claude_code_reasoning(clis: h.Clis, gateway: h.Gateway, sim: Any, workdir: Path) -> None:
    _check(h.claude_reasoning(clis, gateway, sim, MASTER_KEY, workdir), gateway)


def test_codex_reasoning(clis: h.Clis, gateway: h.Gateway, sim: Any, workdir: Path) -> None:
    _check(h.codex_reasoning(clis, gateway, sim, MASTER_KEY, workdir), gateway)


def test_claude_code_reasoning_then_tool_call(clis: h.Clis, gateway: h.Gateway, sim: Any, workdir: Path) -> None:
    _check(h.claude_reasoning_tool(clis, gateway, sim, MASTER_KEY, workdir), gateway)


def test_codex_reasoning_then_tool_call(clis: h.Clis, gateway: h.Gateway, sim: Any, workdir: Path) -> None:
    _check(h.codex_reasoning_tool(clis, gateway, sim, MASTER_KEY, workdir), gateway)


def test_wrong_key_is_refused(clis: h.Clis, gateway: h.Gateway, workdir: Path) -> None:
    """The gateway's master key is enforced on both routes: a CLI with a wrong key fails (and does not hang)."""
    claude = h.run_claude(clis, gateway.url, "sk-wrong", "Say hello", workdir=workdir, timeout=120)
    codex = h.run_codex(clis, gateway.url + "/v1", "sk-wrong", "Say hello", workdir=workdir, timeout=120)
    for run in (claude, codex):
        assert not run.timed_out, run.describe()
        assert run.returncode != 0, f"{run.describe()}: {run.stdout}"
        assert "You said" not in run.stdout
