"""Attacks on the back-office's second factor: every admin URL the URL resolver
knows, asked for with the password but without the code, goes to the code page
(nothing else answers: no page, no action, no JSON); without a login at all, to
the login page; and guessing the code, even in parallel, locks the operator."""

from __future__ import annotations

import re
import uuid
from urllib.parse import parse_qs, urlsplit

import pytest
from django.contrib.admin.models import LogEntry
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.urls.resolvers import RegexPattern, RoutePattern

from accounts.tests.factories import PASSWORD
from accounts.tests.operators import operator, totp_code, totp_device
from conftest import run_in_threads
from wallet_project.middleware import SecondFactorMiddleware

pytestmark = pytest.mark.hostile

_CONVERTER_SAMPLES = {"int": "1", "str": "x", "slug": "x", "path": None, "uuid": None}
_ROUTE_PARAMETER = re.compile(r"<(?:(?P<converter>[^>:]+):)?(?P<name>[^>]+)>")
_REGEX_GROUP = re.compile(r"\(\?P<(?P<name>\w+)>(?P<body>[^)]*)\)")


def _route_sample(route: str, an_id: str) -> str:
    def sample(match: re.Match) -> str:
        value = _CONVERTER_SAMPLES.get(match["converter"] or "str", "x")
        return an_id if value is None else value

    return _ROUTE_PARAMETER.sub(sample, route)


def _regex_sample(regex: str) -> str:
    """A path the regex matches: the first alternative of each named group (the
    admin's app_list: one app label), "no-such-page/" for a catch-all."""

    def sample(match: re.Match) -> str:
        body = match["body"]
        if body in (".*", ".+"):
            return "no-such-page/"
        return body.split("|")[0]

    return _REGEX_GROUP.sub(sample, regex).lstrip("^").rstrip("$").replace("\\", "")


def _walk(patterns, prefix: str, namespaces: tuple[str, ...], an_id: str):
    for entry in patterns:
        pattern = entry.pattern
        if isinstance(pattern, RoutePattern):
            piece = _route_sample(str(pattern), an_id)
        elif isinstance(pattern, RegexPattern):
            piece = _regex_sample(pattern.regex.pattern)
        else:  # LocalePrefixPattern and the like: none here
            piece = str(pattern)
        if isinstance(entry, URLResolver):
            inner = (*namespaces, entry.namespace) if entry.namespace else namespaces
            yield from _walk(entry.url_patterns, prefix + piece, inner, an_id)
        elif isinstance(entry, URLPattern) and "admin" in namespaces:
            yield entry.name, "/" + prefix + piece


def admin_urls(an_id: str) -> list[tuple[str | None, str]]:
    """(url name, a path) for every URL pattern in the admin's namespace, read off
    the project's URL resolver: every ModelAdmin's and its extra views, the
    dashboard, autocomplete, the catch-all."""
    return sorted(set(_walk(get_resolver().url_patterns, "", (), an_id)), key=str)


@pytest.fixture
def half_logged_in(db):
    """A superuser with an enrolled authenticator who gave only the password."""
    boss = operator(email="boss@ops.example")
    totp_device(boss)
    client = Client()
    response = client.post(
        reverse("admin:login"), {"username": boss.email, "password": PASSWORD}
    )
    assert response.status_code == 302
    return boss, client


def test_the_enumeration_finds_the_back_office(db):
    urls = dict((path, name) for name, path in admin_urls(str(uuid.uuid4())))
    names = set(urls.values())
    assert {
        "index",
        "dashboard",
        "autocomplete",
        "jsi18n",
        "view_on_site",
        "app_list",
        "wallets_wallet_changelist",
        "wallets_wallet_block",
        "transactions_transaction_review",
        "accounts_user_second_factor_reset",
        "auth_user_password_change",
        "password_change",
    } <= names
    assert None in names  # the catch-all has no name
    assert len(urls) > 100


def test_every_admin_url_without_the_code_goes_to_the_code_page(half_logged_in):
    boss, client = half_logged_in
    open_views = SecondFactorMiddleware.OPEN_VIEWS
    checked = 0
    for name, path in admin_urls(str(boss.pk)):
        if name in open_views:
            continue
        for method in ("get", "post"):
            response = getattr(client, method)(path)
            assert response.status_code == 302, (method, path, response.status_code)
            location = urlsplit(response["Location"])
            assert location.path == reverse("admin:second_factor"), (method, path)
            assert parse_qs(location.query)["next"] == [path]
            checked += 1
    assert checked > 200
    # An admin action (a POST to a changelist) is refused the same way.
    response = client.post(
        reverse("admin:accounts_user_changelist"),
        {"action": "deactivate", "_selected_action": [str(boss.pk)], "apply": "yes"},
    )
    assert response.status_code == 302
    boss.refresh_from_db()
    assert boss.is_active


def test_every_admin_url_without_a_login_goes_to_the_login_page(db):
    client = Client()
    for name, path in admin_urls(str(uuid.uuid4())):
        if name in SecondFactorMiddleware.OPEN_VIEWS:
            continue
        response = client.get(path)
        assert response.status_code == 302, (path, response.status_code)
        assert urlsplit(response["Location"]).path == reverse("admin:login"), path


def test_the_open_pages_are_only_the_way_in_and_out(half_logged_in):
    _boss, client = half_logged_in
    open_views = {"login", "logout", "second_factor", "second_factor_setup"}
    assert open_views == SecondFactorMiddleware.OPEN_VIEWS
    page = client.get(reverse("admin:second_factor"))
    assert page.status_code == 200
    html = page.content.decode()
    assert "boss@ops.example" in html
    assert 'id="nav-sidebar"' not in html and "/admin/wallets/" not in html


@pytest.mark.django_db(transaction=True)
def test_guessing_the_code_in_parallel_locks_after_five(half_logged_in):
    """Ten wrong codes at once on one session: five are counted, the lock refuses
    the rest, and then the right code too."""
    boss, client = half_logged_in
    device = totp_device(boss)
    right = totp_code(device)
    cookie = client.cookies["sessionid"].value

    def guess(i: int) -> int:
        attacker = Client()
        attacker.cookies["sessionid"] = cookie
        code = f"{(int(right) + 1 + i) % 1_000_000:06d}"
        return attacker.post(reverse("admin:second_factor"), {"code": code}).status_code

    statuses = run_in_threads(10, guess)
    assert statuses.count(200) == 4  # wrong, tries left
    assert statuses.count(429) == 6  # the fifth locks; the rest find it locked
    wrong = LogEntry.objects.filter(
        object_id=str(boss.pk), change_message__contains="wrong code"
    )
    assert wrong.count() == 5
    assert client.post(reverse("admin:second_factor"), {"code": right}).status_code == (
        429
    )
    assert client.get(reverse("admin:index")).status_code == 302
