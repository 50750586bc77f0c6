"""POST wallets/{id}/operation and transfers/ on the lean path (wallet_project.lean):
the same answers, errors and idempotency as DRF's own path (forced here with an
Accept only DRF handles: `application/json; indent=0` is compact JSON), and
proof of which path served each request."""

import json
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from rest_framework.views import APIView

from transactions.api.transfers import TransferSerializer, _parse_well_formed
from transactions.models import Entry, Transaction
from wallets.models import Wallet

pytestmark = pytest.mark.django_db

DRF_PATH = {"HTTP_ACCEPT": "application/json; indent=0"}


@pytest.fixture
def drf_calls(monkeypatch) -> list[str]:
    """The paths DRF's pipeline ran for (APIView.initial: authentication,
    permissions, throttles), so a test can tell the lean path from DRF's."""
    calls: list[str] = []
    initial = APIView.initial

    def counting(self, request, *args, **kwargs):
        calls.append(request.path)
        return initial(self, request, *args, **kwargs)

    monkeypatch.setattr(APIView, "initial", counting)
    return calls


def _without_ids(body: dict) -> dict:
    return {
        k: v for k, v in body.items() if k not in {"operation_id", "transaction_id"}
    }


def _operate(client, wallet, body, **extra):
    return client.post(
        f"/api/v1/wallets/{wallet.id}/operation", body, format="json", **extra
    )


def test_an_operation_is_served_lean_with_drfs_answer(auth_api, wallet, drf_calls):
    body = {"operation_type": "DEPOSIT", "amount": "10.50"}
    lean = _operate(auth_api, wallet, body)
    assert drf_calls == []
    drf = _operate(auth_api, wallet, body, **DRF_PATH)
    assert len(drf_calls) == 1
    assert lean.status_code == drf.status_code == 201, lean.content
    assert lean["Content-Type"] == drf["Content-Type"] == "application/json"
    assert lean["Allow"] == drf["Allow"]
    assert list(lean.json()) == list(drf.json())
    assert _without_ids(lean.json()) == {
        "status": "SUCCESS",
        "operation_type": "DEPOSIT",
        "amount": "10.50",
        "currency": "KZT",
        "new_balance": "1010.50",
    }
    assert drf.json()["new_balance"] == "1021.00"
    wallet.refresh_from_db()
    assert wallet.balance.amount == Decimal("1021.00")
    txn = Transaction.objects.get(pk=lean.json()["operation_id"])
    assert txn.initiator_id == wallet.owner_id
    assert Entry.objects.filter(wallet=wallet).count() == 3  # opening + 2


@pytest.mark.parametrize(
    "body, expected",
    [
        ({"operation_type": "WITHDRAW", "amount": "5000.00"}, 400),  # insufficient
        ({"operation_type": "WITHDRAW", "amount": "1.001"}, 400),  # serializer
        ({"operationType": "DEPOSIT", "amount": 10.5}, 201),  # a JSON number
        ({"operation_type": "DEPOSIT", "amount": "0.00"}, 400),
        ({"operation_type": "REFUND", "amount": "1.00"}, 400),
        ({"operation_type": "DEPOSIT", "amount": "1.00", "extra": 1}, 201),
    ],
)
def test_lean_and_drf_paths_give_the_same_status_and_error(
    auth_api, wallet, body, expected
):
    lean = _operate(auth_api, wallet, body)
    drf = _operate(auth_api, wallet, body, **DRF_PATH)
    assert lean.status_code == drf.status_code == expected, lean.content
    if expected == 201:
        assert _without_ids(lean.json()).keys() == _without_ids(drf.json()).keys()
    else:
        assert lean.content == drf.content
        wallet.refresh_from_db()
        assert wallet.balance.amount == Decimal("1000.00")


def test_domain_errors_on_the_lean_path_are_drfs_bytes(
    auth_api, user, make_wallet, other_user, drf_calls
):
    mine = make_wallet(owner=user, currency="USD", balance="5.00")
    theirs = make_wallet(owner=other_user, currency="EUR", balance="5.00")
    blocked = make_wallet(owner=user, currency="EUR", balance="5.00")
    Wallet.objects.filter(pk=blocked.pk).update(status=Wallet.Status.BLOCKED)
    cases = [
        (mine, {"operation_type": "WITHDRAW", "amount": "5.01"}, 400),
        (theirs, {"operation_type": "DEPOSIT", "amount": "1.00"}, 404),
        (blocked, {"operation_type": "WITHDRAW", "amount": "1.00"}, 409),
    ]
    for wallet, body, status in cases:
        drf_calls.clear()
        lean = _operate(auth_api, wallet, body)
        assert drf_calls == []  # answered by DRF's exception handling only
        drf = _operate(auth_api, wallet, body, **DRF_PATH)
        assert lean.status_code == drf.status_code == status
        assert lean.content == drf.content
        assert lean.json()["code"] in {
            "insufficient_funds",
            "wallet_not_found",
            "wallet_blocked",
        }
    for wallet in (mine, theirs, blocked):
        wallet.refresh_from_db()
        assert wallet.balance.amount == Decimal("5.00")


def test_malformed_ids_bodies_and_content_types_take_drfs_path(
    auth_api, wallet, drf_calls
):
    url = f"/api/v1/wallets/{wallet.id}/operation"
    assert (
        auth_api.post(
            "/api/v1/wallets/not-a-uuid/operation",
            {"operation_type": "DEPOSIT", "amount": "1.00"},
            format="json",
        ).json()["code"]
        == "wallet_not_found"
    )
    malformed = auth_api.post(url, "{", content_type="application/json")
    assert malformed.status_code == 400
    assert "Malformed JSON" in malformed.json()["detail"]
    nan = auth_api.post(
        url,
        '{"operation_type": "DEPOSIT", "amount": NaN}',
        content_type="application/json",
    )
    assert nan.status_code == 400
    assert auth_api.post(url, "x", content_type="text/plain").status_code == 415
    assert len(drf_calls) == 4
    wallet.refresh_from_db()
    assert wallet.balance.amount == Decimal("1000.00")


def test_an_idempotency_key_is_one_key_across_both_paths(auth_api, wallet):
    body = {"operation_type": "WITHDRAW", "amount": "100.00"}
    key = {"HTTP_IDEMPOTENCY_KEY": "lean-then-drf"}
    first = _operate(auth_api, wallet, body, **key)
    again = _operate(auth_api, wallet, body, **key, **DRF_PATH)
    again_lean = _operate(auth_api, wallet, body, **key)
    assert first.status_code == again.status_code == again_lean.status_code == 201
    assert first.json() == again.json() == again_lean.json()
    reused = _operate(
        auth_api, wallet, {"operation_type": "WITHDRAW", "amount": "1.00"}, **key
    )
    reused_drf = _operate(
        auth_api,
        wallet,
        {"operation_type": "WITHDRAW", "amount": "1.00"},
        **key,
        **DRF_PATH,
    )
    assert reused.status_code == reused_drf.status_code == 422
    assert reused.content == reused_drf.content
    blank = _operate(auth_api, wallet, body, HTTP_IDEMPOTENCY_KEY=" ")
    blank_drf = _operate(auth_api, wallet, body, HTTP_IDEMPOTENCY_KEY=" ", **DRF_PATH)
    assert blank.status_code == blank_drf.status_code == 400
    assert blank.content == blank_drf.content
    wallet.refresh_from_db()
    assert wallet.balance.amount == Decimal("900.00")


def test_a_deactivated_user_gets_drfs_401_and_moves_nothing(
    auth_api, user, wallet, settings
):
    settings.JWT_USER_CACHE_SECONDS = 0
    user.is_active = False
    user.save(update_fields=["is_active"])
    body = {"operation_type": "DEPOSIT", "amount": "1.00"}
    lean = _operate(auth_api, wallet, body)
    drf = _operate(auth_api, wallet, body, **DRF_PATH)
    assert lean.status_code == drf.status_code == 401
    assert lean.content == drf.content
    assert lean["WWW-Authenticate"] == drf["WWW-Authenticate"]
    transfer = auth_api.post(
        "/api/v1/transfers/",
        {"from_wallet": str(wallet.id), "to_wallet_number": "0", "amount": "1.00"},
        format="json",
    )
    assert transfer.status_code == 401
    wallet.refresh_from_db()
    assert wallet.balance.amount == Decimal("1000.00")


def _transfer(client, body, **extra):
    return client.post("/api/v1/transfers/", body, format="json", **extra)


def test_a_transfer_is_served_lean_with_drfs_answer(
    auth_api, wallet, make_wallet, other_user, drf_calls
):
    theirs = make_wallet(owner=other_user, currency="KZT", balance="0")
    body = {
        "from_wallet": wallet.number,
        "to_wallet_number": theirs.number,
        "amount": "12.34",
        "description": "rent é",
    }
    lean = _transfer(auth_api, body)
    assert drf_calls == []
    drf = _transfer(auth_api, {**body, "from_wallet": str(wallet.id)}, **DRF_PATH)
    assert len(drf_calls) == 1
    assert lean.status_code == drf.status_code == 201, lean.content
    assert (
        _without_ids(lean.json())
        == _without_ids(drf.json())
        == {
            "kind": "transfer",
            "amount": "12.34",
            "currency": "KZT",
            "credited_amount": "12.34",
            "credited_currency": "KZT",
            "rate": "1.0000000000",
            "spread_bps": 0,
            "spread": "0.00",
        }
    )
    txn = Transaction.objects.get(pk=lean.json()["transaction_id"])
    assert txn.description == "rent é"
    theirs.refresh_from_db()
    assert theirs.balance.amount == Decimal("24.68")


def test_transfer_errors_on_the_lean_path_are_drfs_bytes(
    auth_api, wallet, make_wallet, other_user
):
    theirs = make_wallet(owner=other_user, currency="KZT", balance="0")
    cases = [
        {"to_wallet_number": theirs.number, "amount": "1000.01"},  # insufficient
        {"to_wallet_number": wallet.number, "amount": "1.00"},  # same wallet
        {"to_wallet_number": "4000000000000002", "amount": "1.00"},  # unknown
        {"to_wallet_number": theirs.number, "amount": "1.001"},  # serializer
        {"to_wallet_number": " ", "amount": "1.00"},  # serializer
    ]
    for case in cases:
        body = {"from_wallet": str(wallet.id), **case}
        lean = _transfer(auth_api, body)
        drf = _transfer(auth_api, body, **DRF_PATH)
        assert lean.status_code == drf.status_code, (case, lean.content)
        assert 400 <= lean.status_code < 500
        assert lean.content == drf.content
    foreign = _transfer(
        auth_api,
        {
            "from_wallet": str(theirs.id),
            "to_wallet_number": wallet.number,
            "amount": "1",
        },
    )
    assert foreign.status_code == 404
    wallet.refresh_from_db()
    theirs.refresh_from_db()
    assert (wallet.balance.amount, theirs.balance.amount) == (Decimal("1000.00"), 0)


_text = st.one_of(
    st.text(max_size=300),
    st.sampled_from(["", " ", " x", "x ", "4000000000000002", "a\x00b", "\ud800"]),
)
_junk = st.one_of(
    _text,
    st.integers(),
    st.none(),
    st.booleans(),
    st.decimals(allow_nan=False, places=3),
    st.from_regex(r"\A[0-9]{1,14}(\.[0-9]{0,3})?\Z"),
)
_number = st.from_regex(r"\A[0-9]{16}\Z")
# A body the fast parse must take: every part in its common spelling.
_valid_bodies = st.fixed_dictionaries(
    {
        "from_wallet": st.one_of(_number, st.uuids().map(str)),
        "to_wallet_number": _number,
        "amount": st.from_regex(
            r"\A(?:0\.(?:0[1-9]|[1-9][0-9]?)|[1-9][0-9]{0,8}(?:\.[0-9]{1,2})?)\Z"
        ),
    },
    optional={
        "description": st.text(
            # Spaces other than " " (NBSP, ...) are not printable to Python: the
            # fast parse leaves those to the serializer, as it should.
            st.characters(
                codec="utf-8", categories=["L", "N", "P"], include_characters=" "
            ),
            max_size=255,
        ).map(str.strip)
    },
)


@st.composite
def _bodies(draw) -> tuple[dict, bool]:
    """(body, built valid): a valid body, or one with a part swapped for junk,
    dropped, or an unknown field added."""
    body = draw(_valid_bodies)
    how = draw(st.sampled_from(["valid", "valid", "junk", "drop", "extra"]))
    if how == "junk":
        body[draw(st.sampled_from(sorted(body)))] = draw(_junk)
    elif how == "drop":
        del body[draw(st.sampled_from(sorted(body)))]
    elif how == "extra":
        body[draw(st.sampled_from(["note", "currency", "Amount"]))] = draw(_junk)
    return body, how == "valid"


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(case=_bodies())
def test_the_transfer_fast_parse_agrees_with_the_serializer(case):
    """Whatever the fast parse takes, the serializer takes with the same result;
    a body in the common spelling always takes the fast path; anything else goes
    to the serializer, which words the error."""
    body, built_valid = case
    parsed = json.loads(json.dumps(body, default=str))
    fast = _parse_well_formed(parsed)
    if built_valid:
        assert fast is not None, body
    if fast is None:
        event("the serializer decides")
        return
    event("fast path: compared with the serializer")
    serializer = TransferSerializer(data=parsed)
    assert serializer.is_valid(), (body, serializer.errors)
    assert fast == dict(serializer.validated_data)


def test_the_transfer_fast_parse_takes_the_common_spellings():
    common = {
        "from_wallet": "4000000000000002",
        "to_wallet_number": "4000000000000010",
        "amount": "100.50",
    }
    assert _parse_well_formed(common) == {
        **common,
        "amount": Decimal("100.50"),
        "description": "",
    }
    assert (
        _parse_well_formed({**common, "description": "for lunch"})["description"]
        == "for lunch"
    )
    for odd in (
        {**common, "amount": 100.5},
        {**common, "amount": "1.001"},
        {**common, "to_wallet_number": " 4000000000000010"},
        {**common, "note": "x"},
        {k: v for k, v in common.items() if k != "amount"},
    ):
        assert _parse_well_formed(odd) is None


def test_a_get_with_throttles_takes_drfs_path_and_is_throttled(
    auth_api, wallet, drf_calls, monkeypatch
):
    """Lean GETs honour the view's throttles as lean POSTs do: a view with a
    throttle is answered by DRF, which applies it."""
    from rest_framework.throttling import UserRateThrottle

    from wallets.api.views import WalletViewSet

    class OnePerDay(UserRateThrottle):
        rate = "1/day"

    monkeypatch.setattr(WalletViewSet, "throttle_classes", [OnePerDay])
    url = f"/api/v1/wallets/{wallet.id}/"
    assert auth_api.get(url).status_code == 200
    assert drf_calls == [url]
    assert auth_api.get(url).status_code == 429
