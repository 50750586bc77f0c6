"""How many web workers this machine can run, and whether PostgreSQL can take
their connections.

gunicorn.conf.py loads this file by its path (it must not import the project:
see there), so everything at module level is the standard library; the budget
check imports Django in a child process of its own:

    python -m wallet_project.capacity --web-workers 4

exits 0 (within budget), 3 (over: the message says what to change) or 2 (the
database could not be asked; the caller decides).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

OVER_BUDGET = 3
UNREACHABLE = 2


# --- CPUs: the cgroup's limit, not the host's cores ------------------------------------


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _own_cgroup_paths(root: Path) -> dict[str, str]:
    """controller list ("" for cgroup v2) -> this process's cgroup path, from
    /proc/self/cgroup ("0::/a/b" on v2, "4:cpu,cpuacct:/a/b" on v1)."""
    paths = {}
    for line in (_read(root / "proc/self/cgroup") or "").splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            paths[parts[1]] = parts[2]
    return paths


def _candidate_dirs(mount: Path, path: str) -> list[Path]:
    """The cgroup's directory under `mount` and each parent up to the mount: a
    limit anywhere above applies too. In a container the path is often the
    host's and absent under the container's mount, whose root is its cgroup."""
    dirs = [mount]
    current = mount
    for part in [p for p in path.split("/") if p]:
        current = current / part
        dirs.append(current)
    return [d for d in dirs if d.is_dir()]


def _v2_limit(root: Path, path: str) -> float | None:
    mount = root / "sys/fs/cgroup"
    limits = []
    for directory in _candidate_dirs(mount, path):
        fields = (_read(directory / "cpu.max") or "").split()
        if len(fields) == 2 and fields[0] != "max":
            quota, period = int(fields[0]), int(fields[1])
            if quota > 0 and period > 0:
                limits.append(quota / period)
    return min(limits) if limits else None


def _v1_limit(root: Path, paths: dict[str, str]) -> float | None:
    path = next(
        (p for controllers, p in paths.items() if "cpu" in controllers.split(",")),
        "/",
    )
    limits = []
    for name in ("cpu,cpuacct", "cpuacct,cpu", "cpu"):
        mount = root / "sys/fs/cgroup" / name
        for directory in _candidate_dirs(mount, path):
            quota = _read(directory / "cpu.cfs_quota_us")
            period = _read(directory / "cpu.cfs_period_us")
            if quota and period and int(quota) > 0 and int(period) > 0:
                limits.append(int(quota) / int(period))
        if limits:
            break
    return min(limits) if limits else None


def cgroup_cpu_limit(root: Path | str = "/") -> float | None:
    """The CPUs this process's cgroup may use (cgroup v2 `cpu.max`, v1 CFS quota
    and period), e.g. 1.5; None when there is no limit or no cgroup."""
    root = Path(root)
    paths = _own_cgroup_paths(root)
    if (root / "sys/fs/cgroup/cgroup.controllers").exists():
        return _v2_limit(root, paths.get("", "/"))
    return _v1_limit(root, paths)


def default_web_workers(root: Path | str = "/") -> int:
    """One gevent worker per CPU this process may really use: the CPUs it may run
    on (affinity, cpusets), capped by the cgroup's quota rounded up."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    limit = cgroup_cpu_limit(root)
    if limit is not None:
        cpus = min(cpus, math.ceil(limit))
    return max(1, cpus)


# --- Connections: the budget against the server's max_connections ----------------------


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name) or default)


def connection_budget(*, web_workers: int) -> dict[str, int]:
    """The connections the processes of one deployment may hold at once, from the
    same environment they start with: each web worker's pool, each Celery worker
    process (the task worker and the email worker), beat, and a reserve for
    migrations, shells and operator commands."""
    pooled = os.environ.get("DATABASE_POOL", "true").lower() in ("1", "true", "yes")
    per_web_worker = (
        _env_int("DATABASE_POOL_MAX", 20)
        if pooled
        # Without the pool every concurrent request (greenlet) opens its own.
        else _env_int("GUNICORN_WORKER_CONNECTIONS", 1000)
    )
    return {
        "web": web_workers * per_web_worker,
        "worker": _env_int("CELERY_CONCURRENCY", 2),
        "email-worker": _env_int("CELERY_EMAIL_CONCURRENCY", 1),
        "beat": 1,
        "reserved": _env_int("DATABASE_RESERVED_CONNECTIONS", 5),
    }


def _server_limit() -> tuple[int, int]:
    """(max_connections, connections reserved for superusers and roles with
    pg_use_reserved_connections) of the server in DATABASE_URL."""
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "wallet_project.settings")
    os.environ["DATABASE_POOL"] = "false"  # one plain connection, not a pool
    django.setup()
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT current_setting('max_connections')::int, "
            "current_setting('superuser_reserved_connections')::int "
            "+ COALESCE(current_setting('reserved_connections', true), '0')::int"
        )
        max_connections, reserved = cursor.fetchone()
    connection.close()
    return max_connections, reserved


def check(web_workers: int) -> int:
    budget = connection_budget(web_workers=web_workers)
    needed = sum(budget.values())
    try:
        max_connections, reserved = _server_limit()
    except Exception as exc:
        print(f"connection budget not checked: {exc}", file=sys.stderr)
        return UNREACHABLE
    available = max_connections - reserved
    parts = ", ".join(f"{name} {count}" for name, count in budget.items())
    if needed > available:
        print(
            f"Refusing to start: the processes may open {needed} database "
            f"connections ({parts}; web = WEB_CONCURRENCY {web_workers} x "
            f"DATABASE_POOL_MAX), but PostgreSQL allows {available} "
            f"(max_connections {max_connections} - {reserved} reserved). Lower "
            "WEB_CONCURRENCY or DATABASE_POOL_MAX, or raise max_connections.",
            file=sys.stderr,
        )
        return OVER_BUDGET
    print(f"connection budget: {needed} of {available} ({parts})")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--web-workers", type=int, required=True)
    args = parser.parse_args(argv)
    return check(args.web_workers)


if __name__ == "__main__":
    sys.exit(main())
