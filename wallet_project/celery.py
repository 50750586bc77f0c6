import os
import sys
import time

from celery import Celery, signals

from wallet_project.metrics_dir import metrics_dir_prepare

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "wallet_project.settings")

# A worker's pool processes count into files that its exporter sums: the
# directory is chosen before anything imports prometheus-client
# (wallet_project.metrics_dir).
if "worker" in sys.argv[1:]:
    metrics_dir_prepare("worker")

app = Celery("wallet_project")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# --- Metrics: tasks by name and state, and the worker's /metrics ------------------------

_started: dict[str, float] = {}


@signals.task_prerun.connect
def _task_started(task_id: str, **_kwargs: object) -> None:
    _started[task_id] = time.monotonic()


@signals.task_postrun.connect
def _task_finished(
    task_id: str, task: object, state: str | None = None, **_kwargs: object
) -> None:
    from wallet_project import metrics

    started = _started.pop(task_id, None)
    seconds = None if started is None else time.monotonic() - started
    names = {"SUCCESS": "succeeded", "FAILURE": "failed", "RETRY": "retried"}
    metrics.celery_task_observe(
        getattr(task, "name", "unknown"), names.get(state or "", "other"), seconds
    )


@signals.worker_ready.connect
def _exporter_start(**_kwargs: object) -> None:
    from django.conf import settings

    from wallet_project import metrics

    if settings.METRICS_ENABLED and settings.METRICS_WORKER_PORT:
        metrics.worker_exporter_start(
            settings.METRICS_WORKER_HOST, settings.METRICS_WORKER_PORT
        )
