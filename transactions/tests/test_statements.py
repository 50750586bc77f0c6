"""Balances in the past and statements (JSON and CSV): `wallets/{id}/balance/`
and `wallets/{id}/statement/`. The PDF: test_statements_pdf.py."""

import csv
import io
import itertools
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from urllib.parse import urlencode

import pytest
from django.db import connection
from django.http import StreamingHttpResponse
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from transactions import ledger, statements
from transactions.api.serializers import EntrySerializer
from transactions.models import Entry
from wallets.models import Wallet
from wallets.selectors import system_wallet

pytestmark = pytest.mark.django_db

ONE_US = timedelta(microseconds=1)


def iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def balance(client, wallet, **params):
    query = f"?{urlencode(params)}" if params else ""
    return client.get(f"/api/v1/wallets/{wallet.id}/balance/{query}")


def statement(client, wallet, **params):
    query = f"?{urlencode(params)}" if params else ""
    return client.get(f"/api/v1/wallets/{wallet.id}/statement/{query}")


def entries_of(wallet) -> list[Entry]:
    return list(Entry.objects.filter(wallet=wallet).order_by("created_at", "id"))


@pytest.fixture
def history(user, make_wallet):
    """A wallet with five entries, each posted at its own moment: +1000, -200,
    +50, -300, +25 (balances 1000, 800, 850, 550, 575)."""
    wallet = make_wallet(owner=user, currency="KZT")
    for amount in ("1000", "-200", "50", "-300", "25"):
        value = Decimal(amount)
        if value > 0:
            ledger.wallet_deposit(wallet=wallet, amount=value)
        else:
            ledger.wallet_withdraw(wallet=wallet, amount=-value)
    wallet.refresh_from_db()
    entries = entries_of(wallet)
    assert [e.balance_after for e in entries] == [
        Decimal(x) for x in ("1000", "800", "850", "550", "575")
    ]
    assert len({e.created_at for e in entries}) == 5
    return wallet, entries


# --- Balance as of -------------------------------------------------------------------


def test_the_balance_as_of_an_entry_s_own_moment_includes_that_entry(auth_api, history):
    wallet, entries = history
    response = balance(auth_api, wallet, as_of=iso(entries[2].created_at))
    assert response.status_code == 200
    assert response.json() == {
        "wallet_id": str(wallet.id),
        "currency": "KZT",
        "as_of": iso(entries[2].created_at),
        "balance": "850.00",
    }


def test_the_balance_a_microsecond_before_an_entry_is_the_one_before_it(
    auth_api, history
):
    wallet, entries = history
    at = entries[2].created_at - ONE_US
    assert balance(auth_api, wallet, as_of=iso(at)).json()["balance"] == "800.00"


def test_the_balance_before_the_first_entry_is_zero(auth_api, history):
    wallet, entries = history
    at = entries[0].created_at - ONE_US
    assert balance(auth_api, wallet, as_of=iso(at)).json()["balance"] == "0.00"
    assert balance(auth_api, wallet, as_of="2001-01-01T00:00:00Z").json() == {
        "wallet_id": str(wallet.id),
        "currency": "KZT",
        "as_of": "2001-01-01T00:00:00Z",
        "balance": "0.00",
    }


def test_the_balance_in_the_future_is_the_balance_now(auth_api, history):
    wallet, _ = history
    future = timezone.now() + timedelta(days=365)
    assert balance(auth_api, wallet, as_of=iso(future)).json()["balance"] == "575.00"


def test_without_as_of_the_balance_is_the_wallet_s_balance_now(auth_api, history):
    wallet, _ = history
    before = timezone.now()
    body = balance(auth_api, wallet).json()
    assert body["balance"] == "575.00" == f"{wallet.balance.amount:.2f}"
    assert before <= datetime.fromisoformat(body["as_of"]) <= timezone.now()


def test_an_offset_is_honoured_and_the_answer_is_in_utc(auth_api, history):
    wallet, entries = history
    at = entries[1].created_at.astimezone(timezone.get_fixed_timezone(5 * 60))
    body = balance(auth_api, wallet, as_of=at.isoformat()).json()
    assert body["balance"] == "800.00"
    assert body["as_of"] == iso(entries[1].created_at)


def test_the_lean_and_the_drf_paths_answer_alike(auth_api, history, settings):
    wallet, entries = history
    params = {"as_of": iso(entries[3].created_at)}
    lean = balance(auth_api, wallet, **params)
    settings.LEAN_REQUESTS = False
    full = balance(auth_api, wallet, **params)
    assert lean.content == full.content
    assert lean.json()["balance"] == "550.00"


def test_a_balance_in_the_past_is_one_query_on_the_lean_path(
    auth_api, history, django_assert_num_queries
):
    wallet, entries = history
    with django_assert_num_queries(1):
        response = balance(auth_api, wallet, as_of=iso(entries[1].created_at))
    assert response.json()["balance"] == "800.00"


@pytest.mark.parametrize(
    "as_of",
    ["yesterday", "2026-13-01T00:00:00Z", "2026-05-01T00:00:00+17:00", "0"],
)
def test_a_bad_as_of_is_a_400_saying_what_to_send(auth_api, history, as_of):
    wallet, _ = history
    response = balance(auth_api, wallet, as_of=as_of)
    assert response.status_code == 400
    (message,) = response.json()["as_of"]
    assert "ISO 8601" in message or "offset" in message


def test_someone_else_s_wallet_a_system_wallet_or_a_bad_id_is_a_404(
    client_of, other_user, history
):
    wallet, entries = history
    stranger = client_of(other_user)
    external = system_wallet("KZT", Wallet.SystemCode.EXTERNAL)
    for target in (wallet, external):
        response = balance(stranger, target, as_of=iso(entries[0].created_at))
        assert response.status_code == 404
        assert response.json()["code"] == "wallet_not_found"
    assert (
        client_of(wallet.owner).get("/api/v1/wallets/nope/balance/").status_code == 404
    )
    # The system wallet is not reachable by anyone, the owner of nothing.
    response = balance(client_of(wallet.owner), external)
    assert response.status_code == 404


def test_an_unauthenticated_request_is_a_401(api, history):
    wallet, _ = history
    assert balance(api, wallet).status_code == 401
    assert statement(api, wallet).status_code == 401


def test_the_balance_query_is_one_probe_of_the_statement_index(user, make_wallet):
    """EXPLAIN of the balance query on a wallet with thousands of entries: the
    (wallet_id, created_at DESC, id DESC) index gives the last entry, with no
    sort and no scan of the wallet's entries."""
    wallet = make_wallet(owner=user)
    seed_entries(wallet, 5000)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE transactions_entry")
        cursor.execute(
            "EXPLAIN (FORMAT JSON) " + statements._balance_sql(),
            {
                "at_as_of": timezone.now(),
                "wallet": wallet.id,
                "user": user.id,
                "user_kind": "user",
            },
        )
        plan = json.dumps(cursor.fetchone()[0])
    assert "entry_wallet_created_idx" in plan
    assert '"Sort"' not in plan


# --- Statements: JSON ----------------------------------------------------------------


def test_a_statement_takes_from_inclusive_and_to_exclusive(auth_api, history):
    wallet, entries = history
    response = statement(
        auth_api,
        wallet,
        **{"from": iso(entries[1].created_at), "to": iso(entries[4].created_at)},
    )
    assert response.status_code == 200
    body = response.json()
    assert [e["id"] for e in body["entries"]] == [e.id for e in entries[1:4]]
    assert body["wallet_id"] == str(wallet.id)
    assert body["currency"] == "KZT"
    assert body["from"] == iso(entries[1].created_at)
    assert body["to"] == iso(entries[4].created_at)
    assert body["opening_balance"] == "1000.00"
    assert body["closing_balance"] == "550.00"
    assert body["total_in"] == "50.00"
    assert body["total_out"] == "500.00"


def test_opening_plus_in_minus_out_is_closing_and_periods_chain(auth_api, history):
    wallet, entries = history
    cuts = [entries[0].created_at - ONE_US, entries[2].created_at, timezone.now()]
    bodies = [
        statement(auth_api, wallet, **{"from": iso(a), "to": iso(b)}).json()
        for a, b in itertools.pairwise(cuts)
    ]
    for body in bodies:
        opening, closing = (
            Decimal(body["opening_balance"]),
            Decimal(body["closing_balance"]),
        )
        assert opening + Decimal(body["total_in"]) - Decimal(body["total_out"]) == (
            closing
        )
        assert sum(Decimal(e["amount"]) for e in body["entries"]) == closing - opening
        if body["entries"]:
            assert body["entries"][-1]["balance_after"] == body["closing_balance"]
    assert bodies[0]["closing_balance"] == bodies[1]["opening_balance"] == "800.00"
    assert bodies[0]["opening_balance"] == "0.00"
    assert bodies[1]["closing_balance"] == "575.00"
    assert [len(b["entries"]) for b in bodies] == [2, 3]


def test_statement_entries_are_the_history_s_entries(auth_api, history):
    wallet, _ = history
    body = statement(auth_api, wallet).json()
    expected = EntrySerializer(
        Entry.objects.filter(wallet=wallet)
        .select_related("transaction")
        .order_by("created_at", "id"),
        many=True,
    ).data
    assert body["entries"] == json.loads(json.dumps(expected, default=str))


def test_the_default_period_is_the_last_30_days_up_to_now(auth_api, history):
    wallet, _ = history
    before = timezone.now()
    body = statement(auth_api, wallet).json()
    to = datetime.fromisoformat(body["to"])
    assert before <= to <= timezone.now()
    assert datetime.fromisoformat(body["from"]) == to - timedelta(days=30)
    assert len(body["entries"]) == 5
    # Only `to`: the 30 days before it.
    body = statement(auth_api, wallet, to="2026-01-31T00:00:00Z").json()
    assert body["from"] == "2026-01-01T00:00:00Z"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"from": "2026-05-02T00:00:00Z", "to": "2026-05-01T00:00:00Z"}, "from"),
        ({"from": "2026-05-01T00:00:00Z", "to": "2026-05-01T00:00:00Z"}, "from"),
        ({"from": "May 1st"}, "from"),
        ({"to": "2026-05-01T25:00:00Z"}, "to"),
        ({"format": "xml"}, "format"),
    ],
)
def test_a_bad_period_or_format_is_a_400(auth_api, history, params, field):
    wallet, _ = history
    response = statement(auth_api, wallet, **params)
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert list(response.json()) == [field]


def test_a_json_statement_over_its_limit_is_a_400_pointing_to_csv(
    auth_api, history, settings
):
    wallet, _ = history
    settings.STATEMENT_JSON_MAX_ENTRIES = 4
    response = statement(auth_api, wallet)
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "statement_too_large"
    assert "format=csv" in body["detail"] and "4" in body["detail"]
    settings.STATEMENT_JSON_MAX_ENTRIES = 5
    assert len(statement(auth_api, wallet).json()["entries"]) == 5


def test_someone_else_s_statement_is_a_404_in_every_format(
    client_of, other_user, history
):
    wallet, _ = history
    stranger = client_of(other_user)
    for fmt in ("json", "csv", "pdf"):
        response = statement(stranger, wallet, format=fmt)
        assert response.status_code == 404, fmt
        assert response["Content-Type"] == "application/json"
        assert response.json()["code"] == "wallet_not_found"
    external = system_wallet("KZT", Wallet.SystemCode.EXTERNAL)
    assert statement(client_of(wallet.owner), external).status_code == 404


def test_options_is_json_whatever_format_is_asked(auth_api, history):
    """DRF's metadata answer is rendered as JSON, never by the CSV or PDF
    renderers (which only make those formats negotiable)."""
    wallet, _ = history
    for fmt in ("csv", "pdf"):
        response = auth_api.options(
            f"/api/v1/wallets/{wallet.id}/statement/?format={fmt}"
        )
        assert response.status_code == 200, fmt
        assert response["Content-Type"] == "application/json"
        assert response.json()["name"]


# --- Statements: CSV -----------------------------------------------------------------


def csv_rows(response) -> list[list[str]]:
    assert isinstance(response, StreamingHttpResponse)
    text = b"".join(response.streaming_content).decode()
    return list(csv.reader(io.StringIO(text)))


def test_a_csv_statement_streams_a_header_then_the_entries_oldest_first(
    auth_api, history
):
    wallet, entries = history
    params = {"from": iso(entries[1].created_at), "to": iso(entries[4].created_at)}
    response = statement(auth_api, wallet, format="csv", **params)
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith(
        f'attachment; filename="statement-{wallet.number}-'
    )
    assert response["X-Opening-Balance"] == "1000.00"
    assert response["X-Closing-Balance"] == "550.00"
    rows = csv_rows(response)
    assert rows[0] == [
        "created_at",
        "entry_id",
        "transaction_id",
        "kind",
        "description",
        "counterparty",
        "amount",
        "currency",
        "balance_after",
    ]
    json_entries = statement(auth_api, wallet, **params).json()["entries"]
    assert rows[1:] == [
        [
            e["created_at"],
            str(e["id"]),
            e["transaction_id"],
            e["kind"],
            e["description"],
            e["counterparty"] or "",
            e["amount"],
            e["currency"],
            e["balance_after"],
        ]
        for e in json_entries
    ]
    assert [r[6] for r in rows[1:]] == ["-200.00", "50.00", "-300.00"]


def test_csv_is_negotiable_by_the_accept_header_too(auth_api, history):
    wallet, _ = history
    response = auth_api.get(
        f"/api/v1/wallets/{wallet.id}/statement/", HTTP_ACCEPT="text/csv"
    )
    assert response.status_code == 200
    assert len(csv_rows(response)) == 6


def test_a_csv_cell_that_a_spreadsheet_would_run_is_defused(
    auth_api, user, make_wallet
):
    source = make_wallet(owner=user, balance="100.00")
    destination = make_wallet()
    ledger.transfer_create(
        source=source,
        destination_number=destination.number,
        amount=Decimal("10.00"),
        description='=HYPERLINK("http://evil.invalid")',
    )
    rows = csv_rows(statement(auth_api, source, format="csv"))
    assert rows[2][3] == "transfer"
    assert rows[2][4] == '\'=HYPERLINK("http://evil.invalid")'
    assert rows[2][5] == destination.number
    assert rows[2][6] == "-10.00"


_SEED_SQL = """
INSERT INTO transactions_transaction
       (id, kind, status, description, created_at, posted_at, metadata, initiator_id)
SELECT md5(%(seed)s || i)::uuid, CASE WHEN i %% 2 = 1 THEN 'deposit' ELSE 'withdrawal' END,
       'posted', 'seeded ' || i, %(start)s + i * %(step)s * interval '1 millisecond',
       %(start)s + i * %(step)s * interval '1 millisecond', '{}', NULL
  FROM generate_series(1, %(n)s) AS i;
INSERT INTO transactions_entry
       (currency, amount, balance_after, created_at, wallet_id, transaction_id)
SELECT 'KZT', CASE WHEN (i %% 2 = 1) = (leg = 1) THEN 1 ELSE -1 END,
       CASE WHEN leg = 2 THEN NULL WHEN i %% 2 = 1 THEN %(balance)s + 1
            ELSE %(balance)s END,
       %(start)s + i * %(step)s * interval '1 millisecond',
       CASE WHEN leg = 1 THEN %(wallet)s::uuid ELSE %(external)s::uuid END,
       md5(%(seed)s || i)::uuid
  FROM generate_series(1, %(n)s) AS i, (VALUES (1), (2)) AS legs (leg)
 ORDER BY i, leg;
"""


def seed_entries(wallet, n: int, *, step_ms: int = 1) -> datetime:
    """`n` (even) entries on `wallet` (with no entries yet) in one statement,
    `step_ms` apart from an hour ago: deposits and withdrawals of 1.00 in turn
    against the external wallet (balanced transactions; the balance ends where
    it was). Returns the start."""
    start = timezone.now() - timedelta(hours=1)
    external = system_wallet(wallet.currency, Wallet.SystemCode.EXTERNAL)
    with connection.cursor() as cursor:
        cursor.execute(
            _SEED_SQL,
            {
                "seed": f"stmt-{wallet.id}-",
                "start": start,
                "n": n,
                "step": step_ms,
                "balance": wallet.balance.amount,
                "wallet": str(wallet.id),
                "external": str(external.id),
            },
        )
    return start


def test_a_csv_of_20000_entries_streams_in_keyset_chunks(auth_api, user, make_wallet):
    """Every entry once, in order, the balance chain unbroken, read by one
    query per chunk of STATEMENT_CHUNK rows (never all rows at once)."""
    wallet = make_wallet(owner=user)
    n = 20_000
    seed_entries(wallet, n)
    response = statement(auth_api, wallet, format="csv")
    assert isinstance(response, StreamingHttpResponse)
    with CaptureQueriesContext(connection) as queries:
        pieces = list(response.streaming_content)
    chunks = n // statements.STATEMENT_CHUNK
    # The header, then one piece per chunk; one keyset query per chunk, and one
    # more that finds the end (the last chunk was full).
    assert len(pieces) == 1 + chunks
    assert len(queries) == chunks + 1
    rows = list(csv.reader(io.StringIO(b"".join(pieces).decode())))[1:]
    assert len(rows) == n
    balance_ = Decimal(0)
    ids = []
    for row in rows:
        balance_ += Decimal(row[6])
        assert Decimal(row[8]) == balance_
        ids.append(int(row[1]))
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert balance_ == Decimal("0.00")
    assert response["X-Opening-Balance"] == response["X-Closing-Balance"] == "0.00"


def test_entries_iter_reads_each_entry_once_across_equal_timestamps(user, make_wallet):
    """Entries sharing one created_at (one group commit) straddling a chunk's
    edge are each read once: the keyset is (created_at, id)."""
    wallet = make_wallet(owner=user)
    start = seed_entries(wallet, 10, step_ms=0)
    chunks = list(
        statements.statement_entries_iter(
            wallet_id=wallet.id,
            since=start,
            until=start + timedelta(seconds=1),
            chunk=3,
        )
    )
    assert [len(c) for c in chunks] == [3, 3, 3, 1]
    ids = [row.id for chunk in chunks for row in chunk]
    assert ids == sorted(e.id for e in Entry.objects.filter(wallet=wallet))
