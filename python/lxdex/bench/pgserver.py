"""A throwaway PostgreSQL server from Debian's `postgresql` package, for the
history store's tests (tests/node/conftest.py) and `lxdex bench history --postgres`.

A fresh cluster in a temporary directory, on a free loopback port, with its
unix socket in that directory; `stop()` shuts it down and removes it all.
PostgreSQL refuses to run as root: as root the cluster belongs to the
`postgres` system user (made by the Debian package) and the server runs as
that user via `runuser`. `scripts/setup-system.sh` installs the package.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid


def pg_bindir() -> str | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    return os.path.dirname(found[-1]) if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgServer:
    """`durable=False` (tests) turns fsync and synchronous commit off;
    benchmarks keep PostgreSQL's durable defaults."""

    def __init__(self, bindir: str, durable: bool = False) -> None:
        self.durable = durable
        self.bindir = bindir
        self.root = tempfile.mkdtemp(prefix="lxdex-pg-")
        self.data = os.path.join(self.root, "data")
        self.port = _free_port()
        self.proc: subprocess.Popen | None = None
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            import pwd

            pw = pwd.getpwnam("postgres")  # KeyError: no postgres user (the Debian package makes one)
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
            self.as_user = ["runuser", "-u", "postgres", "--"]

    def start(self) -> None:
        log = os.path.join(self.root, "initdb.log")
        with open(log, "w") as f:
            subprocess.run([*self.as_user, os.path.join(self.bindir, "initdb"), "-D", self.data, "-U", "postgres",
                            "--auth=trust", "-E", "UTF8", "--no-sync", "--locale=C"],
                           stdout=f, stderr=subprocess.STDOUT, check=True, timeout=120)
        self.log = open(os.path.join(self.root, "server.log"), "w")
        self.proc = subprocess.Popen(
            [*self.as_user, os.path.join(self.bindir, "postgres"), "-D", self.data, "-p", str(self.port),
             "-k", self.root, "-c", "listen_addresses=127.0.0.1", "-c", "max_connections=50",
             *([] if self.durable else ["-c", "fsync=off", "-c", "synchronous_commit=off",
                                        "-c", "full_page_writes=off"])],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        import psycopg

        deadline = time.monotonic() + 60
        while True:
            try:
                with psycopg.connect(self.url("postgres"), connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("postgres did not start: " + open(os.path.join(self.root, "server.log")).read())
                time.sleep(0.1)

    def url(self, db: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{db}"

    def create_db(self) -> str:
        import psycopg

        name = "h_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.url("postgres"), autocommit=True) as c:
            c.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            # SIGINT: "fast" shutdown. runuser forwards it to postgres.
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.proc = None
        shutil.rmtree(self.root, ignore_errors=True)
