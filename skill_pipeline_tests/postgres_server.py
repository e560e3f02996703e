"""A throwaway PostgreSQL server for tests: ``initdb`` into a temporary folder, start on a free
loopback port, drop everything on exit.

Why not ``pytest-postgresql``: sessions and CI run as root and PostgreSQL refuses root
("pg_ctl: cannot be run as root"). Here, as root, ``initdb`` and ``pg_ctl`` run as the ``postgres``
system user (``runuser``) on a folder that user owns; as any other user they run directly.

Missing binaries are an error, not a skip: ``make test`` runs ``scripts/ensure_postgres.sh``
first, which installs PostgreSQL from the OS packages where it is absent, so a missing server means
the machine was not set up the way CI sets it up, and a skipped test would hide exactly that.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

# Debian/Ubuntu keep the server binaries outside PATH; other systems put them on it.
BIN_GLOBS = ("/usr/lib/postgresql/*/bin", "/usr/pgsql-*/bin", "/usr/local/pgsql/bin")
SYSTEM_USER = "postgres"
SUPERUSER = "dagster"


class PostgresUnavailable(RuntimeError):
    """PostgreSQL cannot be started here; the message says what is missing and how to fix it."""


class PostgresServer(BaseModel):
    """Where a running test server listens and how to log in (password auth over TCP)."""

    model_config = ConfigDict(frozen=True)

    host: str
    port: int
    username: str
    password: str = Field(repr=False)  # a throwaway, still kept out of reprs and assertion messages
    db_name: str
    data_dir: Path

    def dsn(self, db_name: str | None = None) -> str:
        return (
            f"host={self.host} port={self.port} user={self.username} password={self.password} "
            f"dbname={db_name or self.db_name}"
        )

    def postgres_db(self) -> dict[str, object]:
        """The ``storage: postgres: postgres_db:`` block of a dagster.yaml for this server."""
        return {
            "hostname": self.host,
            "port": self.port,
            "username": self.username,
            "password": self.password,
            "db_name": self.db_name,
        }

    def dagster_env(self) -> dict[str, str]:
        """The variables ``deploy/dagster.yaml`` reads its connection from."""
        return {
            "DAGSTER_PG_HOST": self.host,
            "DAGSTER_PG_PORT": str(self.port),
            "DAGSTER_PG_USER": self.username,
            "DAGSTER_PG_PASSWORD": self.password,
            "DAGSTER_PG_DB": self.db_name,
        }


def find_bin_dir() -> Path:
    """The folder holding ``initdb`` and ``pg_ctl``, newest major version first."""
    candidates = [Path(found) for pattern in BIN_GLOBS for found in sorted(glob.glob(pattern), key=_version_key, reverse=True)]
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    for folder in candidates:
        if (folder / "initdb").is_file() and (folder / "pg_ctl").is_file():
            return folder
    raise PostgresUnavailable(
        "PostgreSQL server binaries (initdb, pg_ctl) were not found in "
        f"{', '.join(BIN_GLOBS)} or on PATH. `make test` installs them through scripts/ensure_postgres.sh "
        "(apt-get install postgresql); run that script, or install PostgreSQL, then rerun the tests."
    )


def _version_key(path: str) -> tuple[int, ...]:
    digits = "".join(ch if ch.isdigit() else " " for ch in path).split()
    return tuple(int(d) for d in digits) or (0,)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _as_server_user(command: list[str]) -> tuple[list[str], int | None]:
    """The command to run and the uid that must own the data folder."""
    if os.geteuid() != 0:
        return command, None
    try:
        account = pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        raise PostgresUnavailable(
            f"running as root, PostgreSQL needs the system user {SYSTEM_USER!r} to own its data, and there is "
            "none; the OS package creates it (scripts/ensure_postgres.sh)"
        ) from None
    runuser = shutil.which("runuser")
    if runuser is None:
        raise PostgresUnavailable("running as root and `runuser` (util-linux) is missing: cannot start PostgreSQL")
    return [runuser, "-u", SYSTEM_USER, "--", *command], account.pw_uid


def _run(command: list[str], what: str, timeout: float = 60) -> None:
    wrapped, _ = _as_server_user(command)
    done = subprocess.run(wrapped, capture_output=True, text=True, timeout=timeout, cwd="/")
    if done.returncode != 0:
        raise PostgresUnavailable(f"{what} failed (exit {done.returncode}): {done.stderr.strip() or done.stdout.strip()}")


@contextmanager
def running_postgres(db_name: str = "dagster", start_attempts: int = 3) -> Iterator[PostgresServer]:
    """A fresh server with one empty database, stopped and deleted on exit (also on failure).

    The folder is made with ``mkdtemp`` directly under the system temp dir: pytest's ``tmp_path``
    sits under a root-only folder the ``postgres`` user could not enter.
    """
    bin_dir = find_bin_dir()
    folder = Path(tempfile.mkdtemp(prefix="skill-pipeline-pg-"))
    data_dir = folder / "data"
    password = secrets.token_hex(12)
    _, owner = _as_server_user([])
    started = False
    try:
        if owner is not None:
            os.chown(folder, owner, -1)
        (folder / "pwfile").write_text(password + "\n")
        if owner is not None:
            os.chown(folder / "pwfile", owner, -1)
        _run(
            [str(bin_dir / "initdb"), "-D", str(data_dir), "-U", SUPERUSER, "--pwfile", str(folder / "pwfile"),
             "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C", "--no-sync"],
            "initdb",
        )
        (folder / "pwfile").unlink()
        port = 0
        for attempt in range(1, start_attempts + 1):
            # The free port can be taken between the probe and the start; try another then.
            port = free_port()
            options = f"-p {port} -c listen_addresses=127.0.0.1 -k {data_dir} -c fsync=off -c full_page_writes=off"
            try:
                _run([str(bin_dir / "pg_ctl"), "-D", str(data_dir), "-l", str(folder / "server.log"), "-o", options,
                      "-w", "-t", "30", "start"], f"pg_ctl start on 127.0.0.1:{port}")
                started = True
                break
            except PostgresUnavailable:
                if attempt == start_attempts:
                    log = folder / "server.log"
                    tail = log.read_text()[-2000:] if log.exists() else ""
                    raise PostgresUnavailable(f"PostgreSQL did not start on 127.0.0.1:{port}; server log:\n{tail}") from None
        server = PostgresServer(host="127.0.0.1", port=port, username=SUPERUSER, password=password,
                                db_name=db_name, data_dir=data_dir)
        _create_database(server)
        yield server
    finally:
        # Also after a start that timed out: a postmaster may be up without having said so.
        if started or (data_dir / "postmaster.pid").exists():
            try:
                _run([str(bin_dir / "pg_ctl"), "-D", str(data_dir), "-m", "immediate", "-w", "stop"], "pg_ctl stop")
            finally:
                shutil.rmtree(folder, ignore_errors=True)
        else:
            shutil.rmtree(folder, ignore_errors=True)


def _create_database(server: PostgresServer, timeout: float = 10) -> None:
    import psycopg

    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(server.dsn("postgres"), autocommit=True, connect_timeout=3) as conn:
                conn.execute(f'create database "{server.db_name}"')
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
