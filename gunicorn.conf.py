"""Gunicorn for the web process: gevent workers behind Nginx, all from the environment.

    gunicorn wallet_project.wsgi -c gunicorn.conf.py

gevent and psycopg 3: psycopg picks its wait function when `psycopg.waiting` is
first imported; it cooperates with gevent only if gevent has already patched
`select` by then (psycopg >= 3.1.14 checks `gevent.monkey.is_module_patched`),
otherwise it uses a C wait that blocks the whole worker for the length of every
query. The gevent worker calls `monkey.patch_all()` when it boots, before it
loads the application, so:

- this file must not import Django, the project or psycopg (it runs in the
  master, before any patching, and workers are forked from it);
- `preload_app` stays off (preloading imports the project in the master);
- `post_worker_init` refuses to serve if psycopg got the blocking wait anyway.

Database connections: every greenlet would otherwise open its own connection, so
the web process uses Django's psycopg pool (DATABASE_POOL, on by default here):
at most DATABASE_POOL_MAX connections per worker, requests beyond that wait up to
DATABASE_POOL_TIMEOUT seconds for one (then 503 + Retry-After). Budget:
WEB_CONCURRENCY x DATABASE_POOL_MAX + Celery concurrency + beat + a few for
migrations and shells <= PostgreSQL's max_connections.
"""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

from gunicorn.glogging import Logger


# Project files by their path: importing the package would import the project
# (Celery) in the master. Those files are the standard library only.
def _load(name, relative):
    spec = importlib.util.spec_from_file_location(
        name, Path(__file__).resolve().parent / relative
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


capacity = _load("wallet_capacity", "wallet_project/capacity.py")
# Prometheus multiprocess mode (wallet_project/metrics_dir.py, also the standard
# library only): every worker counts into files in one directory, chosen (and
# emptied) here before any worker imports prometheus-client; a scrape sums them.
metrics_dir = _load("wallet_metrics_dir", "wallet_project/metrics_dir.py")
metrics_dir.metrics_dir_prepare("web")

# --- Server socket ---------------------------------------------------------------------
bind = os.environ.get("GUNICORN_BIND") or (
    f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
)
backlog = int(os.environ.get("GUNICORN_BACKLOG", "2048"))

# --- Workers ---------------------------------------------------------------------------
worker_class = "gevent"
# gevent serves many requests per worker concurrently; one worker per core uses
# the CPUs, more only adds database connections (each worker has its own pool).
# Cores: those of the container's cgroup CPU limit (cpu.max, or the v1 CFS
# quota), not the host's (os.cpu_count() on a 16-core host would be 16 pools).
workers = int(os.environ.get("WEB_CONCURRENCY") or capacity.default_web_workers())
# Concurrent requests (greenlets) per worker.
worker_connections = int(os.environ.get("GUNICORN_WORKER_CONNECTIONS", "1000"))
# Worker recycling is off by default: a gevent worker that restarts stops serving
# every request queued to it until the new one has imported the project (measured
# by make bench: p99 of GET detail 2.2 s with recycling every ~10,000 requests),
# and the workers' memory stays flat under load (make bench records their RSS).
# Set GUNICORN_MAX_REQUESTS (e.g. 200000) if a deployment sees it grow; the
# jitter keeps workers from restarting together.
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "0"))
max_requests_jitter = int(os.environ.get("GUNICORN_MAX_REQUESTS_JITTER", "1000"))
preload_app = False  # see the module docstring: patch first, then import

# --- Timeouts --------------------------------------------------------------------------
# A gevent worker that has not told the master it is alive for `timeout` seconds
# (its event loop is stuck) is killed and replaced. Slow requests do not count:
# Nginx's proxy_read_timeout bounds them.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
# On SIGTERM/SIGHUP/SIGQUIT workers stop accepting and finish in-flight requests
# for up to this long.
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "30"))
# Nginx keeps upstream connections alive (upstream keepalive): hold them longer
# than Nginx does so Gunicorn never closes one Nginx is about to reuse.
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", "75"))

# --- Proxy -----------------------------------------------------------------------------
# Only Nginx talks to Gunicorn; trust X-Forwarded-Proto/For only from it.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")

# --- Logging ---------------------------------------------------------------------------
# Django writes one JSON access line per request (wallet_project.middleware), so
# Gunicorn's own access log is off unless asked for.
accesslog = os.environ.get("GUNICORN_ACCESSLOG") or None
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOGLEVEL", "info")
capture_output = False
if os.environ.get("LOG_FORMAT", "json") == "json":
    # Gunicorn's own lines (boot, worker timeouts, signals) as JSON too, in the
    # fields of wallet_project.logging (which cannot be imported here: see above).
    logconfig_dict = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "json": {
                "()": "pythonjsonlogger.json.JsonFormatter",
                "fmt": "%(levelname)s %(name)s %(message)s",
                "rename_fields": {"levelname": "level", "name": "logger"},
                "timestamp": "time",
            }
        },
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stderr",
            }
        },
        "loggers": {
            "gunicorn.error": {"handlers": ["console"], "propagate": False},
            # Setting logconfig_dict switches Gunicorn's access log on: keep it
            # quiet unless GUNICORN_ACCESSLOG asks for it.
            "gunicorn.access": {
                "handlers": ["console"],
                "propagate": False,
                "level": "INFO" if accesslog else "WARNING",
            },
        },
    }


class _Logger(Logger):
    """Gunicorn's logger with its access log on only when GUNICORN_ACCESSLOG asks.
    Setting logconfig_dict (above) switches it on, and Gunicorn would then build
    every request's log fields only for the quiet logger to drop them: 8% of a
    GET's CPU (py-spy under make bench)."""

    def access(self, resp, req, environ, request_time):
        if self.cfg.accesslog:
            super().access(resp, req, environ, request_time)


logger_class = _Logger

# --- Control socket (gunicornc): one per deployment, not one per user -------------------
if os.environ.get("GUNICORN_CONTROL_SOCKET") == "off":
    control_socket_disable = True
elif os.environ.get("GUNICORN_CONTROL_SOCKET"):
    control_socket = os.environ["GUNICORN_CONTROL_SOCKET"]

# --- Database pool for gevent (read by wallet_project/settings.py in the workers) ------
os.environ.setdefault("DATABASE_POOL", "true")
# Under overload a request waits at most 2 s for a connection and is then shed
# with 503 + Retry-After; at 10 s clients time out first (measured by make bench:
# 256 connections on one wallet gave socket errors at 10 s, none at 2 s).
os.environ.setdefault("DATABASE_POOL_TIMEOUT", "2")
# A request's statements, lock waits and idle transactions are cut short (the
# request answers 503 + Retry-After); the worker and beat keep the settings' longer
# defaults (wallet_project/settings.py).
os.environ.setdefault("DATABASE_STATEMENT_TIMEOUT", "5")
os.environ.setdefault("DATABASE_LOCK_TIMEOUT", "3")
os.environ.setdefault("DATABASE_IDLE_IN_TRANSACTION_TIMEOUT", "10")

# Graceful reload: `kill -HUP <master>` starts new workers with the new code and
# config (no preload, so the code is re-imported) and stops the old ones
# gracefully; `kill -USR2` + `kill -WINCH`/`-TERM` of the old master upgrades the
# Gunicorn binary itself without dropping the listening socket.


def on_starting(server):
    """Refuse to start when the deployment's connections (WEB_CONCURRENCY x
    DATABASE_POOL_MAX + the Celery workers + beat + a reserve) pass the server's
    max_connections: past it, requests fail at random under load instead. Asked
    in a child process (Django and psycopg stay out of the master); a database
    that cannot be asked now is only a warning, as at worker start."""
    if os.environ.get("DATABASE_CONNECTION_BUDGET_CHECK", "true") == "false":
        return
    if os.environ.get("DATABASE_POOLER"):
        # Behind PgBouncer the server sees its pool, not these processes: the
        # budget is PgBouncer's pool size (README: Scaling out).
        return
    result = subprocess.run(  # noqa: S603 - our own module, our own interpreter
        [
            *(sys.executable, "-m", "wallet_project.capacity"),
            *("--web-workers", str(server.cfg.workers)),
        ],
        cwd=Path(__file__).resolve().parent,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    message = (result.stderr or result.stdout).strip()
    if result.returncode == capacity.OVER_BUDGET:
        server.log.critical(message)
        raise SystemExit(capacity.OVER_BUDGET)
    if result.returncode != 0:
        server.log.warning(message or f"connection budget check failed: {result}")
    else:
        server.log.info(message)


def post_worker_init(worker):
    """Fail loudly, not slowly: a gevent worker with psycopg's blocking wait would
    serve one query at a time."""
    if worker.cfg.worker_class_str != "gevent":
        return
    import psycopg.waiting

    if getattr(psycopg.waiting, "wait_c", None) is psycopg.waiting.wait:
        worker.log.critical(
            "psycopg was imported before gevent patched the standard library; "
            "its queries would block the worker. Do not import the project from "
            "gunicorn.conf.py and keep preload_app off."
        )
        raise SystemExit(4)
    _warm_up(worker)


def _warm_up(worker):
    """Do now what the worker's first requests would otherwise do while clients
    wait: import every view (the URLconf), load the translation catalogs, open
    the database pool (a database that is down only costs that step). Then move
    everything loaded so far out of the garbage collector's sight (gc.freeze):
    a full collection no longer walks the whole of Django on every request that
    happens to trigger one (those pauses were the latency tail under load)."""
    import gc

    from django.conf import settings
    from django.db import connection
    from django.urls import get_resolver
    from django.utils import translation

    get_resolver().reverse_dict  # noqa: B018 - imports every view module
    for language, _name in settings.LANGUAGES:
        with translation.override(language):
            translation.gettext("Not found.")
    try:
        connection.ensure_connection()
    except Exception as exc:
        worker.log.warning("database not reachable at worker start: %s", exc)
    finally:
        connection.close()  # back to the pool
    gc.collect()
    gc.freeze()


def child_exit(server, worker):
    """A worker is gone: its live gauges (the pool's) stop counting."""
    metrics_dir.metrics_process_dead(worker.pid)
