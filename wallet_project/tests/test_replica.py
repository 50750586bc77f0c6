"""The router's rules that need no replica running (tests/e2e/test_scaling.py
runs a real one): where reads and writes go, and the read-your-writes pin in the
real cache (Redis)."""

import uuid
from types import SimpleNamespace

import pytest
from django.http import HttpResponse
from django.test import RequestFactory

from wallet_project import replica
from wallet_project.db_router import PrimaryReplicaRouter, read_alias, reading_from
from wallet_project.replica import ReplicaPinMiddleware, pin_to_primary, replica_alias
from wallets.models import Wallet

# Only `"replica" in settings.DATABASES` is read here; no connection is made.
pytestmark = pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")


def _request(method: str, user_id=None):
    request = getattr(RequestFactory(), method.lower())("/api/v1/transactions/")
    if user_id is not None:
        request.user = SimpleNamespace(is_authenticated=True, pk=user_id)
    return request


@pytest.fixture
def with_replica(settings):
    """A replica alias in the settings (never connected to by these tests)."""
    settings.DATABASES = {
        **settings.DATABASES,
        "replica": settings.DATABASES["default"],
    }


def test_writes_and_migrations_stay_on_the_primary():
    router = PrimaryReplicaRouter()

    assert router.db_for_write(Wallet) == "default"
    assert router.allow_migrate("replica", "wallets") is False
    assert router.allow_migrate("default", "wallets") is True


def test_reads_follow_the_handler_and_default_to_the_primary():
    router = PrimaryReplicaRouter()

    assert router.db_for_read(Wallet) is None  # Django's default: the primary
    assert read_alias() == "default"
    with reading_from("replica"):
        assert router.db_for_read(Wallet) == "replica"
        assert read_alias() == "replica"
    assert read_alias() == "default"


def test_without_a_replica_every_read_is_on_the_primary():
    assert replica_alias(_request("GET", uuid.uuid4())) == "default"


@pytest.mark.usefixtures("with_replica")
def test_a_write_pins_its_user_to_the_primary_and_a_read_does_not():
    reader, writer = uuid.uuid4(), uuid.uuid4()
    middleware = ReplicaPinMiddleware(lambda request: HttpResponse(status=201))

    middleware(_request("GET", reader))
    middleware(_request("POST", writer))

    assert replica._pinned(writer)
    assert not replica._pinned(reader)
    # Pinned: the primary, before the replica is even asked for its lag.
    assert replica_alias(_request("GET", writer)) == "default"
    assert replica_alias(_request("POST", reader)) == "default"  # never unsafe


@pytest.mark.usefixtures("with_replica")
def test_a_pin_lasts_replica_pin_seconds(settings):
    settings.REPLICA_PIN_SECONDS = 1
    user = uuid.uuid4()
    pin_to_primary(user)

    from django.core.cache import cache

    ttl = cache._cache.get_client(write=False).ttl(
        cache.make_key(replica._pin_key(user))
    )
    assert 0 < ttl <= 1
