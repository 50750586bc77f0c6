"""Where a role's processes keep their Prometheus values (multiprocess mode).

prometheus-client decides when it is first imported whether values live in the
process or in files under PROMETHEUS_MULTIPROC_DIR, where every process of a
Gunicorn master (or a Celery worker's pool) writes its own and a scrape sums
them. So the directory is chosen before anything imports it: by gunicorn.conf.py
in the master (loaded by path: this module imports nothing of the project) and
by wallet_project.celery for a worker. Standard library only.
"""

import glob
import os
import tempfile

ENV = "PROMETHEUS_MULTIPROC_DIR"
# The process that prepared the directory: a Gunicorn master re-reads its config
# on a reload (HUP) while its workers keep writing, and must not empty it then.
_OWNER_ENV = "WALLET_METRICS_DIR_OWNER"


def metrics_dir_prepare(role: str) -> str:
    """Use PROMETHEUS_MULTIPROC_DIR if set (emptied: values of a previous run
    would be counted again), else a new private directory for `role` (web,
    worker); exported for the processes started from here. Its path."""
    path = os.environ.get(ENV, "")
    if path and os.environ.get(_OWNER_ENV) == str(os.getpid()):
        return path
    if path:
        os.makedirs(path, exist_ok=True)
        for name in glob.glob(os.path.join(path, "*.db")):
            os.remove(name)
    else:
        path = tempfile.mkdtemp(prefix=f"wallet-metrics-{role}-")
    os.environ[ENV] = path
    os.environ[_OWNER_ENV] = str(os.getpid())
    return path


def metrics_process_dead(pid: int) -> None:
    """Forget a dead process's live gauges (what
    prometheus_client.multiprocess.mark_process_dead does, without importing
    prometheus-client into the Gunicorn master); its counters still count."""
    path = os.environ.get(ENV, "")
    if path:
        for name in glob.glob(os.path.join(path, f"gauge_live*_{pid}.db")):
            os.remove(name)
