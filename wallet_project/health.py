"""Health endpoints for load balancers, Docker and orchestrators (JSON, no auth).

- `GET /healthz`: the process is up and serving (no I/O). For liveness probes.
- `GET /readyz`: PostgreSQL and Redis answer. 200 when they do, else 503 with
  `Retry-After`. For readiness probes and the deploy script.

`HealthCheckMiddleware` answers both paths before host validation and the HTTPS
redirect: probes connect by container IP over plain HTTP, with a Host header
that is not one of ALLOWED_HOSTS. The URLconf routes them too (reverse(), and a
project without the middleware still has them).
"""

import logging
from collections.abc import Callable

import redis
from django.conf import settings
from django.db import Error as DatabaseError
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from wallet_project.metrics_view import metrics_view

logger = logging.getLogger(__name__)

OK = "ok"
UNAVAILABLE = "unavailable"
NOT_CONFIGURED = "not_configured"

_redis_client: redis.Redis | None = None


def _redis() -> redis.Redis:
    global _redis_client  # one client (and connection pool) per process
    if _redis_client is None:
        _redis_client = redis.Redis.from_url(
            settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=2
        )
    return _redis_client


def database_status() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError as exc:
        logger.warning("readyz: database unavailable: %s", exc)
        return UNAVAILABLE
    return OK


def redis_status() -> str:
    if not settings.REDIS_URL:
        return NOT_CONFIGURED  # the embedded default: local cache, filesystem broker
    try:
        _redis().ping()
    except redis.RedisError as exc:
        logger.warning("readyz: redis unavailable: %s", exc)
        return UNAVAILABLE
    return OK


@never_cache
@require_safe
def healthz(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"status": OK})


@never_cache
@require_safe
def readyz(request: HttpRequest) -> HttpResponse:
    checks = {"database": database_status(), "redis": redis_status()}
    ready = UNAVAILABLE not in checks.values()
    response = JsonResponse(
        {"status": OK if ready else UNAVAILABLE, "checks": checks},
        status=200 if ready else 503,
    )
    if not ready:
        response["Retry-After"] = "5"
    return response


HEALTH_VIEWS: dict[str, Callable[[HttpRequest], HttpResponse]] = {
    "/healthz": healthz,
    "/readyz": readyz,
    # Prometheus scrapes by container address too (wallet_project.metrics_view).
    "/metrics": metrics_view,
}


class HealthCheckMiddleware:
    """Right after RequestLogMiddleware, before SecurityMiddleware and CommonMiddleware."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        view = HEALTH_VIEWS.get(request.path_info)
        if view is not None:
            return view(request)
        return self.get_response(request)
