"""A PostgreSQL cluster and a Redis of the hostile suite's own, on free loopback
ports, so faults (restart PostgreSQL, stop Redis) never touch the machine's
shared services. Both are stopped, always, with bounded waits.

    with own_postgres() as pg, own_redis() as rds:
        pg.url          # postgres://postgres@127.0.0.1:<port>/postgres
        pg.restart()    # pg_ctl restart -m fast
        pg.crash()      # pg_ctl stop -m immediate: no shutdown checkpoint
        pg.kill_postmaster()   # kill -9 of the postmaster; its backends die
        pg.start()      # after a crash: crash recovery (WAL replay)
        rds.stop(); rds.kill(); rds.start()
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from tests.stack import free_port


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise RuntimeError(f"PostgreSQL's {name} is not installed")
    return found[-1]


def _as_postgres(*argv: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """initdb and pg_ctl refuse to run as root: run them as the postgres user."""
    command = list(argv)
    if os.geteuid() == 0:
        command = ["runuser", "-u", "postgres", "--", *command]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, check=True
    )


class PostgresCluster:
    def __init__(self, *, options: str = "") -> None:
        self.options = options  # more server options, e.g. "-c fsync=on"
        self.root = Path(tempfile.mkdtemp(prefix="wallet-hostile-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.log = self.root / "postgres.log"
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/postgres"

    def init(self) -> None:
        _as_postgres(
            _pg_bin("initdb"),
            *("-D", str(self.data), "-U", "postgres", "--auth=trust"),
            *("--no-sync", "-E", "UTF8", "--locale=C.UTF-8"),
        )

    def _ctl(self, *args: str, timeout: float = 60) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 "
            f"-c unix_socket_directories={self.root} -c fsync=off "
            f"-c max_connections=200 -c full_page_writes=off {self.options}"
        )
        _as_postgres(
            _pg_bin("pg_ctl"),
            *("-D", str(self.data), "-l", str(self.log), "-o", options),
            *("-w", "-t", "30"),
            *args,
            timeout=timeout,
        )

    def start(self) -> None:
        self._ctl("start")

    def restart(self) -> None:
        self._ctl("restart", "-m", "fast")

    def stop(self) -> None:
        self._ctl("stop", "-m", "fast")

    def stop_immediately(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            self._ctl("stop", "-m", "immediate", timeout=30)

    def crash(self) -> None:
        """`pg_ctl stop -m immediate`: every server process quits at once, without
        a shutdown checkpoint; the next start runs crash recovery."""
        self._ctl("stop", "-m", "immediate", timeout=30)

    def postmaster_pid(self) -> int:
        return int((self.data / "postmaster.pid").read_text().split()[0])

    def kill_postmaster(self) -> int:
        """`kill -9` of the postmaster (as an OOM killer would). Its backends
        notice and exit on their own; this waits until they have (a new
        postmaster refuses to start while one still holds the shared memory).
        The pid killed."""
        pid = self.postmaster_pid()
        backends = _children_of(pid)
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while _alive(pid) or any(_alive(child) for child in backends):
            if time.monotonic() > deadline:
                raise TimeoutError("PostgreSQL's backends outlived their postmaster")
            time.sleep(0.05)
        return pid

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()


@contextlib.contextmanager
def own_postgres(**options) -> Iterator[PostgresCluster]:
    cluster = PostgresCluster(**options)
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        if cluster.running():
            cluster.stop_immediately()
        shutil.rmtree(cluster.root, ignore_errors=True)


def _alive(pid: int) -> bool:
    """Running (a zombie, dead but not yet reaped, is not)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[0] not in ("Z", "X")


def _children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid:
                    found.append(int(entry.name))
    return found


class RedisServer:
    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        self.log = Path(tempfile.mkstemp(prefix="wallet-hostile-redis-")[1])

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [
                    shutil.which("redis-server") or "/usr/bin/redis-server",
                    *("--port", str(self.port), "--bind", "127.0.0.1"),
                    *("--save", "", "--appendonly", "no", "--daemonize", "no"),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        import redis

        deadline = time.monotonic() + 20
        while True:
            try:
                redis.Redis(port=self.port, socket_connect_timeout=1).ping()
                return
            except redis.RedisError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError(self.log.read_text()) from None
                time.sleep(0.05)

    def kill(self) -> None:
        """`kill -9`: no shutdown, nothing saved (the suite's Redis keeps nothing
        on disk), every queued and unacknowledged message gone."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)


@contextlib.contextmanager
def own_redis() -> Iterator[RedisServer]:
    server = RedisServer()
    try:
        server.start()
        yield server
    finally:
        server.stop()
        server.log.unlink(missing_ok=True)


@contextlib.contextmanager
def faulty_stack(*, prefix: str, env: dict[str, str], **options) -> Iterator[tuple]:
    """A stack of its own for a fault test: its own PostgreSQL cluster and Redis
    (which the test may stop and restart), a fresh database, two web workers
    with a small pool; `options` go to running_stack (e.g. email_url). Yields
    (pg, redis, stack, database url)."""
    from tests.stack import fresh_database, running_stack

    with own_postgres() as pg, own_redis() as rds:
        with fresh_database(pg.url, prefix=prefix) as db_url:
            with running_stack(
                database_url=db_url,
                redis_url=rds.url,
                web_workers=2,
                env={"DATABASE_POOL_MAX": "8", "DATABASE_POOL_TIMEOUT": "3", **env},
                **options,
            ) as stack:
                yield pg, rds, stack, db_url
