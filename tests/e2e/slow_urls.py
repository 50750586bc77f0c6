"""Test-only URLs (never in the product's URLconf): a slow database query and a bug."""

import os

from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.urls import path
from rest_framework.views import APIView

from wallet_project.urls import (  # noqa: F401 - Django looks handlers up here
    handler400,
    handler403,
    handler404,
    handler500,
)
from wallet_project.urls import urlpatterns as product_urlpatterns


def slow_query(request: HttpRequest) -> JsonResponse:
    """One second inside PostgreSQL, with the database's clock read either side."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT clock_timestamp()")
        started = cursor.fetchone()[0]
        cursor.execute("SELECT pg_sleep(1)")
        cursor.execute("SELECT clock_timestamp()")
        finished = cursor.fetchone()[0]
    return JsonResponse(
        {
            "pid": os.getpid(),
            "started": started.isoformat(),
            "finished": finished.isoformat(),
        }
    )


def bug(request: HttpRequest) -> JsonResponse:
    raise RuntimeError("e2e: a deliberate bug")


class ApiBug(APIView):
    """A bug behind the API's authentication: the request has a user (with an
    email), a bearer token and a JSON body."""

    def post(self, request):
        raise RuntimeError(f"e2e: a deliberate API bug ({len(request.data)} fields)")


urlpatterns = [
    path("e2e/slow-query/", slow_query),
    path("e2e/bug/", bug),
    path("e2e/api-bug/", ApiBug.as_view()),
    *product_urlpatterns,
]
