"""A replay of a money-moving POST is the first answer byte for byte, marked
`Idempotency-Replayed: true` (issue 16.3: the stored jsonb reordered its keys)."""

import json

import pytest

from transactions.models import Transaction

pytestmark = pytest.mark.django_db


def twice(client, url, body, key):
    first = client.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY=key)
    again = client.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY=key)
    return first, again


def assert_replayed(first, again):
    assert first.status_code == again.status_code == 201
    assert again.content == first.content
    assert again["Content-Type"] == first["Content-Type"] == "application/json"
    assert again["Idempotency-Replayed"] == "true"
    assert "Idempotency-Replayed" not in first


@pytest.mark.parametrize(
    "amount",
    ["25.00", 25],  # a plain string takes the lean path, a number DRF's
    ids=["lean", "drf"],
)
def test_an_operation_replay_is_the_same_bytes(auth_api, wallet, amount):
    url = f"/api/v1/wallets/{wallet.id}/operation"
    first, again = twice(
        auth_api, url, {"operationType": "DEPOSIT", "amount": amount}, f"op-{amount}"
    )
    assert_replayed(first, again)
    # Key order as first sent, not jsonb's (which sorts keys by length).
    assert list(json.loads(again.content)) == [
        "operation_id",
        "status",
        "operation_type",
        "amount",
        "currency",
        "new_balance",
    ]
    assert Transaction.objects.filter(kind="deposit").count() == 2  # + the fixture's


@pytest.mark.parametrize("amount", ["5.00", 5], ids=["lean", "drf"])
def test_a_transfer_replay_is_the_same_bytes(auth_api, wallet, make_wallet, amount):
    receiver = make_wallet()
    body = {
        "from_wallet": str(wallet.id),
        "to_wallet_number": receiver.number,
        "amount": amount,
    }
    first, again = twice(auth_api, "/api/v1/transfers/", body, f"tr-{amount}")
    assert_replayed(first, again)
    assert Transaction.objects.filter(kind="transfer").count() == 1


def test_a_topup_replay_is_the_same_bytes(auth_api, wallet):
    url = f"/api/v1/wallets/{wallet.id}/topups/"
    first, again = twice(auth_api, url, {"amount": "100.00"}, "topup-1")
    assert_replayed(first, again)
    assert wallet.topups.count() == 1


def test_a_request_without_a_key_is_not_marked(auth_api, wallet):
    url = f"/api/v1/wallets/{wallet.id}/operation"
    response = auth_api.post(
        url, {"operationType": "DEPOSIT", "amount": "1.00"}, format="json"
    )
    assert response.status_code == 201
    assert "Idempotency-Replayed" not in response


@pytest.fixture
def batches(monkeypatch) -> list:
    """The requests posted by the group commit (transactions.ledger.group_commit),
    which serves a request outside a transaction (a batch of one, alone)."""
    from transactions.ledger import group_commit

    submitted: list = []
    submit = group_commit._batches.submit

    def counting(item):
        submitted.append(item)
        return submit(item)

    monkeypatch.setattr(group_commit._batches, "submit", counting)
    return submitted


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("amount", ["25.00", 25], ids=["lean", "drf"])
def test_a_replay_answered_by_the_group_commit_is_marked(
    auth_api, wallet, make_wallet, batches, amount
):
    """The group commit's own replay check (before a request joins a batch) marks
    its answer as the lone path's does."""
    url = f"/api/v1/wallets/{wallet.id}/operation"
    body = {"operationType": "DEPOSIT", "amount": amount}
    first, again = twice(auth_api, url, body, f"gc-op-{amount}")
    assert_replayed(first, again)
    assert len(batches) == 1  # the first was posted by a batch, the replay was not
    receiver = make_wallet()
    body = {
        "from_wallet": str(wallet.id),
        "to_wallet_number": receiver.number,
        "amount": amount,
    }
    first, again = twice(auth_api, "/api/v1/transfers/", body, f"gc-tr-{amount}")
    assert_replayed(first, again)
    assert len(batches) == 2
    assert Transaction.objects.filter(kind="transfer").count() == 1
