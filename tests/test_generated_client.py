"""A Python client generated from the live schema works (issue 24).

openapi-python-client (pinned in requirements-dev.txt) generates a package from
/api/schema/ as served by a live test server, into a temporary directory (never
committed); every module of it must import, and a real flow through it must get
each answer parsed into the model the schema documents for it: the success
models, and the `Error` model (with its `ErrorCode` enum) for refusals.
"""

import importlib
import json
import pkgutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from urllib.parse import parse_qs, urlsplit

import httpx  # the generated client's own HTTP library
import pytest

from accounts.tests.factories import PASSWORD, UserFactory

PACKAGE = "wallet_generated_client"
BIN = Path(sys.executable).parent
GENERATOR = BIN / "openapi-python-client"


@pytest.fixture(scope="module")
def client_package(
    live_server, tmp_path_factory, django_db_blocker
) -> Iterator[ModuleType]:
    """The generated package, imported with every one of its modules."""
    workdir = tmp_path_factory.mktemp("generated-client")
    with django_db_blocker.unblock():
        served = httpx.get(f"{live_server.url}/api/schema/?format=json")
    assert served.status_code == 200, served.text
    (workdir / "schema.json").write_text(served.text)
    # Offline and reproducible: the post-hooks are this venv's ruff (the
    # generator's defaults, found on PATH, would be whichever ruff is there).
    (workdir / "config.json").write_text(
        json.dumps(
            {
                "package_name_override": PACKAGE,
                "post_hooks": [
                    f"{BIN / 'ruff'} check . --fix-only --quiet",
                    f"{BIN / 'ruff'} format . --quiet",
                ],
            }
        )
    )
    generated = subprocess.run(
        [
            str(GENERATOR),
            "generate",
            "--path",
            "schema.json",
            "--config",
            "config.json",
            "--meta",
            "none",
            "--output-path",
            PACKAGE,
        ],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = generated.stdout + generated.stderr
    assert generated.returncode == 0, output
    # The generator still writes a package when it had to leave parts out.
    assert "Warning" not in output, output
    sys.path.insert(0, str(workdir))
    try:
        package = importlib.import_module(PACKAGE)
        broken = {}
        for module in pkgutil.walk_packages(package.__path__, f"{PACKAGE}."):
            try:
                importlib.import_module(module.name)
            except Exception as exc:  # every broken module listed, then failed on
                broken[module.name] = repr(exc)
        assert broken == {}, broken
        yield package
    finally:
        sys.path.remove(str(workdir))
        for name in [n for n in sys.modules if n.split(".")[0] == PACKAGE]:
            del sys.modules[name]


def parsed(response, model: type, status: int):
    """The response's parsed body, which must be a `model` holding exactly the
    documented fields (no undocumented extras); every response carries its
    request id."""
    assert response.status_code == status, response.content
    assert isinstance(response.parsed, model), (response.parsed, response.content)
    assert response.parsed.additional_properties == {}, response.content
    assert response.headers["X-Request-ID"]
    return response.parsed


def test_every_operation_module_imports(client_package):
    api = importlib.import_module(f"{PACKAGE}.api")
    operations = [
        m.name for m in pkgutil.walk_packages(api.__path__, f"{api.__name__}.")
    ]
    assert len(operations) > 30  # the tags' packages and their operations


@pytest.mark.django_db(transaction=True)
def test_a_real_flow_through_the_generated_client(client_package, live_server):
    from wallet_generated_client import AuthenticatedClient, Client
    from wallet_generated_client.api.auth import auth_token_create
    from wallet_generated_client.api.service import (
        service_topups_list,
        service_topups_update,
    )
    from wallet_generated_client.api.transfers import transfers_create
    from wallet_generated_client.api.wallets import (
        wallets_create,
        wallets_list,
        wallets_operation_create,
        wallets_retrieve,
        wallets_topups_create,
        wallets_transactions_list,
    )
    from wallet_generated_client.models import (
        CurrencyEnum,
        Error,
        ErrorCode,
        OperationRequest,
        OperationResult,
        OperationTypeEnum,
        PaginatedEntryList,
        PaginatedTopUpList,
        TokenObtainRequest,
        TokenPair,
        TopUp,
        TopUpCreateRequest,
        TopUpDecisionRequest,
        TopUpDecisionStatusEnum,
        TopUpStatusEnum,
        TransferRequest,
        TransferResult,
        Wallet,
        WalletCreateRequest,
    )
    from wallet_generated_client.types import UNSET

    owner = UserFactory()
    provider = UserFactory(is_service=True)
    receiver = UserFactory()
    public = Client(base_url=live_server.url, raise_on_unexpected_status=True)

    def login(user) -> AuthenticatedClient:
        body = TokenObtainRequest(email=user.email, password=PASSWORD)
        tokens = parsed(
            auth_token_create.sync_detailed(client=public, body=body), TokenPair, 200
        )
        return AuthenticatedClient(
            base_url=live_server.url,
            token=tokens.access,
            raise_on_unexpected_status=True,
        )

    ann, psp, bob = login(owner), login(provider), login(receiver)

    # Wallets: none yet; open one, and the receiver opens theirs.
    listed = wallets_list.sync_detailed(client=ann)
    assert listed.status_code == 200 and listed.parsed == []
    create = WalletCreateRequest(currency=CurrencyEnum.KZT, name="Main")
    wallet = parsed(wallets_create.sync_detailed(client=ann, body=create), Wallet, 201)
    assert (wallet.currency, wallet.balance) == ("KZT", "0.00")
    listed = wallets_list.sync_detailed(client=ann)
    assert [w.id for w in listed.parsed] == [wallet.id]
    assert all(isinstance(w, Wallet) for w in listed.parsed)
    target = parsed(
        wallets_create.sync_detailed(
            client=bob, body=WalletCreateRequest(currency=CurrencyEnum.KZT)
        ),
        Wallet,
        201,
    )

    # A deposit with an Idempotency-Key, and its replay.
    def operate(kind, amount, key=UNSET):
        return wallets_operation_create.sync_detailed(
            str(wallet.id),
            client=ann,
            body=OperationRequest(operation_type=kind, amount=amount),
            idempotency_key=key,
        )

    deposit = operate(OperationTypeEnum.DEPOSIT, "100.00", "deposit-1")
    done = parsed(deposit, OperationResult, 201)
    assert (done.status, done.new_balance) == ("SUCCESS", "100.00")
    assert "Idempotency-Replayed" not in deposit.headers
    replay = operate(OperationTypeEnum.DEPOSIT, "100.00", "deposit-1")
    assert parsed(replay, OperationResult, 201).operation_id == done.operation_id
    assert replay.headers["Idempotency-Replayed"] == "true"

    # A refused withdrawal is the documented error model, its code the enum's.
    refused = parsed(
        operate(OperationTypeEnum.WITHDRAW, "1000.00", "withdraw-1"), Error, 400
    )
    assert refused.code is ErrorCode.INSUFFICIENT_FUNDS

    # History, newest first, one entry a page: the next page through its cursor.
    parsed(operate(OperationTypeEnum.DEPOSIT, "50.00"), OperationResult, 201)
    first = parsed(
        wallets_transactions_list.sync_detailed(str(wallet.id), client=ann, limit=1),
        PaginatedEntryList,
        200,
    )
    assert [e.amount for e in first.results] == ["50.00"]
    cursor = parse_qs(urlsplit(first.next_).query)["cursor"][0]
    second = parsed(
        wallets_transactions_list.sync_detailed(
            str(wallet.id), client=ann, limit=1, cursor=cursor
        ),
        PaginatedEntryList,
        200,
    )
    assert [(e.amount, e.balance_after) for e in second.results] == [
        ("100.00", "100.00")
    ]

    # A transfer to another user's wallet by its number.
    transfer = TransferRequest(
        from_wallet=str(wallet.id), to_wallet_number=target.number, amount="30.00"
    )
    sent = parsed(
        transfers_create.sync_detailed(
            client=ann, body=transfer, idempotency_key="transfer-1"
        ),
        TransferResult,
        201,
    )
    assert (sent.amount, sent.credited_amount) == ("30.00", "30.00")

    # A top-up, decided by the payment provider's service account.
    topup = parsed(
        wallets_topups_create.sync_detailed(
            str(wallet.id), client=ann, body=TopUpCreateRequest(amount="200.00")
        ),
        TopUp,
        201,
    )
    assert topup.status is TopUpStatusEnum.PENDING
    pending = parsed(
        service_topups_list.sync_detailed(client=psp), PaginatedTopUpList, 200
    )
    assert [t.id for t in pending.results] == [topup.id]
    decision = TopUpDecisionRequest(
        status=TopUpDecisionStatusEnum.PAID, commission="0.00"
    )
    paid = parsed(
        service_topups_update.sync_detailed(str(topup.id), client=psp, body=decision),
        TopUp,
        200,
    )
    assert paid.status is TopUpStatusEnum.PAID
    now = parsed(wallets_retrieve.sync_detailed(wallet.id, client=ann), Wallet, 200)
    assert now.balance == "320.00"  # 100 + 50 - 30 + 200

    # Someone else's wallet, or none: a 404 in the error model.
    for missing in (target.id, uuid.uuid4()):
        error = parsed(wallets_retrieve.sync_detailed(missing, client=ann), Error, 404)
        assert error.code is ErrorCode.WALLET_NOT_FOUND
