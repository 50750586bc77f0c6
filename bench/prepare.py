"""Benchmark data, written straight into the benchmark's throw-away database.

    python -m bench.prepare users --count 1000 --balance 1000000 --out FILE
    python -m bench.prepare history --wallet ID --entries 1000000
    python -m bench.prepare cursor --wallet ID --offset 900000
    python -m bench.prepare fees --wallets 100000
    python -m bench.prepare holds --wallet ID --count 100 --amount 100.00
    python -m bench.prepare service --prefix provider
    python -m bench.prepare webhook --wallet ID --url URL
    python -m bench.prepare snapshot [--wallet ID]

Run with the stack's environment (DATABASE_URL, SECRET_KEY, ...). Every balance it
sets is explained by balanced entries against the `external` system wallet, so
`manage.py reconcile` is clean before and after; holds are created through the
ledger (`hold_create`), so every wallet's `held` is the sum of its active holds.
"""

import argparse
import base64
import json
import os
import sys
from decimal import Decimal
from urllib.parse import quote

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
django.setup()

from django.db import connection, transaction  # noqa: E402
from django.utils import timezone  # noqa: E402
from djmoney.money import Money  # noqa: E402
from rest_framework_simplejwt.tokens import AccessToken  # noqa: E402

from accounts.models import User  # noqa: E402
from transactions.ledger import hold_create  # noqa: E402
from transactions.models import Entry, Hold, Transaction  # noqa: E402
from transactions.webhooks import endpoint_create  # noqa: E402
from wallets.models import Wallet  # noqa: E402
from wallets.numbers import generate_number  # noqa: E402
from wallets.selectors import system_wallet  # noqa: E402


def _settle(*tables: str) -> None:
    """VACUUM (ANALYZE) freshly loaded tables: what autovacuum will have done by
    the time a production database holds this data. Without it the planner runs on
    no statistics (this machine's PostgreSQL has autovacuum off: GET detail then
    found its wallet by walking a partial index, 0.3 ms instead of 0.03) and the
    first reads of the new rows write their hint bits."""
    with connection.cursor() as c:
        for table in tables:
            c.execute(f"VACUUM (ANALYZE) {table}")


def users(count: int, balance: str, out: str, prefix: str) -> None:
    """`count` users with one KZT wallet each, funded by an opening deposit."""
    amount = Decimal(balance)
    external = system_wallet("KZT", Wallet.SystemCode.EXTERNAL)
    now = timezone.now()
    with transaction.atomic():
        people = User.objects.bulk_create(
            User(email=f"{prefix}-{i}@bench.invalid", password="!")  # noqa: S106
            for i in range(count)
        )
        numbers: set[str] = set()
        while len(numbers) < count:
            numbers.add(generate_number())
        wallets = Wallet.objects.bulk_create(
            Wallet(
                owner=user,
                number=number,
                currency="KZT",
                balance=Money(amount, "KZT"),
                next_fee_at=now + timezone.timedelta(days=30),
            )
            for user, number in zip(people, sorted(numbers), strict=True)
        )
        txns = Transaction.objects.bulk_create(
            Transaction(
                kind=Transaction.Kind.DEPOSIT,
                description="benchmark opening balance",
                created_at=now,
                posted_at=now,
            )
            for _ in wallets
        )
        entries = []
        for wallet, txn in zip(wallets, txns, strict=True):
            entries.append(
                Entry(
                    transaction=txn,
                    wallet=wallet,
                    amount=Money(amount, "KZT"),
                    balance_after=amount,
                    created_at=now,
                )
            )
            entries.append(
                Entry(
                    transaction=txn,
                    wallet=external,
                    amount=Money(-amount, "KZT"),
                    created_at=now,
                )
            )
        Entry.objects.bulk_create(entries, batch_size=2000)
    _settle(
        User._meta.db_table,
        Wallet._meta.db_table,
        Transaction._meta.db_table,
        Entry._meta.db_table,
    )
    with open(out, "w") as f:
        for user, wallet in zip(people, wallets, strict=True):
            token = str(AccessToken.for_user(user))
            f.write(f"{wallet.id}\t{token}\t{wallet.number}\n")


_HISTORY_SQL = """
INSERT INTO transactions_transaction
       (id, kind, status, description, created_at, posted_at, metadata, initiator_id)
SELECT md5(%(seed)s || i)::uuid,
       CASE WHEN i %% 2 = 1 THEN 'deposit' ELSE 'withdrawal' END,
       'posted', '', %(start)s + i * interval '1 millisecond',
       %(start)s + i * interval '1 millisecond', '{}', NULL
  FROM generate_series(%(first)s, %(last)s) AS i;
INSERT INTO transactions_entry
       (currency, amount, balance_after, created_at, wallet_id, transaction_id)
SELECT 'KZT',
       CASE WHEN (i %% 2 = 1) = (leg = 1) THEN 1 ELSE -1 END,
       CASE WHEN leg = 2 THEN NULL
            WHEN i %% 2 = 1 THEN %(balance)s + 1 ELSE %(balance)s END,
       %(start)s + i * interval '1 millisecond',
       CASE WHEN leg = 1 THEN %(wallet)s::uuid ELSE %(external)s::uuid END,
       md5(%(seed)s || i)::uuid
  FROM generate_series(%(first)s, %(last)s) AS i, (VALUES (1), (2)) AS legs (leg)
 ORDER BY i, leg;
"""


def history(wallet: str, entries: int, chunk: int = 100_000) -> None:
    """`entries` entries on one wallet: alternating deposits and withdrawals of 1.00
    against `external` (each a balanced two-leg transaction; an even count leaves
    the balance where it was), in chunks committed one by one, so the ledger's
    deferred balance trigger checks every one of them."""
    wallet = Wallet.objects.get(pk=wallet)
    external = system_wallet("KZT", Wallet.SystemCode.EXTERNAL)
    entries += entries % 2
    start = timezone.now() - timezone.timedelta(days=30)
    seed = f"bench-history-{wallet.id}-"
    for first in range(1, entries + 1, chunk):
        last = min(first + chunk - 1, entries)
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                _HISTORY_SQL,
                {
                    "seed": seed,
                    "start": start,
                    "first": first,
                    "last": last,
                    "balance": wallet.balance.amount,
                    "wallet": str(wallet.id),
                    "external": str(external.id),
                },
            )
    _settle(Transaction._meta.db_table, Entry._meta.db_table)


def cursor(wallet: str, offset: int) -> None:
    """The path of the history page that starts `offset` entries deep (DRF's
    CursorPagination cursor for ordering -id: position = the last id seen)."""
    with connection.cursor() as c:
        c.execute(
            "SELECT id FROM transactions_entry WHERE wallet_id = %s "
            "ORDER BY id DESC OFFSET %s LIMIT 1",
            [wallet, offset],
        )
        (position,) = c.fetchone()
    token = base64.b64encode(f"p={position + 1}".encode()).decode()
    print(f"/api/v1/wallets/{wallet}/transactions/?cursor={quote(token)}")


_FEES_SQL = """
CREATE TEMP TABLE bench_due ON COMMIT DROP AS
SELECT i, gen_random_uuid() AS user_id, gen_random_uuid() AS wallet_id,
       gen_random_uuid() AS txn_id,
       CASE WHEN i %% 10 = 5 THEN 50.00 ELSE 1000.00 END AS balance
  FROM generate_series(1, %(n)s) AS i;
INSERT INTO accounts_user (id, password, is_superuser, email, first_name, last_name,
                           profile_image, is_active, is_staff, is_service, date_joined)
SELECT user_id, '!', false, 'fees-' || i || '@bench.invalid', '', '', '',
       true, false, false, now()
  FROM bench_due;
INSERT INTO wallets_wallet (id, number, kind, system_code, name, currency, balance,
                            status, blocked_reason, next_fee_at, created_at,
                            updated_at, owner_id)
SELECT wallet_id, '9' || lpad(i::text, 15, '0'), 'user', '', '', 'KZT', balance,
       'active', '', now() - interval '1 minute', now() - interval '30 days',
       now(), user_id
  FROM bench_due;
INSERT INTO transactions_transaction (id, kind, status, description, created_at,
                                      posted_at, metadata)
SELECT txn_id, 'deposit', 'posted', 'benchmark opening balance', now(), now(), '{}'
  FROM bench_due;
INSERT INTO transactions_entry (currency, amount, balance_after, created_at,
                                wallet_id, transaction_id)
SELECT 'KZT', balance, balance, now(), wallet_id, txn_id FROM bench_due
UNION ALL
SELECT 'KZT', -balance, NULL, now(), %(external)s::uuid, txn_id FROM bench_due;
"""


def fees(wallets: int) -> None:
    """`wallets` KZT wallets whose monthly fee is due now; every 10th holds less
    than the fee (it pays nothing, is blocked and owes the whole fee)."""
    external = system_wallet("KZT", Wallet.SystemCode.EXTERNAL)
    with transaction.atomic(), connection.cursor() as c:
        c.execute(_FEES_SQL, {"n": wallets, "external": str(external.id)})
    _settle(Wallet._meta.db_table, Transaction._meta.db_table, Entry._meta.db_table)


def holds(wallet: str, count: int, amount: str) -> None:
    """`count` active holds of `amount` on the user wallet, through the ledger,
    expiring in a year (nothing releases them during the run): every debit on
    the wallet then runs its available-balance rule with money held. Prints the
    wallet's `held`."""
    wallet = Wallet.objects.get(pk=wallet)
    expires_at = timezone.now() + timezone.timedelta(days=365)
    for _ in range(count):
        hold_create(
            wallet=wallet,
            amount=Decimal(amount),
            expires_at=expires_at,
            description="benchmark hold",
        )
    _settle(Hold._meta.db_table, Wallet._meta.db_table)
    wallet.refresh_from_db(fields=["held"])
    print(wallet.held)


def service(prefix: str) -> None:
    """A payment provider's service account (`is_service`); prints its token."""
    user = User.objects.create(
        email=f"{prefix}@bench.invalid",
        password="!",  # noqa: S106
        is_service=True,
    )
    print(AccessToken.for_user(user))


def webhook(wallet: str, url: str) -> None:
    """A webhook endpoint for `transaction.posted` of the wallet's owner, through
    the service (the URL check included: the stack allows loopback); prints its
    id."""
    owner = Wallet.objects.select_related("owner").get(pk=wallet).owner
    endpoint = endpoint_create(user=owner, url=url, event_types=["transaction.posted"])
    print(endpoint.id)


# Payouts that break the two-phase rule: paid without exactly one posted `payout`
# transaction taking its amount from its wallet; a `payout` transaction no payout
# points to (a payment twice); a hold still active on a decided payout or not
# active on a pending one, or holding another amount.
_PAYOUT_PROBLEMS_SQL = """
SELECT (SELECT count(*) FROM transactions_payout p
         WHERE p.status = 'paid' AND NOT EXISTS (
               SELECT 1 FROM transactions_transaction t
                 JOIN transactions_entry e ON e.transaction_id = t.id
                WHERE t.id = p.transaction_id AND t.kind = 'payout'
                  AND t.status = 'posted' AND e.wallet_id = p.wallet_id
                  AND e.amount = -p.amount)),
       (SELECT count(*) FROM transactions_transaction t
         WHERE t.kind = 'payout' AND NOT EXISTS (
               SELECT 1 FROM transactions_payout p
                WHERE p.transaction_id = t.id)),
       (SELECT count(*) FROM transactions_payout p
          JOIN transactions_hold h ON h.id = p.hold_id
         WHERE (p.status = 'pending') <> (h.status = 'active')
            OR h.amount <> p.amount
            OR (p.status = 'paid') <> (h.status = 'captured'))
"""


def snapshot(wallet: str | None = None) -> None:
    """What the ledger says, for the checks after each scenario (and `wallet`'s
    balance, held and active holds, when given)."""
    with connection.cursor() as c:
        c.execute(
            "SELECT coalesce(sum(balance), 0), count(*) FROM wallets_wallet "
            "WHERE kind = 'user'"
        )
        total, wallets = c.fetchone()
        c.execute(
            "SELECT kind, count(*) FROM transactions_transaction "
            "WHERE status = 'posted' GROUP BY kind"
        )
        kinds = dict(c.fetchall())
        c.execute("SELECT count(*) FROM transactions_entry")
        (entries,) = c.fetchone()
        c.execute("SELECT count(*) FROM fees_feecharge")
        (fee_charges,) = c.fetchone()
        c.execute(
            "SELECT coalesce(sum(held), 0) FROM wallets_wallet WHERE kind = 'user'"
        )
        (held,) = c.fetchone()
        c.execute(
            "SELECT coalesce(sum(amount), 0) FROM transactions_hold "
            "WHERE status = 'active'"
        )
        (active_holds,) = c.fetchone()
        c.execute(
            "SELECT status, count(*), sum(amount) FROM transactions_payout "
            "GROUP BY status"
        )
        payouts = {status: [n, str(amount)] for status, n, amount in c.fetchall()}
        c.execute(_PAYOUT_PROBLEMS_SQL)
        payout_problems = dict(
            zip(("paid", "unclaimed_transactions", "holds"), c.fetchone(), strict=True)
        )
        # A system wallet's balance is the sum of its entries (never updated).
        c.execute(
            "SELECT coalesce(sum(e.amount), 0) FROM transactions_entry e "
            "JOIN wallets_wallet w ON w.id = e.wallet_id "
            "WHERE w.kind = 'system' AND w.system_code = %s",
            [Wallet.SystemCode.PROVIDER],
        )
        (provider,) = c.fetchone()
        one = None
        if wallet:
            c.execute(
                "SELECT w.balance, w.held, (SELECT coalesce(sum(h.amount), 0) "
                "FROM transactions_hold h "
                "WHERE h.wallet_id = w.id AND h.status = 'active') "
                "FROM wallets_wallet w WHERE w.id = %s",
                [wallet],
            )
            balance, held_one, holds_one = c.fetchone()
            one = {
                "balance": str(balance),
                "held": str(held_one),
                "active_holds": str(holds_one),
            }
    print(
        json.dumps(
            {
                "user_balance_total": str(total),
                "user_wallets": wallets,
                "transactions": kinds,
                "entries": entries,
                "fee_charges": fee_charges,
                "held_total": str(held),
                "active_holds_total": str(active_holds),
                "payouts": payouts,
                "payout_problems": payout_problems,
                "provider_entries": str(provider),
                "wallet": one,
            }
        )
    )


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bench.prepare")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("users")
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--balance", default="1000000.00")
    p.add_argument("--out", required=True)
    p.add_argument("--prefix", default="bench")
    p = sub.add_parser("history")
    p.add_argument("--wallet", required=True)
    p.add_argument("--entries", type=int, required=True)
    p = sub.add_parser("cursor")
    p.add_argument("--wallet", required=True)
    p.add_argument("--offset", type=int, required=True)
    p = sub.add_parser("fees")
    p.add_argument("--wallets", type=int, required=True)
    p = sub.add_parser("holds")
    p.add_argument("--wallet", required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--amount", default="100.00")
    p = sub.add_parser("service")
    p.add_argument("--prefix", default="provider")
    p = sub.add_parser("webhook")
    p.add_argument("--wallet", required=True)
    p.add_argument("--url", required=True)
    p = sub.add_parser("snapshot")
    p.add_argument("--wallet")
    args = vars(parser.parse_args(argv))
    command = args.pop("command")
    {
        "users": users,
        "history": history,
        "cursor": cursor,
        "fees": fees,
        "holds": holds,
        "service": service,
        "webhook": webhook,
    }.get(command, snapshot)(**args)


if __name__ == "__main__":
    main(sys.argv[1:])
