"""Run the production processes for real, on loopback, without Docker.

Nginx (Debian's /usr/sbin/nginx with the project's nginx/nginx.conf.template),
Gunicorn with gevent workers (gunicorn.conf.py), a Celery worker and Celery beat,
against a PostgreSQL database and a Redis you name. For end-to-end tests, the
hostile suite and benchmarks:

    from tests.stack import fresh_database, running_stack, smtp_sink

    with fresh_database("postgres://postgres@127.0.0.1:5432/wallet") as db_url, \\
            smtp_sink() as smtp, \\
            running_stack(database_url=db_url, redis_url="redis://127.0.0.1:6379/6",
                          email_url=smtp.url) as stack:
        urllib.request.urlopen(stack.url + "/readyz")   # through Nginx
        stack.manage("createsuperuser", "--noinput", env={...})
        smtp.wait_for(to="a@example.com")

API (everything else here is an implementation detail):
- `fresh_database(base_url, *, prefix="wallet_e2e")`: creates `<prefix>_<random>`
  on the server of `base_url`, migrates it, yields its URL, drops it afterwards.
- `running_stack(**options)` / `Stack.start(**options)` + `stack.stop()`; options:
  `database_url`, `redis_url` (required); `email_url` (default: console);
  `web_workers` (2); `celery` (True: start worker and beat); `settings_module`;
  `env` (extra environment for every process, e.g. `{"DATABASE_POOL_MAX": "8"}`);
  `trusted_proxies` (Nginx's TRUSTED_PROXIES: whose X-Forwarded-For it believes;
  default none); `web_nodes` (1: Gunicorn masters behind Nginx's upstream, logs
  `web`, `web-2`...); `startup_timeout` (60 s).
- `Stack`: `url` (Nginx, the way in), `web_url` (Gunicorn direct: only to prove a
  point), `env`, `workdir`, `static_root`, `media_root`, `request(method, path,
  json_body=, token=, headers=)` (through Nginx, returns `HttpResponse` with
  `status`, `headers`, `body`, `json()`), `log(name)` for
  `web|worker|beat|nginx|nginx-access|nginx-error` and `manage(*args)`. `stop()` stops
  everything (graceful, then SIGKILL after a grace period) and returns the exit
  codes; `leftovers()` lists any process of the stack still alive; `kill()`
  sends every one of them SIGKILL at once and `start_again()` starts a new stack
  on the same database, Redis and keys (tokens stay valid), on new ports.
- `smtp_sink()`: an SMTP server on loopback (aiosmtpd); `.url` is an EMAIL_URL,
  `.messages` what arrived, `.wait_for(to=..., timeout=...)` waits for one.
- `webhook_receiver()`: an HTTP server on loopback that keeps every request it
  gets (`.requests`: `ReceivedRequest`s with headers, raw body, arrival time and
  the status answered); `.url`, `.respond` (a callable deciding the status, 200 by
  default; it may block), `.wait_until(predicate, timeout=...)`, `.stop()` and
  `.start()` again on the same port (a receiver that is down for a while). The
  stack's processes run with WEBHOOKS_ALLOW_PRIVATE_NETWORKS=true, so endpoints
  may point at it.
- Scaling out (opt-in): `pgbouncer(upstream_url, pool_size=, databases=)` runs
  Debian's PgBouncer in transaction mode in front of a server (`.url(db_url)`: the
  same database through it); `streaming_replica(primary, apply_delay=)` a hot
  standby of a PostgresCluster of tests/hostile/services.py (pg_basebackup -R),
  `.url(db_url)` the same database on it, `.wait_for_replay(primary_url)`.

Each stack gets its own CACHE_KEY_PREFIX (throttle counters never leak between
runs) and a fresh SECRET_KEY and JWT_SIGNING_KEY. Celery's queue is per Redis
database: run one stack with Celery per Redis database at a time (or its worker may
take another's tasks); the cache is the next database (settings: CACHE_URL), so the
root conftest's cache.clear() (a FLUSHDB) no longer reaches the queue. Processes run in their own process groups, so a
stop reaches Gunicorn's workers and Celery's pool children too.
"""

from __future__ import annotations

import contextlib
import email
import email.message
import http.client
import http.server
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

REPO = Path(__file__).resolve().parent.parent
NGINX_TEMPLATE = REPO / "nginx" / "nginx.conf.template"
NGINX_BINARY = shutil.which("nginx") or "/usr/sbin/nginx"

# The values nginx/nginx.conf is rendered with (Docker Compose: see docker-compose.yml).
COMPOSE_NGINX = {
    "user": "nginx",
    "listen": "8080",
    "upstream": "web:8000",
    # Looked up again as Docker's DNS answers expire (a recreated web container).
    "upstream_resolve": " resolve",
    "static_root": "/var/www/wallet/static",
    "media_root": "/var/www/wallet/media",
    "temp_dir": "/var/cache/nginx",
    "pid_file": "/var/run/nginx.pid",
    "error_log": "/dev/stderr",
    "access_log": "/dev/stdout",
    "proxy_params": "/etc/nginx/wallet/proxy.conf",
    # Docker's embedded DNS: web's address, looked up again as it changes.
    "resolver": "127.0.0.11",
    # Written by nginx/real-ip.sh (/docker-entrypoint.d/) from TRUSTED_PROXIES.
    "real_ip_conf": "/etc/nginx/wallet/real_ip.conf",
}
REAL_IP_SCRIPT = REPO / "nginx" / "real-ip.sh"

_PLACEHOLDER = re.compile(r"\{\{ (\w+) \}\}")


def render_nginx_conf(**values: str) -> str:
    """nginx/nginx.conf.template with every `{{ name }}` replaced (all required)."""
    template = NGINX_TEMPLATE.read_text()
    names = set(_PLACEHOLDER.findall(template))
    if missing := names - values.keys():
        raise KeyError(f"nginx template needs {sorted(missing)}")
    if unknown := values.keys() - names:
        raise KeyError(f"nginx template has no {sorted(unknown)}")
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def write_real_ip_conf(path: Path, trusted_proxies: str) -> None:
    """nginx/real-ip.sh's output for `trusted_proxies` (as Compose's Nginx gets it)."""
    subprocess.run(
        ["sh", str(REAL_IP_SCRIPT)],
        env={
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "TRUSTED_PROXIES": trusted_proxies,
            "WALLET_REAL_IP_CONF": str(path),
        },
        check=True,
        capture_output=True,
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- Databases ------------------------------------------------------------------------


def _with_dbname(url: str, dbname: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{dbname}"))


def _admin_connection(url: str):
    import psycopg

    return psycopg.connect(_with_dbname(url, "postgres"), autocommit=True)


def create_database(base_url: str, *, prefix: str = "wallet_e2e") -> str:
    """Create an empty `<prefix>_<random>` next to `base_url`'s database; its URL."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    with _admin_connection(base_url) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return _with_dbname(base_url, name)


def drop_database(url: str) -> None:
    name = urlsplit(url).path.lstrip("/")
    with _admin_connection(url) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def manage(*args: str, env: dict[str, str], timeout: float = 300) -> str:
    """Run `manage.py <args>` with exactly `env` (plus PATH); its output, or raise."""
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"manage.py {' '.join(args)} failed ({result.returncode}):\n"
            f"{result.stdout}\n{result.stderr}"
        )
    return result.stdout


def _base_env(database_url: str, redis_url: str = "") -> dict[str, str]:
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "VIRTUAL_ENV")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env.update(
        DJANGO_SETTINGS_MODULE="wallet_project.settings",
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        SECRET_KEY=secrets.token_urlsafe(50),
        JWT_SIGNING_KEY=secrets.token_urlsafe(50),
        DEBUG="false",
        ALLOWED_HOSTS="127.0.0.1,localhost",
        EMAIL_URL="consolemail://",
        PYTHONUNBUFFERED="1",
        PYTHONDONTWRITEBYTECODE="1",
    )
    return env


@contextlib.contextmanager
def fresh_database(base_url: str, *, prefix: str = "wallet_e2e") -> Iterator[str]:
    """A new, migrated database on `base_url`'s server; dropped on exit."""
    url = create_database(base_url, prefix=prefix)
    try:
        manage("migrate", "--noinput", env=_base_env(url))
        yield url
    finally:
        drop_database(url)


# --- SMTP -----------------------------------------------------------------------------


class SmtpSink:
    """An SMTP server on 127.0.0.1 that keeps what it receives (aiosmtpd)."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self.messages: list[email.message.Message] = []
        self._arrived = threading.Condition()
        self.port = free_port()
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    async def handle_DATA(self, server, session, envelope):  # aiosmtpd's hook name
        message = email.message_from_bytes(envelope.content)
        message["X-Envelope-To"] = ", ".join(envelope.rcpt_tos)
        with self._arrived:
            self.messages.append(message)
            self._arrived.notify_all()
        return "250 OK"

    def wait_for(self, *, to: str, timeout: float = 30) -> email.message.Message:
        """The first message to `to`; raise TimeoutError if none arrives in time."""

        def find():
            return next((m for m in self.messages if to in m["X-Envelope-To"]), None)

        with self._arrived:
            if not self._arrived.wait_for(find, timeout=timeout):
                raise TimeoutError(f"no email to {to} within {timeout}s")
            return find()

    def start(self) -> SmtpSink:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()


@contextlib.contextmanager
def smtp_sink() -> Iterator[SmtpSink]:
    sink = SmtpSink().start()
    try:
        yield sink
    finally:
        sink.stop()


def message_text(message: email.message.Message) -> str:
    """The text/plain body of an email (the first text part of a multipart one)."""
    part = next(
        (p for p in message.walk() if p.get_content_type() == "text/plain"), message
    )
    payload = part.get_payload(decode=True)
    return payload.decode(part.get_content_charset() or "utf-8") if payload else ""


# --- Webhook receiver -----------------------------------------------------------------


@dataclass
class ReceivedRequest:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes  # exactly as received (what a signature covers)
    arrived_at: float  # time.time()
    status: int = 0  # what the receiver answered (0: no answer, e.g. it was cut off)

    def json(self):
        return json.loads(self.body)


class WebhookReceiver:
    """An HTTP server on 127.0.0.1 that keeps every request (a thread each)."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.requests: list[ReceivedRequest] = []
        # `respond(request) -> status`: called in the request's thread, may block.
        self.respond: Callable[[ReceivedRequest], int] = lambda request: 200
        self._arrived = threading.Condition()
        self._server: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # http.server calls it by this name
                length = int(self.headers.get("Content-Length") or 0)
                request = ReceivedRequest(
                    method="POST",
                    path=self.path,
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=self.rfile.read(length),
                    arrived_at=time.time(),
                )
                with receiver._arrived:
                    receiver.requests.append(request)
                    receiver._arrived.notify_all()
                status = receiver.respond(request)
                with contextlib.suppress(OSError):  # the sender may be gone
                    self.send_response(status)
                    self.send_header("Content-Type", "text/plain")
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                    request.status = status
                with receiver._arrived:
                    receiver._arrived.notify_all()

            def log_message(self, format, *args) -> None:  # quiet
                pass

        return Handler

    def wait_until(self, predicate: Callable[[], object], *, timeout: float = 30):
        """Wait until `predicate()` (called under the lock, after each request)
        is true; its value, or TimeoutError."""
        with self._arrived:
            result = self._arrived.wait_for(predicate, timeout=timeout)
        if not result:
            raise TimeoutError(f"the webhook receiver waited {timeout}s in vain")
        return result

    def notify(self) -> None:
        """Wake the waiters (a test changed what `predicate` looks at)."""
        with self._arrived:
            self._arrived.notify_all()

    def start(self) -> WebhookReceiver:
        server_class = type(
            "Server",
            (http.server.ThreadingHTTPServer,),
            {"allow_reuse_address": True, "daemon_threads": True},
        )
        self._server = server_class(("127.0.0.1", self.port), self._handler())
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}
        )
        self._thread.daemon = True
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close the port (connections are refused until `start()`)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None


@contextlib.contextmanager
def webhook_receiver() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver().start()
    try:
        yield receiver
    finally:
        receiver.stop()


# --- HTTP -----------------------------------------------------------------------------


@dataclass
class HttpResponse:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes

    def json(self):
        return json.loads(self.body)


def http_request(
    method: str,
    url: str,
    *,
    json_body=None,
    token: str | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 15,
) -> HttpResponse:
    """One HTTP request on a fresh connection; any status is returned, not raised."""
    parts = urlsplit(url)
    all_headers = {"Accept": "application/json", **(headers or {})}
    body = None
    if json_body is not None:
        body = json.dumps(json_body).encode()
        all_headers["Content-Type"] = "application/json"
    if token:
        all_headers["Authorization"] = f"Bearer {token}"
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        conn.request(method, path or "/", body=body, headers=all_headers)
        response = conn.getresponse()
        return HttpResponse(
            status=response.status,
            headers={k.lower(): v for k, v in response.getheaders()},
            body=response.read(),
        )
    finally:
        conn.close()


# --- The stack ------------------------------------------------------------------------


@dataclass
class _Process:
    name: str
    popen: subprocess.Popen
    log_path: Path


@dataclass
class Stack:
    url: str
    web_url: str
    env: dict[str, str]
    workdir: Path
    static_root: Path
    media_root: Path
    # The worker's own /metrics (wallet_project.metrics.worker_exporter_start).
    worker_metrics_url: str = ""
    _processes: list[_Process] = field(default_factory=list)
    _nginx_conf: Path | None = None
    _owns_workdir: bool = False

    # -- starting ----------------------------------------------------------------------

    @classmethod
    def start(
        cls,
        *,
        database_url: str,
        redis_url: str,
        email_url: str = "consolemail://",
        web_workers: int = 2,
        celery: bool = True,
        settings_module: str = "wallet_project.settings",
        env: dict[str, str] | None = None,
        workdir: Path | None = None,
        trusted_proxies: str = "",
        startup_timeout: float = 60,
        web_nodes: int = 1,
    ) -> Stack:
        owns_workdir = workdir is None
        if workdir is None:
            workdir = Path(tempfile.mkdtemp(prefix="wallet-stack-"))
        # Nginx's workers run as the user the master is started as (or as the
        # `user` of the config when that is root): they must reach these.
        os.chmod(workdir, 0o755)  # noqa: S103 - nothing secret in there
        ports = {free_port()}
        while len(ports) < 2 + web_nodes:
            ports.add(free_port())
        worker_metrics_port, nginx_port, web_port, *more_ports = ports
        static_root, media_root = workdir / "static", workdir / "media"
        media_root.mkdir()
        (workdir / "nginx-temp").mkdir()

        process_env = _base_env(database_url, redis_url)
        process_env.update(
            DJANGO_SETTINGS_MODULE=settings_module,
            EMAIL_URL=email_url,
            STATIC_ROOT=str(static_root),
            MEDIA_ROOT=str(media_root),
            # Throttle counters and cache entries of this stack only.
            CACHE_KEY_PREFIX=f"stack-{secrets.token_hex(4)}",
            NUM_PROXIES="1",  # Nginx appends the client address to X-Forwarded-For
            GUNICORN_BIND=f"127.0.0.1:{web_port}",
            GUNICORN_CONTROL_SOCKET=str(workdir / "gunicorn.ctl"),
            WEB_CONCURRENCY=str(web_workers),
            LOG_FORMAT="json",
            # Webhook receivers of the tests and the benchmark listen on loopback.
            WEBHOOKS_ALLOW_PRIVATE_NETWORKS="true",
        )
        process_env.update(env or {})

        stack = cls(
            url=f"http://127.0.0.1:{nginx_port}",
            web_url=f"http://127.0.0.1:{web_port}",
            env=process_env,
            workdir=workdir,
            static_root=static_root,
            media_root=media_root,
            worker_metrics_url=(
                f"http://127.0.0.1:{worker_metrics_port}/metrics" if celery else ""
            ),
            _owns_workdir=owns_workdir,
        )
        try:
            # --link: symlinks into the source tree, fast; Nginx follows them.
            stack.manage("collectstatic", "--noinput", "--link")
            stack._start_nginx(nginx_port, more_ports, trusted_proxies=trusted_proxies)
            gunicorn = [
                *(sys.executable, "-m", "gunicorn", "wallet_project.wsgi"),
                *("-c", str(REPO / "gunicorn.conf.py")),
            ]
            # Each master's and the worker's metrics in a directory of the
            # stack's (wallet_project/metrics_dir.py).
            stack._spawn(
                "web",
                gunicorn,
                env={"PROMETHEUS_MULTIPROC_DIR": str(workdir / "metrics-web")},
            )
            for node, port in enumerate(more_ports, start=2):
                # Another web node: its own master, port and control socket.
                stack._spawn(
                    f"web-{node}",
                    gunicorn,
                    env={
                        "GUNICORN_BIND": f"127.0.0.1:{port}",
                        "GUNICORN_CONTROL_SOCKET": str(
                            workdir / f"gunicorn-{node}.ctl"
                        ),
                        "PROMETHEUS_MULTIPROC_DIR": str(
                            workdir / f"metrics-web-{node}"
                        ),
                    },
                )
            if celery:
                node = f"stack-{secrets.token_hex(3)}@%h"
                stack._spawn(
                    "worker",
                    [
                        *(sys.executable, "-m", "celery", "-A", "wallet_project"),
                        *("worker", "--loglevel", "INFO", "--concurrency", "2"),
                        *("-n", node, "--without-gossip", "--without-mingle"),
                    ],
                    env={
                        "PROMETHEUS_MULTIPROC_DIR": str(workdir / "metrics-worker"),
                        "METRICS_WORKER_PORT": str(worker_metrics_port),
                    },
                )
                stack._spawn(
                    "beat",
                    [
                        *(sys.executable, "-m", "celery", "-A", "wallet_project"),
                        *("beat", "--loglevel", "INFO"),
                        *("--pidfile", str(workdir / "beat.pid")),
                    ],
                )
            deadline = time.monotonic() + startup_timeout
            stack._wait_ready(deadline)
            if celery:
                stack._wait_for_log("worker", " ready.", deadline)
                stack._wait_for_log("beat", "beat: Starting", deadline)
        except BaseException:
            stack.stop()
            raise
        return stack

    def _spawn(
        self, name: str, argv: list[str], env: dict[str, str] | None = None
    ) -> None:
        log_path = self.workdir / f"{name}.log"
        with open(log_path, "ab") as log:
            popen = subprocess.Popen(
                argv,
                cwd=REPO,
                env={**self.env, **(env or {})},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stop reaches children
            )
        self._processes.append(_Process(name, popen, log_path))

    def _start_nginx(
        self, port: int, more_web_ports: list[int], *, trusted_proxies: str
    ) -> None:
        import grp
        import pwd

        user = pwd.getpwuid(os.getuid()).pw_name
        group = grp.getgrgid(os.getgid()).gr_name
        conf = self.workdir / "nginx.conf"
        real_ip_conf = self.workdir / "real_ip.conf"
        write_real_ip_conf(real_ip_conf, trusted_proxies)
        conf.write_text(
            render_nginx_conf(
                user=f"{user} {group}",
                listen=f"127.0.0.1:{port}",
                # More web nodes: more `server` lines in the upstream block.
                upstream=";\n        server ".join(
                    [
                        self.web_url.removeprefix("http://"),
                        *(f"127.0.0.1:{p}" for p in more_web_ports),
                    ]
                ),
                upstream_resolve="",
                static_root=str(self.static_root),
                media_root=str(self.media_root),
                temp_dir=str(self.workdir / "nginx-temp"),
                pid_file=str(self.workdir / "nginx.pid"),
                error_log=str(self.workdir / "nginx-error.log"),
                access_log=str(self.workdir / "nginx-access.log"),
                proxy_params=str(REPO / "nginx" / "proxy.conf"),
                # Never asked: the upstream is an address, not a name.
                resolver="127.0.0.1",
                real_ip_conf=str(real_ip_conf),
            )
        )
        self._nginx_conf = conf
        prefix = ["-p", str(self.workdir), "-e", str(self.workdir / "nginx-error.log")]
        subprocess.run(
            [NGINX_BINARY, *prefix, "-t", "-q", "-c", str(conf)],
            check=True,
            capture_output=True,
        )
        self._spawn(
            "nginx",
            [NGINX_BINARY, *prefix, "-c", str(conf), "-g", "daemon off;"],
        )

    def _check_alive(self) -> None:
        for process in self._processes:
            if process.popen.poll() is not None:
                raise RuntimeError(
                    f"{process.name} exited with {process.popen.returncode}:\n"
                    + self.log(process.name)[-4000:]
                )

    def _wait_ready(self, deadline: float) -> None:
        while True:
            self._check_alive()
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=2) as r:  # noqa: S310
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(
                    "the stack did not become ready:\n" + self.log("web")
                )
            time.sleep(0.2)

    def _wait_for_log(self, name: str, text: str, deadline: float) -> None:
        while text not in self.log(name):
            self._check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name} did not log {text!r}:\n" + self.log(name))
            time.sleep(0.2)

    # -- using -------------------------------------------------------------------------

    def log(self, name: str) -> str:
        """What a process wrote: web, worker, beat, nginx (its stderr), nginx-access,
        nginx-error."""
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def request(self, method: str, path: str, **options) -> HttpResponse:
        """`http_request()` through Nginx: `request("GET", "/api/v1/wallets/", token=t)`."""
        return http_request(method, self.url + path, **options)

    def manage(self, *args: str, env: dict[str, str] | None = None) -> str:
        """`manage.py <args>` with the stack's environment (plus `env`)."""
        return manage(*args, env={**self.env, **(env or {})})

    # -- stopping ----------------------------------------------------------------------

    def stop(self, *, grace: float = 30) -> dict[str, int | None]:
        """Stop every process gracefully (Nginx first, so nothing new comes in), then
        SIGKILL whatever outlives `grace` seconds. Exit codes by process name."""
        order = {"nginx": 0, "web": 1, "beat": 2, "worker": 3}
        processes = sorted(
            self._processes, key=lambda p: order.get(p.name.split("-")[0], 9)
        )
        for process in processes:
            if process.popen.poll() is None:
                # SIGQUIT: Nginx's graceful shutdown; SIGTERM: Gunicorn's and
                # Celery's (warm shutdown: finish the task at hand).
                sig = signal.SIGQUIT if process.name == "nginx" else signal.SIGTERM
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.popen.pid, sig)
        deadline = time.monotonic() + grace
        for process in processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
        for pid in self.leftovers():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for process in processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.popen.wait(timeout=5)
        codes = {p.name: p.popen.returncode for p in processes}
        if self._owns_workdir and not os.environ.get("KEEP_STACK_WORKDIR"):
            shutil.rmtree(self.workdir, ignore_errors=True)
        return codes

    def kill(self) -> list[int]:
        """`kill -9` of every process of the stack at once (Nginx, Gunicorn's
        master and workers, the Celery worker and its pool, beat): the hosts lose
        power, the databases do not. The pids killed."""
        pids = self.leftovers()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for process in self._processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.popen.wait(timeout=10)
        return pids

    def start_again(self, **options) -> Stack:
        """A new stack on the same database, Redis, keys and cache prefix
        (tokens stay valid), on new ports and a new work directory: the stack
        started again after `kill()`. Stop it on its own."""
        local = {
            "GUNICORN_BIND",
            "GUNICORN_CONTROL_SOCKET",
            "STATIC_ROOT",
            "MEDIA_ROOT",
        }
        env = {k: v for k, v in self.env.items() if k not in local}
        return Stack.start(
            database_url=env["DATABASE_URL"],
            redis_url=env["REDIS_URL"],
            email_url=env["EMAIL_URL"],
            env=env,
            **options,
        )

    def leftovers(self) -> list[int]:
        """Pids of processes still alive in the stack's process groups."""
        groups = {p.popen.pid for p in self._processes}
        return [
            pid
            for pid, fields in process_stats()
            if fields[0] != "Z" and int(fields[2]) in groups
        ]


def process_stats() -> Iterator[tuple[int, list[str]]]:
    """(pid, [state, ppid, pgrp, ...]) of every process, from /proc/<pid>/stat."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid pgrp ...: comm may contain spaces; split after ')'.
        yield int(entry.name), stat.rsplit(")", 1)[1].split()


@contextlib.contextmanager
def running_stack(**options) -> Iterator[Stack]:
    stack = Stack.start(**options)
    try:
        yield stack
    finally:
        stack.stop()


# --- Scaling out: PgBouncer and a streaming replica (opt-in) ----------------------------

PGBOUNCER_BINARY = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"


def _as_service_user(argv: list[str]) -> list[str]:
    """PgBouncer and PostgreSQL refuse to run as root: as the postgres user then."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *argv]
    return argv


def _with_address(url: str, port: int, dbname: str | None = None) -> str:
    parts = urlsplit(url)
    netloc = f"{parts.username or 'postgres'}@127.0.0.1:{port}"
    path = f"/{dbname}" if dbname is not None else parts.path
    return urlunsplit(parts._replace(netloc=netloc, path=path))


def _wait_accepting(port: int, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 20
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(log.read_text(errors="replace")) from None
            time.sleep(0.05)


class PgBouncer:
    """Debian's PgBouncer (1.18) in transaction pooling mode on a free loopback
    port. Every database name passes through to `upstream_url`'s server (`* =`);
    `databases` adds named entries (name -> libpq connect string, e.g. a replica).
    At most `pool_size` server connections per database, whatever the clients."""

    def __init__(
        self,
        upstream_url: str,
        *,
        pool_size: int = 10,
        max_client_conn: int = 2000,
        databases: dict[str, str] | None = None,
    ) -> None:
        self.upstream = urlsplit(upstream_url)
        self.pool_size = pool_size
        self.max_client_conn = max_client_conn
        self.databases = databases or {}
        self.root = Path(tempfile.mkdtemp(prefix="wallet-pgbouncer-"))
        self.port = free_port()
        self.log = self.root / "pgbouncer.log"
        self.process: subprocess.Popen | None = None

    def url(self, database_url: str, dbname: str | None = None) -> str:
        """`database_url`'s database (or `dbname`) through this PgBouncer."""
        return _with_address(database_url, self.port, dbname)

    def start(self) -> PgBouncer:
        user = self.upstream.username or "postgres"
        entries = "".join(f"{name} = {dsn}\n" for name, dsn in self.databases.items())
        (self.root / "userlist.txt").write_text(f'"{user}" ""\n')
        conf = self.root / "pgbouncer.ini"
        conf.write_text(
            "[databases]\n"
            f"{entries}"
            f"* = host={self.upstream.hostname} port={self.upstream.port or 5432}\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\n"
            "unix_socket_dir =\n"
            f"auth_type = trust\nauth_file = {self.root / 'userlist.txt'}\n"
            f"admin_users = {user}\n"
            "pool_mode = transaction\n"
            f"default_pool_size = {self.pool_size}\n"
            f"max_db_connections = {self.pool_size}\n"
            "reserve_pool_size = 0\n"
            f"max_client_conn = {self.max_client_conn}\n"
            "ignore_startup_parameters = extra_float_digits\n"
            f"logfile = {self.log}\npidfile = {self.root / 'pgbouncer.pid'}\n"
        )
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
            for path in self.root.iterdir():
                shutil.chown(path, "postgres", "postgres")
        self.process = subprocess.Popen(
            _as_service_user([PGBOUNCER_BINARY, str(conf)]),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        _wait_accepting(self.port, self.process, self.log)
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            # SIGTERM: PgBouncer 1.18's immediate shutdown.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)
        if not os.environ.get("KEEP_STACK_WORKDIR"):
            shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def pgbouncer(upstream_url: str, **options) -> Iterator[PgBouncer]:
    bouncer = PgBouncer(upstream_url, **options)
    try:
        yield bouncer.start()
    finally:
        bouncer.stop()


class StreamingReplica:
    """A hot standby of `primary` (a tests/hostile/services.py PostgresCluster):
    pg_basebackup -R from it, started on its own loopback port. `apply_delay`
    (recovery_min_apply_delay, e.g. "20s") holds each commit back that long."""

    def __init__(self, primary, *, apply_delay: str = "0") -> None:
        from tests.hostile.services import PostgresCluster

        self.primary = primary
        # The primary's options too: a standby needs max_connections and the
        # like at least as high as its primary's.
        self.cluster = PostgresCluster(
            options=f"{primary.options} -c hot_standby=on "
            f"-c recovery_min_apply_delay={apply_delay}"
        )

    @property
    def port(self) -> int:
        return self.cluster.port

    def url(self, database_url: str) -> str:
        """`database_url`'s database on the replica."""
        return _with_address(database_url, self.port)

    def start(self) -> StreamingReplica:
        from tests.hostile.services import _as_postgres, _pg_bin

        _as_postgres(
            _pg_bin("pg_basebackup"),
            *("-D", str(self.cluster.data), "-R", "-X", "stream", "-c", "fast"),
            *("-h", "127.0.0.1", "-p", str(self.primary.port), "-U", "postgres"),
            "--no-sync",
            timeout=300,
        )
        try:
            self.cluster.start()
        except subprocess.CalledProcessError as exc:
            raise RuntimeError(
                "the replica did not start:\n" + self.cluster.log.read_text()
            ) from exc
        return self

    def stop(self) -> None:
        if self.cluster.running():
            self.cluster.stop()

    def wait_for_replay(self, primary_url: str, *, timeout: float = 60) -> None:
        """Until the replica has replayed everything the primary had written when
        this was called (its WAL position then)."""
        import psycopg

        with psycopg.connect(primary_url, autocommit=True) as conn:
            (target,) = conn.execute("SELECT pg_current_wal_lsn()").fetchone()
        deadline = time.monotonic() + timeout
        with psycopg.connect(self.url(primary_url), autocommit=True) as conn:
            while True:
                (done,) = conn.execute(
                    "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", [target]
                ).fetchone()
                if done:
                    return
                if time.monotonic() > deadline:
                    raise TimeoutError(f"replica has not replayed up to {target}")
                time.sleep(0.1)


@contextlib.contextmanager
def streaming_replica(primary, **options) -> Iterator[StreamingReplica]:
    replica = StreamingReplica(primary, **options)
    try:
        yield replica.start()
    finally:
        if replica.cluster.running():
            replica.cluster.stop_immediately()
        shutil.rmtree(replica.cluster.root, ignore_errors=True)


if __name__ == "__main__":
    # .venv/bin/python -m tests.stack nginx-conf > nginx/nginx.conf
    if sys.argv[1:] == ["nginx-conf"]:
        sys.stdout.write(render_nginx_conf(**COMPOSE_NGINX))
    else:
        sys.exit("usage: python -m tests.stack nginx-conf")
