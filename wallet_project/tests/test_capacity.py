"""Web workers from the cgroup's CPU limit, and Gunicorn refusing to start when
the deployment's connections pass PostgreSQL's max_connections."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from wallet_project.capacity import cgroup_cpu_limit, default_web_workers


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


V2 = {"sys/fs/cgroup/cgroup.controllers": "cpuset cpu io memory pids\n"}


def test_cgroup_v2_cpu_max_is_the_limit(tmp_path):
    root = _tree(
        tmp_path,
        {
            **V2,
            "proc/self/cgroup": "0::/\n",
            "sys/fs/cgroup/cpu.max": "150000 100000\n",
        },
    )
    assert cgroup_cpu_limit(root) == 1.5


def test_cgroup_v2_without_a_quota_is_no_limit(tmp_path):
    root = _tree(
        tmp_path,
        {**V2, "proc/self/cgroup": "0::/\n", "sys/fs/cgroup/cpu.max": "max 100000\n"},
    )
    assert cgroup_cpu_limit(root) is None


def test_cgroup_v2_the_tightest_limit_on_the_way_up_applies(tmp_path):
    """A pod's limit of 4 CPUs, its container's of 2: the container gets 2; a
    sibling's limit is not ours."""
    root = _tree(
        tmp_path,
        {
            **V2,
            "proc/self/cgroup": "0::/kubepods/pod1/app\n",
            "sys/fs/cgroup/cpu.max": "max 100000\n",
            "sys/fs/cgroup/kubepods/pod1/cpu.max": "400000 100000\n",
            "sys/fs/cgroup/kubepods/pod1/app/cpu.max": "200000 100000\n",
            "sys/fs/cgroup/kubepods/pod2/cpu.max": "50000 100000\n",
        },
    )
    assert cgroup_cpu_limit(root) == 2.0


def test_cgroup_v2_inside_a_container_the_mount_root_is_its_cgroup(tmp_path):
    """/proc/self/cgroup names the host's path, which the container's mount does
    not have: its root's cpu.max is the container's limit."""
    root = _tree(
        tmp_path,
        {
            **V2,
            "proc/self/cgroup": "0::/system.slice/docker-abc.scope\n",
            "sys/fs/cgroup/cpu.max": "300000 100000\n",
        },
    )
    assert cgroup_cpu_limit(root) == 3.0


def test_cgroup_v1_cfs_quota_and_period(tmp_path):
    root = _tree(
        tmp_path,
        {
            "proc/self/cgroup": "12:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n",
            "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us": "250000\n",
            "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us": "100000\n",
        },
    )
    assert cgroup_cpu_limit(root) == 2.5


def test_cgroup_v1_quota_minus_one_is_no_limit(tmp_path):
    root = _tree(
        tmp_path,
        {
            "proc/self/cgroup": "4:cpu,cpuacct:/\n",
            "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us": "-1\n",
            "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us": "100000\n",
        },
    )
    assert cgroup_cpu_limit(root) is None


def test_no_cgroup_at_all_is_no_limit(tmp_path):
    assert cgroup_cpu_limit(tmp_path) is None


def test_default_workers_follow_the_cgroup_limit_rounded_up(tmp_path):
    cpus = len(os.sched_getaffinity(0))
    half = _tree(
        tmp_path / "half",
        {**V2, "proc/self/cgroup": "0::/\n", "sys/fs/cgroup/cpu.max": "50000 100000"},
    )
    assert default_web_workers(half) == 1
    many = _tree(
        tmp_path / "many",
        {**V2, "proc/self/cgroup": "0::/\n", "sys/fs/cgroup/cpu.max": "6400000 100000"},
    )
    assert default_web_workers(many) == cpus  # never more than it may run on
    unlimited = tmp_path / "none"
    unlimited.mkdir()
    assert default_web_workers(unlimited) == cpus


def _server_url() -> str:
    db = connection.settings_dict  # the test database: it exists
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def _max_connections() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SHOW max_connections")
        return int(cursor.fetchone()[0])


def _gunicorn(env: dict[str, str]) -> subprocess.CompletedProcess:
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "gunicorn", "wallet_project.wsgi"),
            *("-c", str(settings.BASE_DIR / "gunicorn.conf.py")),
        ],
        cwd=settings.BASE_DIR,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = process.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # it started: the check failed
        out, err = process.communicate()
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


@pytest.mark.django_db
def test_gunicorn_refuses_to_start_past_the_servers_max_connections():
    """5 workers x a pool of 30 = 150 connections (+ Celery, beat, the reserve)
    against the real server's max_connections: Gunicorn exits with the figures
    before it boots a worker."""
    max_connections = _max_connections()
    pool = max_connections // 5 + 10
    result = _gunicorn(
        {
            "DATABASE_URL": _server_url(),
            "WEB_CONCURRENCY": "5",
            "DATABASE_POOL_MAX": str(pool),
            "GUNICORN_BIND": "127.0.0.1:0",
            "GUNICORN_CONTROL_SOCKET": "off",
            "LOG_FORMAT": "text",
        }
    )
    assert result.returncode == 3, result.stderr
    assert "Refusing to start" in result.stderr
    assert f"max_connections {max_connections}" in result.stderr
    assert "WEB_CONCURRENCY 5 x DATABASE_POOL_MAX" in result.stderr
    assert "Booting worker" not in result.stderr


@pytest.mark.django_db
def test_the_budget_check_passes_within_max_connections():
    result = subprocess.run(
        [sys.executable, "-m", "wallet_project.capacity", "--web-workers", "2"],
        cwd=settings.BASE_DIR,
        env={**os.environ, "DATABASE_URL": _server_url(), "DATABASE_POOL_MAX": "8"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("connection budget: 25 of ")
