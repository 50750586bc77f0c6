"""wallet_project.lean: the lean path accepts exactly the tokens simplejwt accepts
and renders exactly what DRF renders; the admin keeps its sessions, CSRF and
messages while the API skips them."""

import time
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.test import Client, RequestFactory
from django.utils import timezone
from rest_framework.renderers import JSONRenderer
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

from accounts.tests.operators import totp_code, totp_device
from wallet_project import lean


@pytest.fixture(autouse=True)
def _forget_tokens():
    lean._tokens.clear()
    yield
    lean._tokens.clear()


def _request(authorization: str | None = None, **extra):
    if authorization is not None:
        extra["HTTP_AUTHORIZATION"] = authorization
    return RequestFactory().get("/api/v1/wallets/", **extra)


@pytest.mark.django_db
def test_a_valid_access_token_gives_its_user_id(user):
    token = AccessToken.for_user(user)
    assert lean.bearer_user_id(_request(f"Bearer {token}")) == user.pk
    # Verified once, then served from the per-process cache.
    assert lean.bearer_user_id(_request(f"Bearer {token}")) == user.pk


@pytest.mark.django_db
@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        "Basic dXNlcjpwYXNz",
        "Bearer a b",
        "Bearer not.a.token",
        "bearer {access}",
        "Bearer {refresh}",
        "Bearer {expired}",
        "Bearer {forged}",
    ],
)
def test_anything_simplejwt_would_not_authenticate_gives_none(user, header):
    """The caller then lets DRF answer, with DRF's own 401."""
    access = AccessToken.for_user(user)
    expired = AccessToken.for_user(user)
    expired.set_exp(lifetime=-timedelta(seconds=1))
    head, payload, signature = str(access).split(".")
    forged = f"{head}.{payload}.{signature[:-2]}AA"
    if header is not None:
        header = header.format(
            access=access,
            refresh=RefreshToken.for_user(user),
            expired=expired,
            forged=forged,
        )
    assert lean.bearer_user_id(_request(header)) is None


@pytest.mark.django_db
def test_a_cached_token_is_refused_once_it_expires(user, monkeypatch):
    token = AccessToken.for_user(user)
    token.set_exp(lifetime=timedelta(seconds=60))
    assert lean.bearer_user_id(_request(f"Bearer {token}")) == user.pk
    later = time.time() + 61
    monkeypatch.setattr(lean.time, "time", lambda: later)
    assert lean.bearer_user_id(_request(f"Bearer {token}")) is None


def test_only_headers_that_negotiate_compact_json_are_plain():
    for accept in (None, "*/*", "application/json", "application/*"):
        extra = {} if accept is None else {"HTTP_ACCEPT": accept}
        assert lean.wants_plain_json(_request(**extra))
    for accept in ("text/html", "application/json; indent=4", "application/xml"):
        assert not lean.wants_plain_json(_request(HTTP_ACCEPT=accept))
    assert not lean.wants_plain_json(
        RequestFactory().get("/api/v1/wallets/", {"format": "json"})
    )


def test_json_bytes_are_drfs_json_renderer_output():
    data = {
        "text": 'rent \u2028 \u2029 é <b> "quoted"',
        "id": uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "n": 12,
        "none": None,
        "nested": [{"a": True}, []],
        "amount": "1.50",
    }
    assert lean.json_bytes(data) == JSONRenderer().render(data)


def test_drf_datetime_matches_drfs_datetime_field():
    from rest_framework.fields import DateTimeField

    field = DateTimeField()
    tz = timezone.get_current_timezone()
    for value in (
        timezone.now(),
        timezone.now().replace(microsecond=0),
        timezone.now().astimezone(timezone.get_fixed_timezone(330)),
    ):
        assert lean.drf_datetime(value, tz) == field.to_representation(value)
    assert lean.drf_datetime(None, tz) is None


# --- Middleware: the admin keeps sessions, CSRF and messages; the API skips them ------


@pytest.mark.django_db
def test_api_requests_skip_sessions_csrf_cookie_and_messages(auth_api, wallet):
    auth_api.cookies["sessionid"] = "whatever"
    for url in (f"/api/v1/wallets/{wallet.id}/", "/api/v1/wallets/"):
        response = auth_api.get(url)
        assert response.status_code == 200
        request = response.wsgi_request
        assert not hasattr(request, "session")
        assert not hasattr(request, "_messages")
        assert "CSRF_COOKIE" not in request.META
        assert not response.cookies
        assert "Cookie" not in response.get("Vary", "")


@pytest.mark.django_db
def test_admin_still_has_csrf_sessions_and_messages(django_user_model):
    django_user_model.objects.create_superuser(
        email="op@example.com", password="a-long-password-1"
    )
    client = Client(enforce_csrf_checks=True)
    credentials = {"username": "op@example.com", "password": "a-long-password-1"}
    page = client.get("/admin/login/")
    assert "csrftoken" in page.cookies
    # Without the token the login is refused; with it, a session starts.
    assert client.post("/admin/login/", credentials).status_code == 403
    token = page.cookies["csrftoken"].value
    logged_in = client.post(
        "/admin/login/", {**credentials, "csrfmiddlewaretoken": token}
    )
    assert logged_in.status_code == 302
    assert "sessionid" in logged_in.cookies
    # The second factor: its form needs the token too.
    device = totp_device(django_user_model.objects.get(email="op@example.com"))
    code = {"code": totp_code(device)}
    assert client.post("/admin/second-factor/", code).status_code == 403
    token = client.cookies["csrftoken"].value
    verified = client.post(
        "/admin/second-factor/", {**code, "csrfmiddlewaretoken": token}
    )
    assert verified.status_code == 302, verified.content.decode()[:500]
    index = client.get("/admin/")
    assert index.status_code == 200
    assert index.wsgi_request.user.is_superuser
    assert hasattr(index.wsgi_request, "_messages")


def test_decimal_money_renders_as_drf_would():
    # Serializers hand the renderer strings for money; a stray Decimal would be a
    # float in DRF's encoder and must be one here too.
    assert lean.json_bytes({"x": Decimal("1.5")}) == JSONRenderer().render(
        {"x": Decimal("1.5")}
    )


@pytest.mark.django_db
def test_lean_requests_off_sends_everything_through_drf(
    settings, auth_api, wallet, monkeypatch
):
    """LEAN_REQUESTS=false (the A/B switch of make bench): the same answer, from
    DRF's pipeline."""
    from rest_framework.views import APIView

    url = f"/api/v1/wallets/{wallet.id}/"
    lean = auth_api.get(url)
    settings.LEAN_REQUESTS = False
    calls = []
    initial = APIView.initial

    def counting(self, request, *args, **kwargs):
        calls.append(request.path)
        return initial(self, request, *args, **kwargs)

    monkeypatch.setattr(APIView, "initial", counting)
    drf = auth_api.get(url)
    assert calls == [url]
    assert drf.status_code == lean.status_code == 200
    assert drf.content == lean.content
