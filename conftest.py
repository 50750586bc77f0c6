"""Shared fixtures. The suite runs against a real PostgreSQL and Redis (see the
Makefile's TEST_DATABASE_URL / TEST_REDIS_URL); it never falls back to SQLite."""

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import psycopg
import pytest
import redis
from django.conf import settings
from django.db import connection
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import RefreshToken

from accounts.models import User
from accounts.tests.factories import UserFactory
from transactions import ledger
from wallets.models import Wallet
from wallets.services import system_wallets_ensure, wallet_create


def pytest_sessionstart(session):
    db = settings.DATABASES["default"]
    if db["ENGINE"] != "django.db.backends.postgresql":
        pytest.exit(
            "The test suite needs PostgreSQL: run `make test` or set "
            "DATABASE_URL=postgres://USER@HOST:PORT/DB",
            returncode=2,
        )
    try:
        psycopg.connect(
            host=db["HOST"] or None,
            port=db["PORT"] or None,
            user=db["USER"] or None,
            password=db["PASSWORD"] or None,
            dbname="postgres",
            connect_timeout=3,
        ).close()
    except psycopg.Error:
        pytest.exit(
            f"PostgreSQL is unreachable at {db['HOST']}:{db['PORT']}: start it or point "
            "the tests at one with `make test TEST_DATABASE_URL=postgres://USER@HOST:PORT/DB`",
            returncode=2,
        )
    try:
        redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=3).ping()
    except (redis.RedisError, ValueError):
        pytest.exit(
            f"Redis is unreachable at {settings.REDIS_URL or '(REDIS_URL unset)'}: start "
            "it or run `make test TEST_REDIS_URL=redis://HOST:PORT/DB`",
            returncode=2,
        )


_DB_FIXTURES = ("db", "transactional_db", "django_db_reset_sequences", "live_server")


@pytest.fixture(autouse=True)
def _system_wallets(request):
    """Every test that uses the database starts with the system wallets, none of
    them cached from before.

    A transaction=True test ends with a flush of every table, system wallets
    included (pytest-django runs Django's TransactionTestCase teardown); the
    flush sends post_migrate, whose handler (wallets.apps) creates them again,
    unless the test sets available_apps or serialized_rollback. So this fixture
    makes sure of them (one query when they are there), and forgets the
    per-process cache, whose rows the flush replaced."""
    from wallets import selectors

    selectors._system_wallets.clear()
    if request.node.get_closest_marker("django_db") or any(
        name in request.fixturenames for name in _DB_FIXTURES
    ):
        request.getfixturevalue("db")  # transactional_db too, when it is asked for
        system_wallets_ensure(currencies=settings.WALLET_CURRENCIES)


def _clean_cache_and_queues() -> None:
    from django.core.cache import cache

    from wallet_project.celery import app as celery_app

    cache.clear()
    # Tasks the code under test queued (no worker runs here): the cache has a
    # Redis database of its own, so its FLUSHDB no longer empties the queues.
    celery_app.control.purge()


@pytest.fixture(autouse=True)
def _clean_cache():
    """Throttle counters, other cache entries and queued tasks never leak between
    tests."""
    _clean_cache_and_queues()
    yield
    _clean_cache_and_queues()


@pytest.fixture
def user(db) -> User:
    return UserFactory()


@pytest.fixture
def other_user(db) -> User:
    return UserFactory()


def run_in_threads(count: int, work: Callable[[int], object]) -> list:
    """Run work(i) for i in range(count) on `count` threads released together,
    each with its own database connection (closed when it is done)."""
    barrier = threading.Barrier(count)

    def runner(i: int):
        try:
            barrier.wait()
            return work(i)
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(runner, range(count)))


def client_for(user: User) -> APIClient:
    client = APIClient()
    client.credentials(
        HTTP_AUTHORIZATION=f"Bearer {RefreshToken.for_user(user).access_token}"
    )
    return client


@pytest.fixture
def api() -> APIClient:
    return APIClient()


@pytest.fixture
def client_of() -> Callable[[User], APIClient]:
    return client_for


@pytest.fixture
def auth_api(user) -> APIClient:
    return client_for(user)


@pytest.fixture
def make_wallet(db) -> Callable[..., Wallet]:
    def make(
        owner: User | None = None, currency: str = "KZT", balance: str = "0"
    ) -> Wallet:
        wallet = wallet_create(owner=owner or UserFactory(), currency=currency)
        if Decimal(balance):
            ledger.wallet_deposit(wallet=wallet, amount=Decimal(balance))
            wallet.refresh_from_db()
        return wallet

    return make


@pytest.fixture
def wallet(user, make_wallet) -> Wallet:
    return make_wallet(owner=user, currency="KZT", balance="1000.00")


# Rates the `rates` fixture stores (1 base = rate quote), fresh as of now.
TEST_RATES = {
    ("USD", "KZT"): Decimal("500"),
    ("KZT", "USD"): Decimal("0.002"),
    ("EUR", "KZT"): Decimal("550"),
    ("KZT", "EUR"): Decimal("0.0018181818"),
    ("USD", "EUR"): Decimal("0.9"),
    ("EUR", "USD"): Decimal("1.1111111111"),
}


@pytest.fixture
def rates(db) -> dict[tuple[str, str], Decimal]:
    """Fresh exchange rates between KZT, USD and EUR (see TEST_RATES)."""
    from wallets.services import exchange_rates_store

    for base in ("KZT", "USD", "EUR"):
        exchange_rates_store(
            base=base,
            rates={q: r for (b, q), r in TEST_RATES.items() if b == base},
            source="test",
        )
    return dict(TEST_RATES)


# --- Top-ups: the payment provider's service account ------------------------------------


@pytest.fixture
def service_account(db) -> User:
    return UserFactory(email="provider@example.com", is_service=True)


@pytest.fixture
def service_api(service_account) -> APIClient:
    return client_for(service_account)
