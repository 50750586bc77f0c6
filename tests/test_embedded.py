"""`make run`'s database: the embedded PostgreSQL (wallet_project/embedded.py),
started the way `make run` starts it but in a temporary directory. The operator
commands run against it from "another terminal" (DEBUG=true, no DATABASE_URL);
Ctrl-C stops it cleanly and the next start keeps the data. The server listens on
a unix socket in the temporary directory only: the machine's PostgreSQL (5432)
is never touched. Also: settings are PostgreSQL only."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from tests.stack import REPO, manage, process_stats

# What `make serve` does first (migrate), then it stays up like honcho would.
_SERVE = '"$0" manage.py migrate --noinput && echo MIGRATED && exec sleep 600'

_SEED = """
from decimal import Decimal
from accounts.models import User
from transactions.ledger import wallet_deposit
from wallets.services import wallet_create
user = User.objects.create_user(email="kept@example.com", password="sturdy-kettle-4821")
wallet_deposit(wallet=wallet_create(owner=user, currency="KZT"), amount=Decimal("1000"))
"""


def _terminal_env(data_dir: Path) -> dict[str, str]:
    """A developer's second terminal: DEBUG=true and nothing about the database
    but where the embedded server keeps its data."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "VIRTUAL_ENV")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env.update(
        DJANGO_SETTINGS_MODULE="wallet_project.settings",
        DEBUG="true",
        EMBEDDED_POSTGRES_DIR=str(data_dir),
        # No broker traffic into the checkout's var/celery (a running `make run`
        # would take it).
        CELERY_TASK_ALWAYS_EAGER="true",
        EMAIL_URL="consolemail://",
        PYTHONUNBUFFERED="1",
        PYTHONDONTWRITEBYTECODE="1",
    )
    return env


class Starter:
    """`python -m wallet_project.embedded -- <serve>`, as `make run` runs it."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.log_path = data_dir.with_name("starter.log")
        self.env = _terminal_env(data_dir)
        with open(self.log_path, "wb") as log:
            self.popen = subprocess.Popen(
                [
                    *(sys.executable, "-m", "wallet_project.embedded", "--"),
                    *("sh", "-c", _SERVE, sys.executable),
                ],
                cwd=REPO,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Its own process group, like `make run` in a terminal: Ctrl-C is
                # a SIGINT to the whole group.
                start_new_session=True,
            )
        try:
            self.wait_for("MIGRATED")
        except BaseException:
            self.kill()
            raise

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for(self, text: str, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log():
            if self.popen.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"no {text!r} from the starter:\n{self.log()}")
            time.sleep(0.2)

    def interrupt(self) -> int:
        """Ctrl-C: SIGINT to the foreground process group; the exit code."""
        os.killpg(self.popen.pid, signal.SIGINT)
        return self.popen.wait(timeout=90)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(timeout=10)


def _server_processes(data_dir: Path) -> set[int]:
    """The live postmaster of `data_dir` and its children (checkpointer, ...)."""
    live = {pid: fields for pid, fields in process_stats() if fields[0] != "Z"}
    postmasters = set()
    for pid in live:
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv[0].endswith(b"/postgres") and str(data_dir).encode() in argv:
            postmasters.add(pid)
    return postmasters | {pid for pid, f in live.items() if int(f[1]) in postmasters}


def _alive(pid: int) -> bool:
    return any(p == pid and f[0] != "Z" for p, f in process_stats())


def _count_users(data_dir: Path) -> int:
    with psycopg.connect(host=str(data_dir), user="postgres", dbname="wallet") as conn:
        row = conn.execute(
            "SELECT count(*) FROM accounts_user WHERE email = 'kept@example.com'"
        ).fetchone()
        assert row is not None
        return row[0]


@pytest.fixture
def data_dir() -> Iterator[Path]:
    # Short (a unix socket path is limited to ~100 bytes) and traversable by
    # `nobody`, whom the server runs as when the tests run as root.
    root = Path(tempfile.mkdtemp(prefix="wallet-emb-"))
    root.chmod(0o755)
    data = root / "pg"
    try:
        yield data
    finally:
        # Whatever a failed test left running, stopped without waiting.
        for pid in _server_processes(data):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGQUIT)
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.e2e
def test_embedded_server_serves_the_operator_commands_and_keeps_its_data(data_dir):
    starter = Starter(data_dir)
    try:
        log = starter.log()
        assert "new cluster" in log
        assert "unix socket only" in log
        postmaster = (data_dir / "postmaster.pid").read_text().splitlines()
        assert postmaster[4] == str(data_dir)  # the socket's directory
        assert postmaster[5] == ""  # listen_addresses: no TCP at all
        initdb_stamp = (data_dir / "PG_VERSION").stat().st_mtime_ns
        server = _server_processes(data_dir)
        assert len(server) > 1  # the postmaster and its background processes

        env = starter.env  # another terminal: no DATABASE_URL
        manage("shell", "-c", _SEED, env=env)
        as_of = (datetime.now(UTC) + timedelta(days=31)).strftime("%Y-%m-%dT%H:%M:%SZ")
        charged = manage("charge_fees", "--as-of", as_of, env=env)
        assert "charged 1," in charged
        assert "Dry run" in manage("charge_fees", "--dry-run", env=env)
        assert "Ledger clean" in manage("reconcile", env=env)
        # The ledger's triggers apply here too (no second database code path).
        with psycopg.connect(host=str(data_dir), user="postgres", dbname="wallet") as c:
            triggers = {
                name
                for (name,) in c.execute(
                    "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal"
                )
            }
        assert "entry_transaction_balanced" in triggers

        # Ctrl-C: the command ends, then the server stops (fast shutdown).
        assert starter.interrupt() == 128 + signal.SIGINT
        assert "PostgreSQL stopped (clean)" in starter.log()
        assert not any(_alive(pid) for pid in server)
        assert not (data_dir / "postmaster.pid").exists()

        # Started again: no initdb, the data is there; SIGTERM stops it too.
        starter = Starter(data_dir)
        assert "existing data" in starter.log()
        assert (data_dir / "PG_VERSION").stat().st_mtime_ns == initdb_stamp
        assert _count_users(data_dir) == 1
        assert "Ledger clean" in manage("reconcile", env=env)
        starter.popen.send_signal(signal.SIGTERM)
        assert starter.popen.wait(timeout=90) == 128 + signal.SIGTERM
        assert "PostgreSQL stopped (clean)" in starter.log()
        assert _server_processes(data_dir) == set()
    finally:
        if starter.popen.poll() is None:
            starter.kill()


@pytest.mark.e2e
def test_a_second_start_on_the_same_data_fails_and_leaves_the_first_running(
    data_dir,
):
    first = Starter(data_dir)
    try:
        second = subprocess.run(
            [sys.executable, "-m", "wallet_project.embedded", "--", "true"],
            cwd=REPO,
            env=first.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert second.returncode != 0
        assert 'lock file "postmaster.pid" already exists' in second.stderr
        assert "Ledger clean" in manage("reconcile", env=first.env)
        assert first.interrupt() == 128 + signal.SIGINT
    finally:
        if first.popen.poll() is None:
            first.kill()


def _settings_databases(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            *(sys.executable, "-c"),
            "import django; django.setup(); from django.conf import settings; "
            "print(settings.DATABASES['default'])",
        ],
        cwd=REPO,
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_debug_without_database_url_uses_the_embedded_server_socket(tmp_path):
    result = _settings_databases(
        {
            "DJANGO_SETTINGS_MODULE": "wallet_project.settings",
            "DEBUG": "true",
            "EMBEDDED_POSTGRES_DIR": str(tmp_path / "pg"),
        }
    )
    assert result.returncode == 0, result.stderr
    assert "'ENGINE': 'django.db.backends.postgresql'" in result.stdout
    assert f"'host': '{tmp_path / 'pg'}'" in result.stdout
    assert "'NAME': 'wallet'" in result.stdout


def test_production_without_database_url_refuses_to_start():
    result = _settings_databases(
        {
            "DJANGO_SETTINGS_MODULE": "wallet_project.settings",
            "DEBUG": "false",
            "SECRET_KEY": "test-only-secret-key-0123456789abcdefghijklmnopqrstuvwxyz",
            "JWT_SIGNING_KEY": "test-only-jwt-key-0123456789abcdefghijklmnopqrstuvwxyz",
        }
    )
    assert result.returncode != 0
    assert "Set the DATABASE_URL environment variable" in result.stderr


def test_a_database_url_that_is_not_postgresql_is_refused(tmp_path):
    result = _settings_databases(
        {
            "DJANGO_SETTINGS_MODULE": "wallet_project.settings",
            "DEBUG": "true",
            "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        }
    )
    assert result.returncode != 0
    assert "DATABASE_URL must be a PostgreSQL URL" in result.stderr
