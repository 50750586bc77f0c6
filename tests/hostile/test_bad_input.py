"""Every money endpoint x every kind of bad input -> a 4xx with a clear message, and
nothing changed: no transaction, entry, top-up, payout, hold, idempotency key or
wallet appears, no balance (or money held) moves, no top-up or payout is decided."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from decimal import Decimal

import pytest

from transactions.ledger import payout_create, topup_create
from transactions.models import Entry, Hold, IdempotencyKey, Payout, TopUp, Transaction
from wallets.models import Wallet

pytestmark = pytest.mark.hostile

HUGE = "9" * 100_000
MISSING = object()

# The value of an amount field (or of a commission, or of a currency).
BAD_VALUES = {
    "negative": "-10.00",
    "negative number": Decimal("-10"),
    "zero": "0",
    "zero number": 0,
    "NaN string": "NaN",
    "Infinity string": "Infinity",
    "-Infinity string": "-Infinity",
    "1e30": "1e30",
    "1e30 number": Decimal("1e30"),
    "too precise": "1.001",
    "too precise number": Decimal("1.001"),
    "comma decimal": "1,5",
    "empty string": "",
    "spaces": "   ",
    "null": None,
    "true": True,
    "list": ["10.00"],
    "object": {"amount": "10.00"},
    "huge string": HUGE,
    "hex": "0x10",
    "with currency": "10 KZT",
    # Strings Python's Decimal reads but no other system reads the same way.
    "full-width digits": "１００",
    "Arabic-Indic digit": "٥",
    "underscore": "1_000",
    "plus sign": "+5",
    "leading space": " 5",
    "no-break space": "5\u00a0",
    "tab": "\t5",
    "trailing newline": "5\n",
    "no integer part": ".5",
    "no fraction digits": "5.",
    "leading zeros": "00005",
    "exponent string": "0.1e1",
    "missing": MISSING,
}


@dataclass
class World:
    owner_wallet: Wallet
    usd_wallet: Wallet
    foreign_wallet: Wallet
    topup: TopUp
    payout: Payout  # the owner's, pending
    foreign_payout: Payout  # another user's, pending


@pytest.fixture
def world(user, other_user, make_wallet, rates) -> World:
    mine = make_wallet(owner=user, currency="KZT", balance="1000.00")
    usd = make_wallet(owner=user, currency="USD", balance="50.00")
    foreign = make_wallet(owner=other_user, currency="KZT", balance="700.00")

    def payout(wallet: Wallet) -> Payout:
        return payout_create(
            wallet=wallet,
            amount=Decimal("100.00"),
            destination="card_tok_4242",
            initiator=wallet.owner,
        )

    return World(
        mine,
        usd,
        foreign,
        topup_create(wallet=mine, amount=Decimal("100")),
        payout(mine),
        payout(foreign),
    )


def _body(base: dict, field: str, value) -> dict:
    body = dict(base)
    if value is MISSING:
        body.pop(field, None)
    else:
        body[field] = value
    return body


def _json(body) -> str:
    """JSON with Decimals written as bare numbers (1e30, -10, 1.001)."""

    class Encoder(json.JSONEncoder):
        def default(self, o):
            if isinstance(o, Decimal):
                return (
                    float(o)
                    if abs(o) > 10**15
                    else int(o)
                    if o == o.to_integral()
                    else float(o)
                )
            return super().default(o)

    return json.dumps(body, cls=Encoder)


def _ledger_state() -> tuple:
    return (
        Transaction.objects.count(),
        Entry.objects.count(),
        TopUp.objects.count(),
        IdempotencyKey.objects.count(),
        sorted(
            (str(w.id), str(w.balance.amount), str(w.held), w.status)
            for w in Wallet.objects.all()
        ),
        sorted((str(t.id), t.status, str(t.commission)) for t in TopUp.objects.all()),
        sorted((str(p.id), p.status) for p in Payout.objects.all()),
        sorted((str(h.id), h.status) for h in Hold.objects.all()),
    )


def _assert_clear_4xx(response) -> None:
    assert 400 <= response.status_code < 500, (
        response.status_code,
        response.content[:300],
    )
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert isinstance(body, dict) and body

    def messages(value):
        if isinstance(value, str):
            yield value
        elif isinstance(value, list):
            for v in value:
                yield from messages(v)
        elif isinstance(value, dict):
            for k, v in value.items():
                if k != "code":
                    yield from messages(v)

    texts = list(messages(body))
    assert texts and all(t.strip() for t in texts), body
    assert "Traceback" not in response.content.decode()


# --- The endpoints: (method, path, the good body, the field the bad values go in) ---


def _endpoints(w: World) -> dict[str, tuple[str, str, dict, str]]:
    return {
        "deposit": (
            "post",
            f"/api/v1/wallets/{w.owner_wallet.id}/operation",
            {"operation_type": "DEPOSIT", "amount": "10.00"},
            "amount",
        ),
        "withdraw": (
            "post",
            f"/api/v1/wallets/{w.owner_wallet.id}/operation",
            {"operation_type": "WITHDRAW", "amount": "10.00"},
            "amount",
        ),
        "transfer": (
            "post",
            "/api/v1/transfers/",
            {
                "from_wallet": str(w.owner_wallet.id),
                "to_wallet_number": w.foreign_wallet.number,
                "amount": "10.00",
            },
            "amount",
        ),
        "exchange": (
            "post",
            "/api/v1/transfers/",
            {
                "from_wallet": str(w.owner_wallet.id),
                "to_wallet_number": w.usd_wallet.number,
                "amount": "10.00",
            },
            "amount",
        ),
        "topup create": (
            "post",
            f"/api/v1/wallets/{w.owner_wallet.id}/topups/",
            {"amount": "10.00"},
            "amount",
        ),
        "provider decision": (
            "put",
            f"/api/v1/service/topups/{w.topup.id}/",
            {"status": "paid", "commission": "1.00"},
            "commission",
        ),
        "wallet create": ("post", "/api/v1/wallets/", {"currency": "EUR"}, "currency"),
        "payout create": (
            "post",
            f"/api/v1/wallets/{w.owner_wallet.id}/payouts/",
            {"amount": "10.00", "destination": "card_tok_4242"},
            "amount",
        ),
        "payout decision": (
            "put",
            f"/api/v1/service/payouts/{w.payout.id}/",
            {"status": "paid"},
            "status",
        ),
    }


ENDPOINTS = [
    "deposit",
    "withdraw",
    "transfer",
    "exchange",
    "topup create",
    "provider decision",
    "wallet create",
    "payout create",
    "payout decision",
]

# Values that are fine for a field other than an amount: commission may be 0, null
# or missing (then the default commission applies).
ALLOWED = {
    ("provider decision", "zero"),
    ("provider decision", "zero number"),
    ("provider decision", "null"),
    ("provider decision", "missing"),
}


def _client(endpoint: str, client_of, user, service_account):
    return client_of(service_account if endpoint.endswith("decision") else user)


def _send(client, method: str, path: str, body, content_type="application/json"):
    if body is None:  # a GET, or a POST without a body
        return getattr(client, method)(path)
    data = body if isinstance(body, (str, bytes)) else _json(body)
    return getattr(client, method)(path, data=data, content_type=content_type)


def _check(response, before) -> str | None:
    """None when the answer is a clear 4xx and nothing changed; else what went wrong."""
    try:
        _assert_clear_4xx(response)
        assert _ledger_state() == before, "the ledger changed"
    except AssertionError as exc:
        return str(exc)[:300]
    return None


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_a_bad_value_is_a_clear_4xx_and_changes_nothing(
    endpoint, world, user, service_account, client_of
):
    method, path, good, field = _endpoints(world)[endpoint]
    client = _client(endpoint, client_of, user, service_account)
    before = _ledger_state()
    wrong = {}
    for label, value in BAD_VALUES.items():
        if (endpoint, label) in ALLOWED:
            continue
        response = _send(client, method, path, _body(good, field, value))
        if problem := _check(response, before):
            wrong[label] = problem
    assert not wrong, wrong


def _unknown_currency_cases(w: World):
    return {
        "wallet create": ("post", "/api/v1/wallets/", {"currency": "XYZ"}),
        "wallet create lower": ("post", "/api/v1/wallets/", {"currency": "kzt"}),
        "deposit with a currency": (
            "post",
            f"/api/v1/wallets/{w.owner_wallet.id}/operation",
            {
                "operation_type": "DEPOSIT",
                "amount": {"amount": "10", "currency": "XYZ"},
            },
        ),
        "unknown operation": (
            "post",
            f"/api/v1/wallets/{w.owner_wallet.id}/operation",
            {"operation_type": "STEAL", "amount": "10.00"},
        ),
        "unknown decision": (
            "put",
            f"/api/v1/service/topups/{w.topup.id}/",
            {"status": "approved"},
        ),
        "unknown payout decision": (
            "put",
            f"/api/v1/service/payouts/{w.payout.id}/",
            {"status": "canceled"},  # the owner's to make, not the provider's
        ),
    }


def _id_cases(w: World):
    malformed = "not-a-uuid"
    stranger = str(uuid.uuid4())
    foreign = str(w.foreign_wallet.id)
    op = {"operation_type": "DEPOSIT", "amount": "10.00"}
    transfer = {"to_wallet_number": w.foreign_wallet.number, "amount": "10.00"}
    payout = {"amount": "10.00", "destination": "card_tok_4242"}
    foreign_payout = str(w.foreign_payout.id)
    return {
        "operation on a malformed id": (
            "post",
            f"/api/v1/wallets/{malformed}/operation",
            op,
        ),
        "operation on an unknown id": (
            "post",
            f"/api/v1/wallets/{stranger}/operation",
            op,
        ),
        "operation on a foreign wallet": (
            "post",
            f"/api/v1/wallets/{foreign}/operation",
            op,
        ),
        "operation on a sql id": (
            "post",
            "/api/v1/wallets/1'%20OR%20'1'='1/operation",
            op,
        ),
        "transfer from a malformed id": (
            "post",
            "/api/v1/transfers/",
            {**transfer, "from_wallet": malformed},
        ),
        "transfer from a foreign wallet": (
            "post",
            "/api/v1/transfers/",
            {**transfer, "from_wallet": foreign},
        ),
        "transfer from a foreign number": (
            "post",
            "/api/v1/transfers/",
            {**transfer, "from_wallet": w.foreign_wallet.number},
        ),
        "transfer to a malformed number": (
            "post",
            "/api/v1/transfers/",
            {
                **transfer,
                "from_wallet": str(w.owner_wallet.id),
                "to_wallet_number": "12ab",
            },
        ),
        "transfer to an unknown number": (
            "post",
            "/api/v1/transfers/",
            {
                **transfer,
                "from_wallet": str(w.owner_wallet.id),
                "to_wallet_number": "0000000000000000",
            },
        ),
        "transfer to itself": (
            "post",
            "/api/v1/transfers/",
            {
                **transfer,
                "from_wallet": str(w.owner_wallet.id),
                "to_wallet_number": w.owner_wallet.number,
            },
        ),
        "transfer with a list id": (
            "post",
            "/api/v1/transfers/",
            {**transfer, "from_wallet": [str(w.owner_wallet.id)]},
        ),
        "topup on a malformed id": (
            "post",
            f"/api/v1/wallets/{malformed}/topups/",
            {"amount": "10.00"},
        ),
        "topup on a foreign wallet": (
            "post",
            f"/api/v1/wallets/{foreign}/topups/",
            {"amount": "10.00"},
        ),
        "decision on a malformed id": (
            "put",
            f"/api/v1/service/topups/{malformed}/",
            {"status": "paid"},
        ),
        "decision on an unknown id": (
            "put",
            f"/api/v1/service/topups/{stranger}/",
            {"status": "paid"},
        ),
        "payout on a malformed id": (
            "post",
            f"/api/v1/wallets/{malformed}/payouts/",
            payout,
        ),
        "payout on an unknown id": (
            "post",
            f"/api/v1/wallets/{stranger}/payouts/",
            payout,
        ),
        "payout on a foreign wallet": (
            "post",
            f"/api/v1/wallets/{foreign}/payouts/",
            payout,
        ),
        "payouts of a foreign wallet": (
            "get",
            f"/api/v1/wallets/{foreign}/payouts/",
            None,
        ),
        "a foreign payout": ("get", f"/api/v1/payouts/{foreign_payout}/", None),
        "a malformed payout id": ("get", f"/api/v1/payouts/{malformed}/", None),
        "cancel of a foreign payout": (
            "post",
            f"/api/v1/payouts/{foreign_payout}/cancel/",
            None,
        ),
        "cancel of a malformed payout id": (
            "post",
            f"/api/v1/payouts/{malformed}/cancel/",
            None,
        ),
        "cancel of an unknown payout": (
            "post",
            f"/api/v1/payouts/{stranger}/cancel/",
            None,
        ),
        "payout decision by a user": (  # users are not the provider
            "put",
            f"/api/v1/service/payouts/{w.payout.id}/",
            {"status": "paid"},
        ),
        "payout decision on a malformed id": (
            "put",
            f"/api/v1/service/payouts/{malformed}/",
            {"status": "paid"},
        ),
        "payout decision on an unknown id": (
            "put",
            f"/api/v1/service/payouts/{stranger}/",
            {"status": "paid"},
        ),
    }


PAYOUT_IDS = (  # every one a 404: another user's or no payout (or wallet) at all
    "payout on a malformed id",
    "payout on an unknown id",
    "payout on a foreign wallet",
    "payouts of a foreign wallet",
    "a foreign payout",
    "a malformed payout id",
    "cancel of a foreign payout",
    "cancel of a malformed payout id",
    "cancel of an unknown payout",
    "payout decision by a user",
    "payout decision on a malformed id",
    "payout decision on an unknown id",
)


@pytest.mark.parametrize(
    "case",
    [
        *(
            f"currency: {k}"
            for k in (
                "wallet create",
                "wallet create lower",
                "deposit with a currency",
                "unknown operation",
                "unknown decision",
                "unknown payout decision",
            )
        ),
        *(
            f"id: {k}"
            for k in (
                "operation on a malformed id",
                "operation on an unknown id",
                "operation on a foreign wallet",
                "operation on a sql id",
                "transfer from a malformed id",
                "transfer from a foreign wallet",
                "transfer from a foreign number",
                "transfer to a malformed number",
                "transfer to an unknown number",
                "transfer to itself",
                "transfer with a list id",
                "topup on a malformed id",
                "topup on a foreign wallet",
                "decision on a malformed id",
                "decision on an unknown id",
                *PAYOUT_IDS,
            )
        ),
    ],
)
def test_unknown_currencies_and_bad_ids_are_a_clear_4xx(
    case, world, user, service_account, client_of
):
    group, name = case.split(": ", 1)
    table = _unknown_currency_cases(world) if group == "currency" else _id_cases(world)
    method, path, body = table[name]
    by_user = "by a user" in name
    client = client_of(service_account if "decision" in name and not by_user else user)
    before = _ledger_state()

    response = _send(client, method, path, body)

    _assert_clear_4xx(response)
    if name in NOT_FOUND_IDS:  # another user's or no object: the same 404
        assert response.status_code == 404, response.json()
    assert _ledger_state() == before


NOT_FOUND_IDS = {
    "operation on a malformed id",
    "operation on an unknown id",
    "operation on a foreign wallet",
    "operation on a sql id",
    "transfer from a malformed id",
    "transfer from a foreign wallet",
    "transfer from a foreign number",
    "transfer to an unknown number",
    "topup on a malformed id",
    "topup on a foreign wallet",
    "decision on a malformed id",
    "decision on an unknown id",
    *PAYOUT_IDS,
}

RAW_BODIES = {
    "truncated JSON": ('{"amount": "10.', "application/json"),
    "NaN literal": ('{"operation_type": "DEPOSIT", "amount": NaN}', "application/json"),
    "Infinity literal": (
        '{"operation_type": "DEPOSIT", "amount": Infinity}',
        "application/json",
    ),
    "a JSON list": ('["DEPOSIT", "10.00"]', "application/json"),
    "a JSON string": ('"10.00"', "application/json"),
    "empty body": ("", "application/json"),
    "not UTF-8": (b'{"amount": "\xff\xfe"}', "application/json"),
    "text/plain": ('{"operation_type": "DEPOSIT", "amount": "10.00"}', "text/plain"),
    "form-urlencoded": (
        "operation_type=DEPOSIT&amount=10.00",
        "application/x-www-form-urlencoded",
    ),
    "xml": ("<amount>10.00</amount>", "application/xml"),
}


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_malformed_bodies_and_wrong_content_types_are_a_clear_4xx(
    endpoint, world, user, service_account, client_of
):
    method, path, _good, _field = _endpoints(world)[endpoint]
    client = _client(endpoint, client_of, user, service_account)
    before = _ledger_state()
    wrong = {}
    for label, (body, content_type) in RAW_BODIES.items():
        response = _send(client, method, path, body, content_type=content_type)
        if problem := _check(response, before):
            wrong[label] = problem
        elif content_type != "application/json" and response.status_code != 415:
            wrong[label] = f"{response.status_code}, not 415"
    assert not wrong, wrong


def test_the_good_bodies_of_the_table_do_move_money(
    world, user, service_account, client_of
):
    """The table's baseline: each good body succeeds, so every failure above is the
    bad value's doing."""
    for endpoint in ENDPOINTS:
        method, path, good, _ = _endpoints(world)[endpoint]
        response = _send(
            _client(endpoint, client_of, user, service_account), method, path, good
        )
        assert response.status_code in (200, 201), (endpoint, response.json())
