"""Seed a running stack's database through the product's own services, inside a
`manage.py shell -c` of that stack (tests.stack.Stack.manage):

    users = seed_users(stack, [{"email": ..., "balances": {"KZT": "1000"}}])

Only the services move money here; nothing is written to the ledger by hand.
"""

from __future__ import annotations

import json
from typing import Any

from tests.stack import Stack

PASSWORD = "Hostile-Horse-Battery-7"

_SCRIPT = """
import json
from decimal import Decimal
from accounts.models import User
from transactions import ledger
from wallets.services import exchange_rates_store, wallet_create

spec = json.loads({spec!r})
rates = {{
    "KZT": {{"USD": "0.002", "EUR": "0.0018181818"}},
    "USD": {{"KZT": "500", "EUR": "0.9"}},
    "EUR": {{"KZT": "550", "USD": "1.1111111111"}},
}}
for base, quotes in rates.items():
    exchange_rates_store(
        base=base, rates={{q: Decimal(r) for q, r in quotes.items()}}, source="seed"
    )
out = []
for item in spec:
    user = User.objects.create_user(email=item["email"], password={password!r})
    if item.get("service"):
        user.is_service = True
        user.save(update_fields=["is_service"])
    wallets = {{}}
    for currency, balance in item.get("balances", {{}}).items():
        wallet = wallet_create(owner=user, currency=currency)
        if Decimal(balance):
            ledger.wallet_deposit(wallet=wallet, amount=Decimal(balance))
        wallets[currency] = {{"id": str(wallet.id), "number": wallet.number}}
    topups = [
        str(ledger.topup_create(wallet=wallet, amount=Decimal(a)).id)
        for a in item.get("topups", [])
    ]
    out.append({{"id": str(user.id), "email": user.email, "wallets": wallets,
                 "topups": topups}})
print("SEED=" + json.dumps(out))
"""


def seed_users(stack: Stack, spec: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Create users (ordinary or `service`), their wallets with `balances` (deposited
    through the ledger), pending `topups` on their last wallet, and fresh rates."""
    output = stack.manage(
        "shell", "-c", _SCRIPT.format(spec=json.dumps(spec), password=PASSWORD)
    )
    line = next(li for li in output.splitlines() if li.startswith("SEED="))
    return json.loads(line.removeprefix("SEED="))


def login(stack: Stack, email: str) -> dict[str, str]:
    response = stack.request(
        "POST", "/api/v1/auth/token/", json_body={"email": email, "password": PASSWORD}
    )
    assert response.status == 200, response.body
    return response.json()
