"""Webhook endpoints API: create (secret shown once), list, get, delete,
rotate the secret; the per-user limit; another user's endpoint is a 404; URLs
that could reach the service's own network are refused (SSRF)."""

import ipaddress
import re
from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from conftest import client_for
from transactions import webhooks
from transactions.models import WebhookEndpoint

pytestmark = pytest.mark.django_db

URL = "/api/v1/webhook-endpoints/"
PUBLIC = "https://93.184.215.14/hooks/wallet"  # an IP literal: no DNS in tests


def _create(client, url=PUBLIC, event_types=("*",)):
    return client.post(
        URL, {"url": url, "event_types": list(event_types)}, format="json"
    )


def test_create_shows_the_secret_once_then_list_and_get_never_do(user):
    client = client_for(user)
    response = _create(client, event_types=["transaction.posted", "payout.paid"])

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["url"] == PUBLIC
    assert body["event_types"] == ["transaction.posted", "payout.paid"]
    assert body["status"] == "enabled"
    assert re.fullmatch(r"whsec_[A-Za-z0-9_-]{43}", body["secret"])
    assert body["created_at"]
    assert WebhookEndpoint.objects.get(pk=body["id"]).secret == body["secret"]

    listed = client.get(URL).json()
    assert [e["id"] for e in listed] == [body["id"]]
    assert "secret" not in listed[0]
    detail = client.get(f"{URL}{body['id']}/").json()
    assert "secret" not in detail
    assert detail["id"] == body["id"]


def test_delete_then_it_is_gone(user):
    client = client_for(user)
    endpoint_id = _create(client).json()["id"]
    assert client.delete(f"{URL}{endpoint_id}/").status_code == 204
    assert client.get(f"{URL}{endpoint_id}/").status_code == 404
    assert client.delete(f"{URL}{endpoint_id}/").status_code == 404
    assert not WebhookEndpoint.objects.exists()


def test_another_users_endpoint_is_a_404_and_is_left_alone(user, other_user):
    endpoint_id = _create(client_for(other_user)).json()["id"]
    client = client_for(user)
    for response in (
        client.get(f"{URL}{endpoint_id}/"),
        client.delete(f"{URL}{endpoint_id}/"),
        client.post(f"{URL}{endpoint_id}/rotate-secret/"),
    ):
        assert response.status_code == 404
        assert response.json()["code"] == "webhook_endpoint_not_found"
    assert client.get(URL).json() == []
    assert WebhookEndpoint.objects.filter(pk=endpoint_id).exists()
    assert client.get(f"{URL}not-a-uuid/").status_code == 404


def test_a_service_account_may_have_endpoints(service_account):
    assert _create(client_for(service_account)).status_code == 201


def test_at_most_the_limit_per_user(user, other_user, settings):
    settings.WEBHOOKS_MAX_ENDPOINTS = 2
    client = client_for(user)
    assert _create(client).status_code == 201
    assert _create(client).status_code == 201
    response = _create(client)
    assert response.status_code == 409
    assert response.json()["code"] == "webhook_endpoint_limit_reached"
    assert WebhookEndpoint.objects.filter(user=user).count() == 2
    assert _create(client_for(other_user)).status_code == 201


@pytest.mark.parametrize(
    "event_types",
    [[], ["*", "transaction.posted"], ["transaction.unknown"], "*", [1], None],
)
def test_bad_event_types_are_400(user, event_types):
    response = client_for(user).post(
        URL, {"url": PUBLIC, "event_types": event_types}, format="json"
    )
    assert response.status_code == 400
    assert "event_types" in response.json()
    assert not WebhookEndpoint.objects.exists()


def test_duplicate_event_types_are_kept_once(user):
    body = _create(
        client_for(user), event_types=["payout.paid", "payout.paid", "fee.charged"]
    ).json()
    assert body["event_types"] == ["payout.paid", "fee.charged"]


@pytest.mark.parametrize(
    "url",
    [
        "ftp://93.184.215.14/",
        "file:///etc/passwd",
        "javascript:alert(1)",
        "http://user:pass@93.184.215.14/",
        "http://user@93.184.215.14/",
        "http:///nohost",
        "http://93.184.215.14:99999/",
        "http://93.184.215.14/ path",
        "http://127.0.0.1/",
        "http://127.1.2.3:8080/",
        "http://localhost:8000/hook",
        "http://10.0.0.5/",
        "http://172.16.0.1/",
        "http://192.168.1.1/",
        "http://100.64.0.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://0.0.0.0/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::ffff:169.254.169.254]/",
        "http://[fd00:ec2::254]/",
        "http://[fe80::1]/",
        "http://[fc00::1]/",
        "http://224.0.0.1/",
        "http://240.0.0.1/",
        "http://255.255.255.255/",
        "http://[ff02::1]/",
        "http://[64:ff9b::7f00:1]/",
        "http://[2002:7f00:1::]/",
        "http://0x7f000001/",
        "http://2130706433/",
        "http://nonexistent.invalid/",
    ],
)
def test_urls_that_may_not_be_called_are_400_url_not_allowed(user, url):
    response = _create(client_for(user), url=url)
    assert response.status_code == 400, response.content
    assert response.json()["code"] == "url_not_allowed"
    assert not WebhookEndpoint.objects.exists()


def test_a_non_string_url_is_400(user):
    response = client_for(user).post(
        URL, {"url": 5, "event_types": ["*"]}, format="json"
    )
    assert response.status_code == 400
    assert "url" in response.json()


def test_ports_and_queries_are_allowed(user):
    url = "http://93.184.215.14:8443/hook?token=abc"
    assert _create(client_for(user), url=url).json()["url"] == url


def test_private_networks_when_allowed(user, allow_private):
    client = client_for(user)
    assert _create(client, url="http://127.0.0.1:9/hook").status_code == 201
    assert _create(client, url="http://localhost:9/hook").status_code == 201
    # Still only http(s), and never credentials.
    assert _create(client, url="ftp://127.0.0.1/").status_code == 400
    assert _create(client, url="http://a:b@127.0.0.1/").status_code == 400


def test_rotate_gives_a_new_secret_and_both_sign_for_24_hours(user):
    client = client_for(user)
    created = _create(client).json()
    old = created["secret"]
    start = timezone.now()

    with time_machine.travel(start, tick=False):
        response = client.post(f"{URL}{created['id']}/rotate-secret/")
    assert response.status_code == 200
    new = response.json()["secret"]
    assert new != old and new.startswith("whsec_")
    assert set(response.json()) == {"secret"}

    endpoint = WebhookEndpoint.objects.get(pk=created["id"])
    signing = webhooks.endpoint_signing_secrets
    assert signing(endpoint, now=start + timedelta(hours=23)) == [new, old]
    assert signing(endpoint, now=start + timedelta(hours=24, seconds=1)) == [new]


def test_address_checks_cover_every_kind_of_non_public_address():
    public = ["93.184.215.14", "8.8.8.8", "2606:4700:4700::1111"]
    refused = [
        "127.0.0.1",
        "10.1.2.3",
        "169.254.169.254",
        "fd00:ec2::254",
        "::ffff:10.0.0.1",
        "::",
        "::1",
        "fe80::1",
        "239.1.1.1",
        "198.18.0.1",
        "192.0.2.1",
    ]
    for address in public:
        assert webhooks.address_is_public(ipaddress.ip_address(address)), address
    for address in refused:
        assert not webhooks.address_is_public(ipaddress.ip_address(address)), address


def test_the_target_connects_to_the_checked_address_and_names_the_host(
    allow_private,
):
    target = webhooks.url_target("http://localhost:8080/hook?x=1")
    assert target.address in {"127.0.0.1", "::1"}
    assert target.host_header == "localhost:8080"
    assert target.path == "/hook?x=1"
    assert webhooks.url_target("https://93.184.215.14/").host_header == "93.184.215.14"


@pytest.mark.parametrize(
    "url",
    ["http://169.254.169.254/latest/meta-data/", "http://[::ffff:169.254.169.254]/"],
)
def test_a_cloud_metadata_address_is_refused_even_on_private_networks(
    allow_private, url
):
    with pytest.raises(webhooks.UrlNotAllowed, match="metadata"):
        webhooks.url_target(url)
