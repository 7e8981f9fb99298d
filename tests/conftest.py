"""Fixtures shared by every test directory, and the services some tests need (see ``services.py``)."""

from __future__ import annotations

import pytest

import services


def pytest_configure(config: pytest.Config) -> None:
    services.configure()  # before collection: test modules import services.PG_URL / REDIS_URL


def pytest_unconfigure(config: pytest.Config) -> None:
    services.shutdown()


def pytest_report_header(config: pytest.Config) -> str:
    return "services: " + services.describe(planned=True)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    terminalreporter.write_line("services: " + services.describe())


@pytest.fixture(scope="session")
def redis_server() -> None:
    """The test needs the Redis server: fail clearly, never skip, when it is down."""
    services.ensure(services.REDIS)


@pytest.fixture(scope="session")
def postgres_server() -> None:
    """The test needs the PostgreSQL server: fail clearly, never skip, when it is down."""
    services.ensure(services.POSTGRES)
