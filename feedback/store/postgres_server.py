"""A throwaway PostgreSQL server in a temporary folder, for tests and benchmarks.

The store's promises on PostgreSQL (racing writers, out-of-order commits)
can only be checked against a real server, so the test suite and ``mmrec
bench feedback-store`` start one: ``initdb`` into a temporary folder, a free
local port, trust authentication for a ``mmrec`` role, stopped and deleted
afterwards. The binaries come from the Debian ``postgresql`` package
(``/usr/lib/postgresql/<version>/bin``; ``make test`` installs it where
apt-get is usable), or from ``$MMREC_POSTGRES_BIN``, or ``PATH``.

PostgreSQL refuses to run as root. When we are root the server runs as an
unprivileged system user (``postgres``, which the Debian package creates);
the folder is handed to that user. (pytest-postgresql starts ``pg_ctl`` as the
current user, which is why the tests use this instead.)

What it does not do: keep data (the folder is deleted on stop), listen
beyond 127.0.0.1, or survive its parent being killed with SIGKILL (then the
server keeps running until ``pg_ctl stop -D FOLDER/data``; the folder is
under the system temporary folder, named ``mmrec-postgres-*``).

Example:

    with LocalPostgres() as server:
        url = server.create_database("clicks")    # postgresql+psycopg://mmrec@127.0.0.1:PORT/clicks
        store = FeedbackStore(url)
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Mapping

ROLE = "mmrec"
SERVER_USER = "postgres"

# For tests: durability against a killed *client* is the server's job either
# way; fsync only matters when the machine dies, and costs seconds per test.
FAST_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server binaries here, or no user to run them as."""


def find_binaries() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl``, or None."""
    explicit = os.environ.get("MMREC_POSTGRES_BIN")
    if explicit:
        return Path(explicit) if (Path(explicit) / "pg_ctl").is_file() else None
    debian = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
                    key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    if debian:
        return Path(debian[-1]).parent
    found = shutil.which("pg_ctl")
    return Path(found).resolve().parent if found else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class LocalPostgres:
    """A private PostgreSQL server; start it, make databases, stop it.

    Args:
      settings: server settings (``-c name=value``), e.g. :data:`FAST_SETTINGS`
        for tests; none keeps PostgreSQL's durable defaults (benchmarks).
      binaries: the folder of ``pg_ctl``; found by :func:`find_binaries` if None.

    Raises:
      PostgresUnavailable: (on start) no binaries, or root without a
        ``postgres`` user; the message names the fix.
    """

    def __init__(self, settings: Mapping[str, str] | None = None,
                 binaries: Path | None = None) -> None:
        self.settings = dict(settings or {})
        self.binaries = binaries
        self.folder: Path | None = None
        self.port: int | None = None
        self._as_user: dict = {}

    @property
    def data(self) -> Path:
        assert self.folder is not None, "the server is not started"
        return self.folder / "data"

    def _run(self, *command: str, timeout: float = 120) -> None:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                              check=False, cwd=self.folder, **self._as_user)
        if done.returncode != 0:
            log = self.folder / "server.log" if self.folder else None
            tail = log.read_text()[-2000:] if log and log.is_file() else ""
            raise PostgresUnavailable(f"{' '.join(command[:2])} failed ({done.returncode}): "
                                      f"{done.stderr.strip()[-2000:]}\n{tail}")

    def start(self) -> "LocalPostgres":
        """initdb, then start on a free port; returns self."""
        binaries = self.binaries or find_binaries()
        if binaries is None:
            raise PostgresUnavailable(
                "no PostgreSQL server here (pg_ctl not found in /usr/lib/postgresql/*/bin, "
                "$MMREC_POSTGRES_BIN or PATH): apt-get install postgresql (make setup does "
                "this where apt-get is usable)")
        self.binaries = binaries
        self.folder = Path(tempfile.mkdtemp(prefix="mmrec-postgres-"))
        if os.geteuid() == 0:
            try:
                user = pwd.getpwnam(SERVER_USER)
            except KeyError:
                shutil.rmtree(self.folder, ignore_errors=True)
                raise PostgresUnavailable(
                    "PostgreSQL refuses to run as root and there is no 'postgres' user to "
                    "run it as: apt-get install postgresql creates one (or useradd --system "
                    "postgres)") from None
            os.chown(self.folder, user.pw_uid, user.pw_gid)
            self._as_user = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
        try:
            self._run(str(binaries / "initdb"), "-D", str(self.data), "-U", ROLE, "-A", "trust",
                      "-E", "UTF8", "--no-sync", "--no-instructions")
            for attempt in range(3):
                self.port = _free_port()
                options = [f"-p {self.port}", f"-k {self.folder}",
                           "-c listen_addresses=127.0.0.1"]
                options += [f"-c {name}={value}" for name, value in self.settings.items()]
                try:
                    self._run(str(binaries / "pg_ctl"), "start", "-D", str(self.data), "-w",
                              "-t", "60", "-l", str(self.folder / "server.log"),
                              "-o", " ".join(options))
                    break
                except PostgresUnavailable:
                    if attempt == 2:  # the port was taken between choosing and binding it
                        raise
        except BaseException:
            self.stop()
            raise
        return self

    def url(self, database: str = "postgres") -> str:
        """The SQLAlchemy URL of a database on this server."""
        return f"postgresql+psycopg://{ROLE}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Creates an empty database; returns its URL."""
        import psycopg
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user={ROLE} dbname=postgres",
                             autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        """Stops the server (fast shutdown) and deletes its folder."""
        if self.folder is None:
            return
        if (self.data / "postmaster.pid").is_file():
            try:
                self._run(str(self.binaries / "pg_ctl"), "stop", "-D", str(self.data), "-m",
                          "fast", "-w", "-t", "60")
            except PostgresUnavailable:
                self._run(str(self.binaries / "pg_ctl"), "stop", "-D", str(self.data), "-m",
                          "immediate", "-w")
        shutil.rmtree(self.folder, ignore_errors=True)
        self.folder = None

    def __enter__(self) -> "LocalPostgres":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()
