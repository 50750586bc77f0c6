"""The client's address survives a TLS terminator in front of Nginx: two proxies,
on loopback. A tiny Python proxy plays the terminator (it appends the address that
connected to X-Forwarded-For, as load balancers do, and connects to Nginx from
127.0.0.5, the one address Nginx trusts); clients connect from addresses of their
own in 127.0.0.0/8. Nginx's limit_req key (`$binary_remote_addr`, shown by its
access log's remote_addr) and Django's throttles must see each client; an
X-Forwarded-For sent by anyone else is not believed."""

import contextlib
import http.client
import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest

from tests.stack import HttpResponse, Stack, running_stack

pytestmark = pytest.mark.e2e

TERMINATOR_ADDRESS = "127.0.0.5"
TOKEN_URL = "/api/v1/auth/token/"
TOKENS_PER_CLIENT = 3  # THROTTLE_TOKEN_IP of this module's stack, per day
# Every request must be answered, never shed: this is about who is counted, not
# about load (the web process's own pool timeout is 2 s; this machine is shared).
STACK_ENV = {
    "THROTTLE_TOKEN_IP": f"{TOKENS_PER_CLIENT}/day",
    "DATABASE_POOL_TIMEOUT": "30",
}


class _Terminator(BaseHTTPRequestHandler):
    """Forwards each request to Nginx from TERMINATOR_ADDRESS, with the client's
    address appended to X-Forwarded-For and X-Forwarded-Proto: https."""

    upstream: tuple[str, int]
    protocol_version = "HTTP/1.1"

    def _forward(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {
            name: value
            for name, value in self.headers.items()
            if name.lower() not in {"connection", "x-forwarded-proto"}
        }
        forwarded = self.headers.get("X-Forwarded-For")
        client = self.client_address[0]
        headers["X-Forwarded-For"] = f"{forwarded}, {client}" if forwarded else client
        headers["X-Forwarded-Proto"] = "https"
        conn = http.client.HTTPConnection(
            *self.upstream, timeout=60, source_address=(TERMINATOR_ADDRESS, 0)
        )
        try:
            conn.request(self.command, self.path, body=body, headers=headers)
            response = conn.getresponse()
            payload = response.read()
            self.send_response(response.status)
            for name, value in response.getheaders():
                if name.lower() not in {"connection", "transfer-encoding"}:
                    self.send_header(name, value)
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(payload)
        finally:
            conn.close()

    do_GET = do_POST = _forward

    def log_message(self, format, *args):
        pass


@pytest.fixture(scope="module")
def stack(e2e_database_url, redis_url) -> Iterator[Stack]:
    with running_stack(
        database_url=e2e_database_url,
        redis_url=redis_url,
        celery=False,
        web_workers=1,
        trusted_proxies=TERMINATOR_ADDRESS,
        env=STACK_ENV,
    ) as running:
        yield running


@contextlib.contextmanager
def _terminator_for(stack: Stack) -> Iterator[str]:
    """A terminator in front of `stack`'s Nginx; its URL (plain HTTP here: what
    matters is the header it adds, not the TLS it would remove)."""
    nginx = urlsplit(stack.url)
    handler = type(
        "Terminator", (_Terminator,), {"upstream": (nginx.hostname, nginx.port)}
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def terminator(stack) -> Iterator[str]:
    with _terminator_for(stack) as url:
        yield url


def _token_request(url: str, *, source: str, headers: dict | None = None):
    """A failed login (an unknown email: never the per-account limit) sent to `url`
    from the address `source`; the response."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(
        parts.hostname, parts.port, timeout=60, source_address=(source, 0)
    )
    body = json.dumps(
        {"email": f"nobody-{uuid.uuid4().hex[:12]}@example.com", "password": "x" * 12}
    )
    try:
        conn.request(
            "POST",
            TOKEN_URL,
            body=body,
            headers={"Content-Type": "application/json", **(headers or {})},
        )
        response = conn.getresponse()
        return HttpResponse(
            status=response.status,
            headers={k.lower(): v for k, v in response.getheaders()},
            body=response.read(),
        )
    finally:
        conn.close()


def _nginx_clients(stack: Stack) -> list[str]:
    """remote_addr of each token request in Nginx's access log, in order."""
    addresses = []
    for line in stack.log("nginx-access").splitlines():
        entry = json.loads(line)
        if entry["uri"] == TOKEN_URL:
            addresses.append(entry["remote_addr"])
    return addresses


def _nginx_clients_since(stack: Stack, before: int, count: int) -> list[str]:
    """The `count` token requests logged after the first `before`. Nginx writes
    a request's line after sending its response, so the last one can trail the
    answer a client already has: wait for it (at most 10 s)."""
    deadline = time.monotonic() + 10
    while len(seen := _nginx_clients(stack)[before:]) < count:
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    return seen


def _outcome(response: HttpResponse) -> int | str:
    """The status, or for an unexpected one the body too (a failure says why)."""
    if response.status in (401, 429):
        return response.status
    return f"{response.status}: {response.body[:300]!r}"


def _statuses(url: str, source: str, count: int, **options) -> list[int | str]:
    return [
        _outcome(_token_request(url, source=source, **options)) for _ in range(count)
    ]


def test_two_clients_behind_the_terminator_have_separate_buckets(stack, terminator):
    """Client A spends its logins and is throttled; client B, through the same
    terminator, is not: Nginx and Django both see two clients, not one proxy."""
    log_before = len(_nginx_clients(stack))

    assert _statuses(terminator, "127.0.0.2", TOKENS_PER_CLIENT) == [401] * 3
    refused = _token_request(terminator, source="127.0.0.2")
    assert _outcome(refused) == 429
    assert refused.json()["code"] == "throttled"
    assert _outcome(_token_request(terminator, source="127.0.0.3")) == 401

    expected = ["127.0.0.2"] * (TOKENS_PER_CLIENT + 1) + ["127.0.0.3"]
    assert _nginx_clients_since(stack, log_before, len(expected)) == expected


def test_a_forged_x_forwarded_for_is_not_believed(stack, terminator):
    """A client that names another address in its own X-Forwarded-For (through the
    terminator, or straight to Nginx, which does not trust it) is still counted
    as itself: a new forged address per request does not dodge the limit, and a
    victim's address does not spend the victim's bucket."""
    log_before = len(_nginx_clients(stack))
    victim = "127.0.0.7"

    def forged(n: int) -> dict:
        return {"X-Forwarded-For": f"{victim}, 198.51.100.{n}"}

    via_terminator = [
        _outcome(_token_request(terminator, source="127.0.0.4", headers=forged(n)))
        for n in range(TOKENS_PER_CLIENT + 1)
    ]
    assert via_terminator == [401] * TOKENS_PER_CLIENT + [429]

    # Straight to Nginx, past the terminator: its X-Forwarded-For is ignored.
    direct = [
        _outcome(_token_request(stack.url, source="127.0.0.6", headers=forged(n)))
        for n in range(TOKENS_PER_CLIENT + 1)
    ]
    assert direct == [401] * TOKENS_PER_CLIENT + [429]

    assert _outcome(_token_request(terminator, source=victim)) == 401
    expected = (
        ["127.0.0.4"] * (TOKENS_PER_CLIENT + 1)
        + ["127.0.0.6"] * (TOKENS_PER_CLIENT + 1)
        + [victim]
    )
    assert _nginx_clients_since(stack, log_before, len(expected)) == expected


def test_without_trusted_proxies_every_client_is_the_terminator(
    e2e_database_url, redis_url
):
    """The control: the same two clients through the same terminator, with
    TRUSTED_PROXIES empty (Compose's default), share the terminator's one bucket."""
    with (
        running_stack(
            database_url=e2e_database_url,
            redis_url=redis_url,
            celery=False,
            web_workers=1,
            env=STACK_ENV,
        ) as untrusting,
        _terminator_for(untrusting) as url,
    ):
        assert _statuses(url, "127.0.0.2", TOKENS_PER_CLIENT) == [401] * 3
        assert _outcome(_token_request(url, source="127.0.0.3")) == 429
        seen = _nginx_clients_since(untrusting, 0, TOKENS_PER_CLIENT + 1)
        assert seen == [TERMINATOR_ADDRESS] * (TOKENS_PER_CLIENT + 1)
