"""The whole end-to-end flow of test_stack.py again, through PgBouncer in
transaction pooling mode (Debian's 1.18, which does not track prepared
statements): every process of the stack connects to PgBouncer with
DATABASE_POOLER=pgbouncer, and PgBouncer holds at most POOL_SIZE connections to
PostgreSQL. Only the `stack` fixture differs; the tests are test_stack.py's own.
"""

import subprocess
import sys
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from tests.e2e import test_stack as flow
from tests.e2e.test_stack import *  # noqa: F403 - every test of the flow, again
from tests.stack import REPO, PgBouncer, Stack, pgbouncer, running_stack

del test_the_stack_stops_cleanly  # noqa: F821 - bound again last: it stops the stack

pytestmark = pytest.mark.e2e

POOL_SIZE = 10


@pytest.fixture(scope="module")
def bouncer(e2e_database_url) -> Iterator[PgBouncer]:
    with pgbouncer(e2e_database_url, pool_size=POOL_SIZE) as running:
        yield running


@pytest.fixture(scope="module")
def stack(e2e_database_url, bouncer, redis_url, smtp) -> Iterator[Stack]:
    """test_stack.py's stack (two web workers with pools of 8, a worker, beat),
    every connection through PgBouncer."""
    with running_stack(
        database_url=bouncer.url(e2e_database_url),
        redis_url=redis_url,
        email_url=smtp.url,
        web_workers=2,
        env={"DATABASE_POOL_MAX": "8", "DATABASE_POOLER": "pgbouncer"},
    ) as running:
        yield running


def test_server_connections_stay_at_the_pool_size_under_256_clients(
    stack, smtp, e2e_database_url
):
    """256 clients at once, as many greenlets holding pooled connections to
    PgBouncer: PostgreSQL never sees more than PgBouncer's pool, sampled
    throughout, and every answer is a 200 (or a deliberate 503)."""
    # A user of its own without signing up (the sign-up throttle is spent).
    out = stack.workdir / "pool-user.tsv"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.prepare",
            "users",
            "--count",
            "1",
            "--out",
            str(out),
            "--prefix",
            f"pool-{uuid.uuid4().hex[:8]}",
        ],
        cwd=REPO,
        env=stack.env,
        check=True,
        capture_output=True,
    )
    token = out.read_text().split("\t")[1]
    dbname = e2e_database_url.rsplit("/", 1)[1]
    done = threading.Event()
    samples: list[int] = []

    def sample() -> None:
        admin = e2e_database_url.rsplit("/", 1)[0] + "/postgres"
        with psycopg.connect(admin, autocommit=True) as conn:
            while not done.is_set():
                (backends,) = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = %s",
                    [dbname],
                ).fetchone()
                samples.append(backends)
                done.wait(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()
    clients = 256
    barrier = threading.Barrier(clients)

    def one_client(_):
        barrier.wait(timeout=30)
        return [
            stack.request("GET", "/api/v1/wallets/", token=token, timeout=60)
            for _ in range(4)
        ]

    try:
        with ThreadPoolExecutor(max_workers=clients) as pool:
            responses = [r for rs in pool.map(one_client, range(clients)) for r in rs]
    finally:
        done.set()
        sampler.join()

    statuses = Counter(r.status for r in responses)
    print(f"{statuses}; server connections sampled: max {max(samples)}")
    assert set(statuses) <= {200, 503}, statuses
    assert statuses[200] >= len(responses) * 0.9
    assert samples and max(samples) <= POOL_SIZE


test_the_stack_stops_cleanly = flow.test_the_stack_stops_cleanly
