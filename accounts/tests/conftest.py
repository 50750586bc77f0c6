"""Fixtures for the accounts tests: emails go to Django's locmem outbox
(`mailoutbox`) through the real Celery task, run eagerly in-process."""

import re
from collections.abc import Callable, Iterator

import pytest
from django.core import mail
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import RefreshToken

from accounts.models import User
from wallet_project.celery import app as celery_app

CODE_RE = re.compile(r"\b(\d{6})\b")


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings) -> None:
    """Logins are what these tests repeat most; PBKDF2 would make them crawl.
    (Hashes made with the default hasher still verify.)"""
    settings.PASSWORD_HASHERS = [
        "django.contrib.auth.hashers.MD5PasswordHasher",
        *settings.PASSWORD_HASHERS,
    ]


@pytest.fixture
def celery_eager() -> Iterator[None]:
    """Tasks run in-process (the broker is not mocked: it is not used at all)."""
    saved = celery_app.conf.task_always_eager, celery_app.conf.task_eager_propagates
    celery_app.conf.task_always_eager = True
    celery_app.conf.task_eager_propagates = True
    yield
    celery_app.conf.task_always_eager, celery_app.conf.task_eager_propagates = saved


class CommittingClient(APIClient):
    """Runs the on-commit callbacks of each request when it returns, as
    production does when the request's transaction commits (a test's transaction
    never commits)."""

    capture: Callable

    def request(self, **kwargs):
        with self.capture(execute=True):
            return super().request(**kwargs)


@pytest.fixture
def make_client(
    db, celery_eager, django_capture_on_commit_callbacks
) -> Callable[..., APIClient]:
    def make(user: User | None = None, **defaults) -> APIClient:
        client = CommittingClient(**defaults)
        client.capture = django_capture_on_commit_callbacks
        if user is not None:
            access = RefreshToken.for_user(user).access_token
            client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
        return client

    return make


@pytest.fixture
def api(make_client) -> APIClient:
    return make_client()


@pytest.fixture
def auth_api(make_client, user) -> APIClient:
    return make_client(user)


def code_in(message: mail.EmailMessage) -> str:
    """The 6-digit code in an email's plain-text body."""
    codes = CODE_RE.findall(message.body)
    assert len(codes) == 1, message.body
    return codes[0]


def last_code() -> str:
    assert mail.outbox, "no email was sent"
    return code_in(mail.outbox[-1])


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"
