"""Logging: one JSON object per line on stderr, each with the current request id.

`RequestLogMiddleware` (wallet_project.middleware) puts the request id into
`request_id_var`; `RequestIdFilter` copies it onto every record logged while that
request runs, so a traceback and the access line of one request share an id.
`logging_config()` builds the LOGGING dict that settings.py uses.
"""

import logging
from contextvars import ContextVar
from typing import Any

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

# gevent runs each request in its own greenlet, and greenlets have their own
# contextvars context: the id never leaks between concurrent requests.
request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = request_id_var.get()
        return True


# Beat runs these every second or so: their routine INFO lines (sent, received,
# succeeded) would drown everything else. Warnings and errors still show.
QUIET_TASKS = ("webhooks_dispatch", "webhooks-dispatch")


class QuietTasksFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.INFO or not record.name.startswith("celery"):
            return True
        message = record.getMessage()
        return not any(name in message for name in QUIET_TASKS)


class JsonLogFormatter(JsonFormatter):
    """`{"time", "level", "logger", "message", "request_id", ...extra, "exc_info"}`.

    Django attaches the HttpRequest to its `django.request` records; it is not
    serialisable and the access line already says what the request was.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("fmt", "%(levelname)s %(name)s %(message)s %(request_id)s")
        kwargs.setdefault("rename_fields", {"levelname": "level", "name": "logger"})
        kwargs.setdefault("timestamp", "time")  # ISO 8601, UTC
        kwargs.setdefault("reserved_attrs", [*RESERVED_ATTRS, "request"])
        kwargs.setdefault("json_ensure_ascii", False)
        super().__init__(*args, **kwargs)


def logging_config(*, level: str = "INFO", json: bool = True) -> dict[str, Any]:
    """The LOGGING setting: everything to stderr, as JSON unless `json` is False."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {
            "request_id": {"()": "wallet_project.logging.RequestIdFilter"},
            "quiet_tasks": {"()": "wallet_project.logging.QuietTasksFilter"},
        },
        "formatters": {
            "json": {"()": "wallet_project.logging.JsonLogFormatter"},
            "text": {
                "format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] "
                "%(message)s"
            },
        },
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": "json" if json else "text",
                "filters": ["request_id", "quiet_tasks"],
            }
        },
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            "django.db.backends": {"level": "WARNING"},
            # One access line per request comes from wallet.access; Django's own
            # "Not Found: /x" warnings would repeat it.
            "django.request": {"level": "ERROR"},
            "wallet.access": {"level": "INFO"},
        },
    }
