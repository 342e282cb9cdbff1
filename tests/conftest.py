"""Fixtures shared by every test layer."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest

from tests.support.services import create_postgres_database, drop_postgres_database


@pytest.fixture(scope="session")
async def postgres_url() -> AsyncIterator[str]:
    """A PostgreSQL database created for this test run and dropped after it."""
    url = await create_postgres_database()
    yield url
    await drop_postgres_database(url)


# OpenSearch has no server on a development machine: its contract tests run only
# when PARLEY_OPENSEARCH_URL is set. Otherwise they are deselected (neither
# passed nor skipped) and the summary says so.
_OPENSEARCH_NOT_RUN = pytest.StashKey[int]()


# Browser tests need Chromium (`apt-get install chromium`; `make test` installs it as
# root). Without it they are deselected with a notice, except under CI=true, where
# they run and fail.
_CHROMIUM_NOT_RUN = pytest.StashKey[int]()


def _deselect_browser_tests(config: pytest.Config, items: list[pytest.Item]) -> None:
    chromium = os.environ.get("PARLEY_TEST_CHROMIUM", "/usr/bin/chromium")
    if os.environ.get("CI", "").lower() in ("1", "true", "yes") or os.access(chromium, os.X_OK):
        return
    dropped = [item for item in items if item.get_closest_marker("chromium")]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [item for item in items if not item.get_closest_marker("chromium")]
        config.stash[_CHROMIUM_NOT_RUN] = len(dropped)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    _deselect_browser_tests(config, items)
    if os.environ.get("PARLEY_OPENSEARCH_URL"):
        return
    kept: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        callspec = getattr(item, "callspec", None)
        on_opensearch = callspec is not None and callspec.params.get("search") == "opensearch"
        (dropped if on_opensearch else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept
        config.stash[_OPENSEARCH_NOT_RUN] = len(dropped)


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    if config.stash.get(_CHROMIUM_NOT_RUN, 0):
        terminalreporter.write_line(
            "Browser tests NOT RUN: no Chromium (apt-get install -y chromium, or make test as root)"
        )
    if config.stash.get(_OPENSEARCH_NOT_RUN, 0):
        terminalreporter.write_line(
            "OpenSearch contract tests NOT RUN: PARLEY_OPENSEARCH_URL is not set"
        )
