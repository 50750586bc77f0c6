"""An amount string is ASCII digits with an optional fraction; anything Python's
Decimal would read but no other system reads the same way is a 400 that says the
format, and moves nothing (issue 16.4). A JSON number is read exactly."""

from decimal import Decimal

import pytest

pytestmark = pytest.mark.django_db

MESSAGE = (
    'Write the amount as digits with an optional decimal point, e.g. "100.50" '
    "(no sign, spaces or exponent)."
)
REFUSED = [
    "１００",  # full-width digits
    "٥",  # Arabic-Indic digit
    "1_000",
    "+5",
    "-5",
    " 5",
    "5\u00a0",
    "\t5",
    "5\n",
    ".5",
    "5.",
    "00005",
    "05.00",
    "0.1e1",
    "1e2",
    "5,00",
    "1 000",
    "0x10",
]


def balance(wallet) -> Decimal:
    wallet.refresh_from_db()
    return wallet.balance.amount


def raw_post(client, url: str, body: str):
    return client.generic("POST", url, body.encode(), content_type="application/json")


@pytest.mark.parametrize("amount", REFUSED)
def test_an_odd_amount_string_is_400_on_an_operation(auth_api, wallet, amount):
    response = auth_api.post(
        f"/api/v1/wallets/{wallet.id}/operation",
        {"operationType": "DEPOSIT", "amount": amount},
        format="json",
    )
    assert response.status_code == 400, amount
    assert response.json() == {"amount": [MESSAGE]}
    assert balance(wallet) == Decimal("1000.00")


@pytest.mark.parametrize("amount", REFUSED)
def test_an_odd_amount_string_is_400_on_a_transfer(
    auth_api, wallet, make_wallet, amount
):
    receiver = make_wallet()
    response = auth_api.post(
        "/api/v1/transfers/",
        {
            "from_wallet": str(wallet.id),
            "to_wallet_number": receiver.number,
            "amount": amount,
        },
        format="json",
    )
    assert response.status_code == 400, amount
    assert response.json() == {"amount": [MESSAGE]}
    assert balance(wallet) == Decimal("1000.00")
    assert balance(receiver) == Decimal("0.00")


def test_the_message_is_russian_too(auth_api, wallet):
    response = auth_api.post(
        f"/api/v1/wallets/{wallet.id}/operation",
        {"operationType": "DEPOSIT", "amount": "+5"},
        format="json",
        HTTP_ACCEPT_LANGUAGE="ru",
    )
    assert response.status_code == 400
    assert response.json()["amount"][0].startswith("Укажите сумму цифрами")


@pytest.mark.parametrize(
    ("json_amount", "credited"),
    [
        ('"100"', "100.00"),
        ('"100.5"', "100.50"),
        ('"0.50"', "0.50"),
        ('"0"', None),  # well formed, but not positive: the usual message
        ("100", "100.00"),  # JSON numbers, read as Decimal
        ("100.25", "100.25"),
        ("1e2", "100.00"),
        ("0.1e1", "1.00"),
    ],
)
def test_plain_strings_and_json_numbers_are_read_exactly(
    auth_api, wallet, json_amount, credited
):
    response = raw_post(
        auth_api,
        f"/api/v1/wallets/{wallet.id}/operation",
        f'{{"operationType": "DEPOSIT", "amount": {json_amount}}}',
    )
    if credited is None:
        assert response.status_code == 400
        assert response.json() == {"amount": ["The amount must be greater than zero."]}
        return
    assert response.status_code == 201, response.json()
    assert response.json()["amount"] == credited
    assert balance(wallet) == Decimal("1000.00") + Decimal(credited)


def test_a_quote_takes_the_same_format(auth_api):
    response = auth_api.get("/api/v1/rates/quote/?from=USD&to=KZT&amount=%2B5")
    assert response.status_code == 400
    assert response.json() == {"amount": [MESSAGE]}
