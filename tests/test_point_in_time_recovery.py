"""Backups a ledger can live with: WAL archiving + a base backup, restored to a
point in time (README: Backups and restore). On a PostgreSQL cluster of the
test's own (initdb under a temp dir), never the machine's."""

import os
import shutil
import time
from pathlib import Path

import psycopg
import pytest

from tests.hostile.services import PostgresCluster, _as_postgres, _pg_bin, own_postgres
from tests.stack import create_database, manage

pytestmark = pytest.mark.e2e

_DEPOSIT = """
from decimal import Decimal
from accounts.models import User
from transactions import ledger
from wallets.models import Wallet
from wallets.services import wallet_create

wallet_id = {wallet_id!r}
if wallet_id:
    wallet = Wallet.objects.get(pk=wallet_id)
else:
    owner = User.objects.create_user(email="pitr@example.com", password="pitr-Horse-9")
    wallet = wallet_create(owner=owner, currency="KZT")
posting = ledger.wallet_deposit(wallet=wallet, amount=Decimal({amount!r}))
print(wallet.pk, posting.transaction.pk)
"""


def _app_env(database_url: str) -> dict[str, str]:
    return {**os.environ, "DATABASE_URL": database_url, "DATABASE_POOL": "false"}


def _deposit(database_url: str, amount: str, wallet_id: str = "") -> tuple[str, str]:
    out = manage(
        "shell",
        "-c",
        _DEPOSIT.format(wallet_id=wallet_id, amount=amount),
        env=_app_env(database_url),
    )
    wallet, transaction = out.split()[-2:]
    return wallet, transaction


def _wait_until(condition, what: str, timeout: float = 60) -> None:
    """PostgreSQL reports archiving and the end of recovery only in its views:
    ask until it says so."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.1)


def _with_port(url: str, port: int) -> str:
    return url.replace(url.split("@", 1)[1].split("/", 1)[0], f"127.0.0.1:{port}")


def _own_by_postgres(path: Path) -> None:
    if os.geteuid() == 0:
        shutil.chown(path, "postgres", "postgres")
        for item in path.rglob("*"):
            shutil.chown(item, "postgres", "postgres")


def test_restore_to_a_point_in_time_keeps_what_came_before_and_nothing_after():
    """Base backup, a deposit, the time noted, a second deposit, WAL archived;
    then a new cluster from the base backup replays the archive up to the noted
    time: reconcile is clean, the first deposit is there, the second is not."""
    with own_postgres() as pg:
        archive = pg.root / "wal-archive"
        archive.mkdir()
        _own_by_postgres(archive)
        with psycopg.connect(pg.url, autocommit=True) as conn:
            conn.execute("ALTER SYSTEM SET wal_level = 'replica'")
            conn.execute("ALTER SYSTEM SET archive_mode = 'on'")
            conn.execute(
                "ALTER SYSTEM SET archive_command = "
                f"'test ! -f {archive}/%f && cp %p {archive}/%f'"
            )
        pg.restart()
        database_url = create_database(pg.url, prefix="wallet_pitr")
        manage("migrate", "--noinput", env=_app_env(database_url))

        base = pg.root / "base"
        _as_postgres(
            _pg_bin("pg_basebackup"),
            *("-d", f"host=127.0.0.1 port={pg.port} user=postgres"),
            *("-D", str(base), "-X", "none", "-c", "fast"),
            timeout=300,
        )  # waits until the WAL the backup needs is archived

        wallet_id, first = _deposit(database_url, "100.00")
        with psycopg.connect(database_url, autocommit=True) as conn:
            (target,) = conn.execute("SELECT clock_timestamp()").fetchone()
        _, second = _deposit(database_url, "50.00", wallet_id)
        with psycopg.connect(pg.url, autocommit=True) as conn:
            (segment,) = conn.execute(
                "SELECT pg_walfile_name(pg_switch_wal())"
            ).fetchone()
            _wait_until(
                lambda: conn.execute(
                    "SELECT last_archived_wal >= %s FROM pg_stat_archiver", [segment]
                ).fetchone()[0],
                f"WAL segment {segment} archived",
            )
        pg.stop()  # the original is gone; only the backup and the archive remain

        restored = PostgresCluster()
        try:
            shutil.rmtree(restored.data, ignore_errors=True)
            shutil.copytree(base, restored.data)
            (restored.data / "recovery.signal").touch()
            with open(restored.data / "postgresql.auto.conf", "a") as conf:
                conf.write(
                    f"restore_command = 'cp {archive}/%f %p'\n"
                    f"recovery_target_time = '{target.isoformat()}'\n"
                    "recovery_target_action = 'promote'\n"
                    "archive_mode = 'off'\n"
                )
            restored.data.chmod(0o700)
            _own_by_postgres(restored.data)
            restored.start()
            restored_url = _with_port(database_url, restored.port)
            with psycopg.connect(restored_url, autocommit=True) as conn:
                _wait_until(
                    lambda: (
                        not conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]
                    ),
                    "recovery finished and the server promoted",
                )
                kept = {
                    str(row[0])
                    for row in conn.execute(
                        "SELECT id FROM transactions_transaction WHERE id IN (%s, %s)",
                        [first, second],
                    )
                }
                (balance,) = conn.execute(
                    "SELECT balance FROM wallets_wallet WHERE id = %s", [wallet_id]
                ).fetchone()
            assert kept == {first}
            assert str(balance) == "100.00"
            report = manage("reconcile", "--quiet", env=_app_env(restored_url))
            assert "Ledger clean" in report
        finally:
            restored.stop_immediately()
            shutil.rmtree(restored.root, ignore_errors=True)
