"""What the webhook tests share: a real HTTP receiver on loopback, and helpers
to write events and run the dispatcher the way the worker does."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.db import connection

from transactions import webhooks
from transactions.models import WebhookDelivery, WebhookEndpoint
from wallet_project.celery import app as celery_app


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    peer: tuple = ()  # the sender's (address, port): one per TCP connection


@dataclass
class Receiver:
    """A webhook receiver on 127.0.0.1 answering each POST with the next of
    `statuses` (the last one repeats). `hold` makes it wait (for the test to
    set it) before answering: a receiver slower than the timeout."""

    statuses: list[int] = field(default_factory=lambda: [200])
    location: str = ""
    hold: threading.Event | None = None
    received: list[Received] = field(default_factory=list)
    arrived: threading.Event = field(default_factory=threading.Event)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/hook"

    def answer(self) -> int:
        index = min(len(self.received) - 1, len(self.statuses) - 1)
        return self.statuses[index]

    @property
    def event_ids(self) -> list[str]:
        return [r.headers["Wallet-Event-Id"] for r in self.received]


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        # Keeps a connection alive between requests, as most receivers do.
        protocol_version = "HTTP/1.1"
        # Headers and body go out in two writes: without this the body waits
        # for the sender's delayed ACK of the headers (40 ms a request).
        disable_nagle_algorithm = True

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            receiver.received.append(
                Received(
                    self.path, dict(self.headers.items()), body, self.client_address
                )
            )
            receiver.arrived.set()
            if receiver.hold is not None:
                receiver.hold.wait(10)
            status = receiver.answer()
            payload = f"answer {status}".encode()
            try:
                self.send_response(status)
                if receiver.location:
                    self.send_header("Location", receiver.location)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except OSError:  # the sender gave up (timeout) and closed
                pass

        def log_message(self, format, *args) -> None:
            pass

    return Handler


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = True
    state.server = server
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    if state.hold is not None:
        state.hold.set()
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture
def allow_private(settings) -> None:
    """The receivers of these tests listen on loopback."""
    settings.WEBHOOKS_ALLOW_PRIVATE_NETWORKS = True


@pytest.fixture
def celery_eager() -> Iterator[None]:
    """Tasks run in-process (the broker is not mocked: it is not used at all)."""
    saved = celery_app.conf.task_always_eager, celery_app.conf.task_eager_propagates
    celery_app.conf.task_always_eager = True
    celery_app.conf.task_eager_propagates = True
    yield
    celery_app.conf.task_always_eager, celery_app.conf.task_eager_propagates = saved


def endpoint_for(user, url: str, event_types=("*",)) -> WebhookEndpoint:
    return webhooks.endpoint_create(user=user, url=url, event_types=list(event_types))


def deliveries_of(endpoint: WebhookEndpoint) -> list[WebhookDelivery]:
    return list(
        WebhookDelivery.objects.filter(endpoint=endpoint)
        .select_related("event")
        .order_by("id")
    )


def wait_events_visible(timeout: float = 60.0) -> None:
    """Until every event written so far is visible to readers (EVENTS_VISIBLE_SQL).

    Visibility waits for every transaction older than the event's, in the
    whole PostgreSQL cluster: on a server shared with other test runs their
    open transactions hold it back for a while. There is nothing to wait on
    but the snapshot, hence a short poll (at once on a server of our own)."""
    deadline = time.monotonic() + timeout
    with connection.cursor() as cursor:
        while True:
            cursor.execute(
                "SELECT coalesce(max(txid), 0) < "
                "pg_snapshot_xmin(pg_current_snapshot())::text::bigint "
                "FROM transactions_event"
            )
            if cursor.fetchone()[0]:
                return
            if time.monotonic() > deadline:
                raise AssertionError("events still invisible: a transaction is open")
            time.sleep(0.05)
