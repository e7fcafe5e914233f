"""Fixtures for the node tests: a real PostgreSQL server, started per test session.

The server comes from Debian's `postgresql` package (`scripts/setup-system.sh`
installs it; `make test` runs that script). It runs from a fresh cluster in a
temporary directory, on a free loopback port, with its unix socket in that
directory, and is stopped at the end of the session. PostgreSQL refuses to
run as root: as root the cluster belongs to the `postgres` system user (made
by the Debian package) and the server runs as that user via `runuser`.

Without the binaries the PostgreSQL tests skip, except in CI (`CI` set),
where they fail: CI must test the PostgreSQL backend.
"""

from __future__ import annotations

import os

import pytest

from lxdex.bench.pgserver import PgServer, pg_bindir


@pytest.fixture(scope="session")
def pg_server():
    bindir = pg_bindir()
    if bindir is None:
        msg = "PostgreSQL server binaries not installed (run scripts/setup-system.sh as root)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    server = PgServer(bindir)
    try:
        server.start()
        yield server
    finally:
        server.stop()
