"""Fixtures for the feedback store's tests: one real PostgreSQL server per test
session, and a fresh store URL per test on each database.

The server is a private one (``feedback.store.postgres_server.LocalPostgres``)
in a temporary folder, started on first use and stopped when the session
ends; each test gets a database of its own on it. Without PostgreSQL
binaries the PostgreSQL half of the suite is skipped, except under
``CI=true``, where it fails: CI must test what production runs.
"""

from __future__ import annotations

import itertools
import os

import pytest

from feedback.store.postgres_server import FAST_SETTINGS, LocalPostgres, PostgresUnavailable

_databases = itertools.count(1)


@pytest.fixture(scope="session")
def postgres_server():
    """A running private PostgreSQL server (fsync off: tests, not durability of disks)."""
    server = LocalPostgres(FAST_SETTINGS)
    try:
        server.start()
    except PostgresUnavailable as error:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is required under CI=true: {error}")
        pytest.skip(f"no PostgreSQL server here: {error}")
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path) -> str:
    """An empty store's URL: a SQLite file, or a new database on the session's server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'feedback.db'}"
    server = request.getfixturevalue("postgres_server")
    return server.create_database(f"feedback_test_{next(_databases)}")
