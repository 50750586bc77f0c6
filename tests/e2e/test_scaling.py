"""The read replica for real: the suite's own PostgreSQL cluster, a hot standby of
it (pg_basebackup -R, replaying each commit 20 seconds late on purpose:
recovery_min_apply_delay), and the production processes reading history from it
(wallet_project/db_router.py).

Which server answered is in `X-Database-Served-By` (DATABASE_ROUTING_HEADER, on
only here: the aliases whose connections ran the request's queries), and in the
data itself: only the delayed replica can still miss a transfer that the
primary has.

The tests share one stack in file order; the last one stops the replica.
"""

import subprocess
import sys
import tempfile
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

import pytest

from tests.hostile.services import PostgresCluster, own_postgres, own_redis
from tests.stack import (
    REPO,
    Stack,
    StreamingReplica,
    fresh_database,
    running_stack,
    streaming_replica,
)

pytestmark = pytest.mark.e2e

DELAY_SECONDS = 20
HEADER = "x-database-served-by"


@pytest.fixture(scope="module")
def primary() -> Iterator[PostgresCluster]:
    with own_postgres() as cluster:
        yield cluster


@pytest.fixture(scope="module")
def database_url(primary) -> Iterator[str]:
    with fresh_database(primary.url, prefix="wallet_replica") as url:
        yield url


@pytest.fixture(scope="module")
def replica(primary, database_url) -> Iterator[StreamingReplica]:
    with streaming_replica(primary, apply_delay=f"{DELAY_SECONDS}s") as standby:
        yield standby


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with own_redis() as server:
        yield server.url


def _replica_env(replica: StreamingReplica, database_url: str, **more) -> dict:
    return {
        "DATABASE_REPLICA_URL": replica.url(database_url),
        "DATABASE_ROUTING_HEADER": "true",
        # Reads go to the replica however late it replays: what is tested is
        # the pin (and, in its own test, the lag limit).
        "REPLICA_MAX_LAG_SECONDS": "600",
        "REPLICA_PIN_SECONDS": "601",
        "DATABASE_POOL_MAX": "8",
        **more,
    }


@pytest.fixture(scope="module")
def stack(replica, database_url, redis_url) -> Iterator[Stack]:
    with running_stack(
        database_url=database_url,
        redis_url=redis_url,
        celery=False,
        web_workers=2,
        env=_replica_env(replica, database_url),
    ) as running:
        yield running


@pytest.fixture(scope="module")
def people(stack, replica, database_url) -> dict[str, dict]:
    """Alice and Bob, each with a KZT wallet holding an opening deposit, already
    replayed by the replica (so the replica knows their wallets)."""
    out = Path(tempfile.mkstemp(prefix="wallet-replica-users-")[1])
    subprocess.run(
        [
            *(sys.executable, "-m", "bench.prepare", "users", "--count", "2"),
            *("--balance", "1000.00", "--out", str(out), "--prefix", uuid.uuid4().hex),
        ],
        cwd=REPO,
        env=stack.env,
        check=True,
        capture_output=True,
    )
    rows = [line.split("\t") for line in out.read_text().splitlines()]
    out.unlink()
    replica.wait_for_replay(database_url, timeout=DELAY_SECONDS * 6)
    return {
        name: {"wallet": wallet, "token": token, "number": number}
        for name, (wallet, token, number) in zip(("alice", "bob"), rows, strict=True)
    }


def _history(stack: Stack, who: dict):
    return stack.request(
        "GET", f"/api/v1/wallets/{who['wallet']}/transactions/", token=who["token"]
    )


def test_a_user_sees_their_own_deposit_at_once_on_a_delayed_replica(stack, people):
    """Alice deposits and transfers to Bob: her history right after shows both
    (she wrote: her reads are on the primary), Bob's history, read by him, comes
    from the replica, which has not replayed the transfer yet; his wallet detail
    (always the primary) has the money."""
    alice, bob = people["alice"], people["bob"]
    deposit = stack.request(
        "POST",
        f"/api/v1/wallets/{alice['wallet']}/operation",
        json_body={"operation_type": "DEPOSIT", "amount": "100.00"},
        token=alice["token"],
    )
    assert deposit.status == 201, deposit.body
    transfer = stack.request(
        "POST",
        "/api/v1/transfers/",
        json_body={
            "from_wallet": alice["wallet"],
            "to_wallet_number": bob["number"],
            "amount": "30.00",
        },
        token=alice["token"],
    )
    assert transfer.status == 201, transfer.body

    mine = _history(stack, alice)
    theirs = _history(stack, bob)
    bob_wallet = stack.request(
        "GET", f"/api/v1/wallets/{bob['wallet']}/", token=bob["token"]
    )

    assert mine.status == 200, mine.body
    assert [row["amount"] for row in mine.json()["results"]] == [
        "-30.00",
        "100.00",
        "1000.00",
    ]
    assert mine.headers[HEADER] == "default"
    assert theirs.status == 200, theirs.body
    assert theirs.headers[HEADER] == "replica"
    assert [row["amount"] for row in theirs.json()["results"]] == ["1000.00"]
    assert bob_wallet.headers[HEADER] == "default"
    assert Decimal(bob_wallet.json()["balance"]) == Decimal("1030.00")


def test_a_replica_further_behind_than_allowed_is_not_read(
    stack, people, replica, database_url, redis_url
):
    """With REPLICA_MAX_LAG_SECONDS below the replica's delay, Bob's history
    comes from the primary (and has the transfer the replica does not)."""
    alice, bob = people["alice"], people["bob"]
    # A commit the replica holds back: from now on it reports a lag of at
    # least the delay until it has replayed it.
    assert (
        stack.request(
            "POST",
            f"/api/v1/wallets/{alice['wallet']}/operation",
            json_body={"operation_type": "DEPOSIT", "amount": "1.00"},
            token=alice["token"],
        ).status
        == 201
    )
    with running_stack(
        database_url=database_url,
        redis_url=redis_url,
        celery=False,
        web_workers=1,
        env=_replica_env(
            replica,
            database_url,
            REPLICA_MAX_LAG_SECONDS="2",
            REPLICA_PIN_SECONDS="3",
            # The same tokens: the first stack's signing keys.
            SECRET_KEY=stack.env["SECRET_KEY"],
            JWT_SIGNING_KEY=stack.env["JWT_SIGNING_KEY"],
        ),
    ) as strict:
        theirs = _history(strict, bob)

    assert theirs.status == 200, theirs.body
    assert theirs.headers[HEADER] == "default"
    assert [row["amount"] for row in theirs.json()["results"]] == [
        "30.00",
        "1000.00",
    ]


def test_the_replica_stopped_under_load_costs_no_5xx(stack, people, replica):
    """Bob's history read by 8 clients while the replica stops (a fast
    shutdown): every answer is a 200; before, the replica answered, after, the
    primary does."""
    bob = people["bob"]
    stopped = threading.Event()
    served: list[tuple[bool, int, str]] = []
    lock = threading.Lock()

    def client(_):
        for _ in range(40):
            after = stopped.is_set()
            response = _history(stack, bob)
            with lock:
                served.append((after, response.status, response.headers.get(HEADER)))
                if len(served) == 80:
                    replica.stop()
                    stopped.set()

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(client, range(8)))

    statuses = Counter(status for _, status, _ in served)
    print(f"history reads around the replica's stop: {statuses}")
    assert set(statuses) == {200}
    # Before (a worker reads the primary until it has first seen the replica's
    # lag, and while the replica stops under requests in flight).
    assert "replica" in {by for after, _, by in served if not after}
    assert {by for after, _, by in served[-40:]} == {"default"}
    assert "replica unreachable" in stack.log(
        "web"
    ) or "read on the replica failed" in (stack.log("web"))
