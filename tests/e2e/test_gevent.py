"""gevent and psycopg 3 cooperate: a query waiting in PostgreSQL does not block its
Gunicorn worker. Uses test-only views (tests/e2e/slow_urls.py), never product URLs."""

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import pytest

from tests.stack import running_stack

pytestmark = pytest.mark.e2e

SLOW_REQUESTS = 50


@pytest.fixture(scope="module")
def one_worker_stack(e2e_database_url, redis_url):
    """ONE gevent worker, with a pool big enough for every slow request at once."""
    with running_stack(
        database_url=e2e_database_url,
        redis_url=redis_url,
        web_workers=1,
        celery=False,
        settings_module="tests.e2e.slow_settings",
        env={"DATABASE_POOL_MIN": "10", "DATABASE_POOL_MAX": str(SLOW_REQUESTS)},
    ) as stack:
        yield stack


def test_slow_queries_do_not_block_a_gevent_worker(one_worker_stack):
    """50 requests that each spend 1 s in `pg_sleep`, all served by one worker
    process: PostgreSQL's own clock shows all 50 sleeping at the same moment, and
    together they take about one second, not fifty."""
    barrier = threading.Barrier(SLOW_REQUESTS)

    def one_client(_):
        barrier.wait(timeout=30)
        return one_worker_stack.request("GET", "/e2e/slow-query/", timeout=120)

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=SLOW_REQUESTS) as pool:
        responses = list(pool.map(one_client, range(SLOW_REQUESTS)))
    elapsed = time.monotonic() - started

    assert [r.status for r in responses] == [200] * SLOW_REQUESTS
    bodies = [r.json() for r in responses]
    assert len({body["pid"] for body in bodies}) == 1  # one worker served them all
    last_start = max(datetime.fromisoformat(b["started"]) for b in bodies)
    first_end = min(datetime.fromisoformat(b["finished"]) for b in bodies)
    assert last_start < first_end  # every sleep overlapped every other
    # Serially this is >= 50 s; cooperatively about 1 s plus connection set-up.
    assert elapsed < SLOW_REQUESTS / 5, f"{elapsed:.1f}s"
    print(f"{SLOW_REQUESTS} x pg_sleep(1) on one gevent worker: {elapsed:.2f}s")


def test_a_bug_is_a_json_500_with_its_traceback_in_the_log_only(one_worker_stack):
    response = one_worker_stack.request(
        "GET", "/e2e/bug/", headers={"X-Request-ID": "e2e-bug-1"}
    )

    assert response.status == 500
    assert response.json() == {
        "detail": "Internal server error.",
        "code": "server_error",
    }
    assert b"Traceback" not in response.body
    assert b"deliberate" not in response.body
    records = [
        json.loads(line)
        for line in one_worker_stack.log("web").splitlines()
        if line.startswith("{") and '"e2e-bug-1"' in line
    ]
    errors = [r for r in records if r["level"] == "ERROR"]
    assert errors
    assert "RuntimeError: e2e: a deliberate bug" in errors[0]["exc_info"]
    assert errors[0]["request_id"] == "e2e-bug-1"
    access = [r for r in records if r["logger"] == "wallet.access"]
    assert [(r["path"], r["status"]) for r in access] == [("/e2e/bug/", 500)]


def test_a_worker_whose_psycopg_would_block_refuses_to_serve(
    e2e_database_url, redis_url
):
    """gunicorn.conf.py's guard: if psycopg picked its blocking C wait (imported
    before gevent patched, forced here), the worker stops Gunicorn at boot instead
    of serving one query at a time."""
    with pytest.raises(RuntimeError, match="web exited with 4") as failure:
        with running_stack(
            database_url=e2e_database_url,
            redis_url=redis_url,
            web_workers=1,
            celery=False,
            env={"PSYCOPG_WAIT_FUNC": "wait_c"},
            startup_timeout=30,
        ):
            pass
    assert "its queries would block the worker" in str(failure.value)
