"""Database timeouts: every connection carries statement, lock and
idle-in-transaction timeouts (settings: libpq startup options), a transaction
left idle is cut by PostgreSQL and its row locks go with it, and a request that
runs into a timeout is a 503 with Retry-After, never a 500."""

import os
import subprocess
import sys
from decimal import Decimal

import psycopg
import pytest
from django.conf import settings
from django.db import connection

from transactions import ledger
from transactions.selectors import ledger_reconcile
from wallet_project.db import long_running_timeouts
from wallets.models import Wallet

pytestmark = pytest.mark.django_db(transaction=True)


def _test_database_url() -> str:
    db = connection.settings_dict  # the test database (test_<name>)
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def _show(name: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SHOW {name}")
        return cursor.fetchone()[0]


def test_every_connection_starts_with_the_settings_timeouts():
    """The defaults of the worker, beat and management commands (the test process
    reads the same settings): 60 s per statement, 10 s per lock, 60 s idle."""
    options = settings.DATABASES["default"]["OPTIONS"]["options"]
    assert "-c statement_timeout=60000" in options
    assert _show("statement_timeout") == "1min"
    assert _show("lock_timeout") == "10s"
    assert _show("idle_in_transaction_session_timeout") == "1min"


def test_long_jobs_raise_statement_and_lock_timeouts_for_their_session_only():
    with long_running_timeouts():
        assert _show("statement_timeout") == "30min"
        assert _show("lock_timeout") == "30s"
        assert _show("idle_in_transaction_session_timeout") == "1min"
    assert _show("statement_timeout") == "1min"
    assert _show("lock_timeout") == "10s"


# A process of the app (Django, its settings from the environment) that locks a
# wallet in a transaction and then sits idle until told to go on.
_IDLE_HOLDER = """
import sys
import django
django.setup()
from django.db import transaction
from wallets.models import Wallet

wallet_id = sys.argv[1]
try:
    with transaction.atomic():
        Wallet.objects.select_for_update().get(pk=wallet_id)
        print("locked", flush=True)
        sys.stdin.readline()  # idle in the transaction, holding the row lock
        Wallet.objects.get(pk=wallet_id)
except Exception as exc:
    print("cut:", " ".join(str(exc).split()), flush=True)
else:
    print("not cut", flush=True)
"""


def test_a_transaction_left_idle_is_cut_and_its_wallet_moves_again(make_wallet):
    """An app process locks a wallet and idles past its
    DATABASE_IDLE_IN_TRANSACTION_TIMEOUT: PostgreSQL ends its session, the lock
    is released, and a deposit on another connection (waiting on that lock, well
    within its own 10 s lock timeout) goes through."""
    wallet = make_wallet(balance="100.00")
    env = {
        **os.environ,
        "DATABASE_URL": _test_database_url(),
        "DATABASE_IDLE_IN_TRANSACTION_TIMEOUT": "1",
        "DATABASE_POOL": "false",
    }
    holder = subprocess.Popen(
        [sys.executable, "-c", _IDLE_HOLDER, str(wallet.pk)],
        cwd=settings.BASE_DIR,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked", holder.stderr.read()
        # Blocks on the holder's row lock until PostgreSQL cuts the holder.
        ledger.wallet_deposit(wallet=wallet, amount=Decimal("5.00"))
        holder.stdin.write("go on\n")
        holder.stdin.flush()
        answer = holder.stdout.readline()
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    assert answer.startswith("cut:"), answer
    assert "idle-in-transaction timeout" in answer
    wallet.refresh_from_db()
    assert wallet.balance.amount == Decimal("105.00")
    assert ledger_reconcile().clean


class _LockHolder:
    """A second, real connection that holds a wallet's row lock."""

    def __init__(self, wallet: Wallet) -> None:
        self.conn = psycopg.connect(_test_database_url())
        self.conn.execute(
            "SELECT 1 FROM wallets_wallet WHERE id = %s FOR UPDATE",
            [wallet.pk],
        )

    def release(self) -> None:
        self.conn.rollback()
        self.conn.close()


@pytest.mark.parametrize(
    ("timeout", "expected_error"),
    [
        # lock_timeout: 55P03 lock_not_available
        ("lock_timeout", "canceling statement due to lock timeout"),
        # statement_timeout (a lock wait counts): 57014 query_canceled
        ("statement_timeout", "canceling statement due to statement timeout"),
    ],
)
@pytest.mark.parametrize("lean", [True, False], ids=["lean", "drf"])
def test_a_request_that_runs_into_a_timeout_is_a_503_with_retry_after(
    make_wallet, client_of, settings, timeout, expected_error, lean, caplog
):
    """A deposit on a wallet another transaction holds locked: when the request's
    lock or statement timeout strikes, the answer is 503 JSON + Retry-After (on
    the lean path and through DRF's pipeline), nothing moves, and once the lock is
    gone the same request succeeds."""
    settings.LEAN_REQUESTS = lean
    wallet = make_wallet(balance="100.00")
    api = client_of(wallet.owner)
    # The test client's requests run on this thread's connection: give it the
    # short timeout (the web process gets its own from its startup options).
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config(%s, '200', false)", [timeout])
    holder = _LockHolder(wallet)
    try:
        response = api.post(
            f"/api/v1/wallets/{wallet.pk}/operation",
            {"operation_type": "DEPOSIT", "amount": "7.00"},
            format="json",
        )
    finally:
        holder.release()
    assert response.status_code == 503, response.content
    assert response["Retry-After"] == "1"
    assert response.json()["code"] == "service_unavailable"
    assert expected_error in caplog.text
    wallet.refresh_from_db()
    assert wallet.balance.amount == Decimal("100.00")

    again = api.post(
        f"/api/v1/wallets/{wallet.pk}/operation",
        {"operation_type": "DEPOSIT", "amount": "7.00"},
        format="json",
    )
    assert again.status_code == 201, again.content
    with connection.cursor() as cursor:
        cursor.execute(f"RESET {timeout}")
