"""Sentry (SENTRY_DSN): an exception in a view reaches the Sentry server, here a
receiver on loopback, without personal data: no email, no Authorization header,
no request body."""

import gzip
import json
import os
import threading
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.stack import fresh_database, running_stack

pytestmark = pytest.mark.e2e

EMAIL = "sentry-owner@example.com"
PASSWORD = "e2e-Correct-Horse-9"
BODY_EMAIL = "leak-in-body@example.com"


class Receiver(ThreadingHTTPServer):
    """Sentry's envelope endpoint, keeping every envelope it gets."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.envelopes: list[str] = []
        self.arrived = threading.Event()

    @property
    def dsn(self) -> str:
        return f"http://publickey@127.0.0.1:{self.server_address[1]}/1"


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self):  # http.server calls it by this name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        encoding = self.headers.get("Content-Encoding", "")
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "deflate":
            body = zlib.decompress(body)
        elif encoding == "br":
            import brotli

            body = brotli.decompress(body)
        text = body.decode()
        self.server.envelopes.append(text)
        if any(
            json.loads(line).get("type") == "event"
            for line in text.splitlines()
            if line.startswith("{") and '"type"' in line
        ):
            self.server.arrived.set()
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def test_an_exception_in_a_view_reaches_sentry_without_personal_data(receiver):
    with fresh_database(os.environ["DATABASE_URL"], prefix="wallet_sentry") as url:
        with running_stack(
            database_url=url,
            redis_url=os.environ["REDIS_URL"],
            web_workers=1,
            celery=False,
            settings_module="tests.e2e.slow_settings",
            env={"SENTRY_DSN": receiver.dsn, "DATABASE_POOL_MAX": "4"},
        ) as stack:
            stack.manage(
                "shell",
                "-c",
                "from accounts.models import User; "
                f"User.objects.create_user(email={EMAIL!r}, password={PASSWORD!r})",
            )
            login = stack.request(
                "POST",
                "/api/v1/auth/token/",
                json_body={"email": EMAIL, "password": PASSWORD},
            )
            assert login.status == 200, login.body
            token = login.json()["access"]
            answer = stack.request(
                "POST",
                "/e2e/api-bug/",
                json_body={"email": BODY_EMAIL, "password": "hunter2-secret"},
                token=token,
                headers={"Cookie": "sessionid=cookie-secret"},
            )
            assert answer.status == 500
            assert answer.json()["code"] == "server_error"
            assert receiver.arrived.wait(timeout=30), stack.log("web")[-3000:]
    payload = "\n".join(receiver.envelopes)
    assert "e2e: a deliberate API bug (2 fields)" in payload
    assert "RuntimeError" in payload
    assert "/e2e/api-bug/" in payload
    for secret in (EMAIL, BODY_EMAIL, "hunter2-secret", token, "cookie-secret"):
        assert secret not in payload, secret
    (event,) = [
        json.loads(line)
        for envelope in receiver.envelopes
        for line in envelope.splitlines()[2::2]  # header, then (item header, item)*
        if '"exception"' in line
    ]
    request = event["request"]
    assert not {"authorization", "cookie"} & {h.lower() for h in request["headers"]}
    assert "data" not in request and "cookies" not in request
    assert set(event.get("user", {})) <= {"id"}
