"""The deployment files say what the design says. There is no Docker engine here, so
docker-compose.yml and the Dockerfile are checked as data; nginx.conf is checked
against its template, and by `nginx -t`."""

import getpass
import grp
import os
import re
import secrets
import subprocess
import sys

import yaml
from django.conf import settings

from tests.stack import COMPOSE_NGINX, NGINX_BINARY, REPO, render_nginx_conf

COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
APP_SERVICES = ("web", "worker", "beat")


def _command(service: str) -> str:
    command = SERVICES[service].get("command", "")
    return command if isinstance(command, str) else " ".join(command)


def test_compose_runs_the_designed_services():
    assert set(SERVICES) == {
        "nginx",
        "web",
        "worker",
        "beat",
        "db",
        "redis",
        "mailpit",
        "migrate",
        "pgbouncer",
        "pgbouncer-replica",
        "db-replica",
    }
    assert SERVICES["nginx"]["ports"] == ["${WALLET_HTTP_PORT:-8080}:8080"]
    assert _command("web").startswith(
        "gunicorn wallet_project.wsgi -c gunicorn.conf.py"
    )
    assert "celery -A wallet_project worker" in _command("worker")
    assert "celery -A wallet_project beat" in _command("beat")
    assert SERVICES["db"]["image"] == "postgres:16"
    assert SERVICES["redis"]["image"].startswith("redis:7")
    assert SERVICES["mailpit"]["image"].startswith("axllent/mailpit")
    assert (
        SERVICES["web"]["environment"]["EMAIL_URL"]
        == "${EMAIL_URL:-smtp://mailpit:1025}"
    )


def test_compose_applies_migrations_in_one_service_before_the_others():
    migrating = [name for name in SERVICES if "manage.py migrate" in _command(name)]
    assert migrating == ["migrate"]
    assert SERVICES["migrate"]["restart"] == "no"
    for name in APP_SERVICES:
        depends_on = SERVICES[name]["depends_on"]
        assert depends_on["migrate"] == {"condition": "service_completed_successfully"}
        assert depends_on["db"] == {"condition": "service_healthy"}
        assert depends_on["redis"] == {"condition": "service_healthy"}
    assert SERVICES["nginx"]["depends_on"] == {"web": {"condition": "service_healthy"}}
    for name in ("db", "redis", "nginx"):
        assert SERVICES[name]["healthcheck"]["test"]


def test_compose_volumes_for_database_static_and_media():
    assert {"pgdata", "static", "media"} <= set(COMPOSE["volumes"])
    assert "pgdata:/var/lib/postgresql/data" in SERVICES["db"]["volumes"]
    nginx_volumes = SERVICES["nginx"]["volumes"]
    assert f"static:{COMPOSE_NGINX['static_root']}:ro" in nginx_volumes
    assert f"media:{COMPOSE_NGINX['media_root']}:ro" in nginx_volumes
    assert "./nginx/nginx.conf:/etc/nginx/nginx.conf:ro" in nginx_volumes
    assert f"./nginx/proxy.conf:{COMPOSE_NGINX['proxy_params']}:ro" in nginx_volumes
    assert "media:/app/media" in SERVICES["web"]["volumes"]
    assert "static:/app/staticfiles" in SERVICES["migrate"]["volumes"]


def test_compose_web_is_reached_only_through_nginx():
    web = SERVICES["web"]
    assert "ports" not in web
    assert web["environment"]["GUNICORN_BIND"] == "0.0.0.0:8000"
    assert COMPOSE_NGINX["upstream"] == "web:8000"
    assert web["environment"]["DATABASE_POOL"] == "true"
    assert web["environment"]["NUM_PROXIES"] == "${NUM_PROXIES:-1}"


def test_compose_scales_out_through_pgbouncer_and_a_replica():
    """The app reaches PostgreSQL through PgBouncer in transaction mode (a pinned
    image), reads what the router allows from the replica, migrates straight on
    the primary, and does not wait for the replica to start."""
    for name in ("pgbouncer", "pgbouncer-replica"):
        image = SERVICES[name]["image"]
        assert image.startswith("edoburu/pgbouncer:v1.")
        assert not image.endswith(":latest")
        assert SERVICES[name]["environment"]["POOL_MODE"] == "transaction"
    assert SERVICES["pgbouncer"]["environment"]["DB_HOST"] == "db"
    assert SERVICES["pgbouncer-replica"]["environment"]["DB_HOST"] == "db-replica"
    assert "pg_basebackup -h db" in _command("db-replica")
    for name in APP_SERVICES:
        environment = SERVICES[name]["environment"]
        assert "@pgbouncer:5432/" in environment["DATABASE_URL"]
        assert environment["DATABASE_POOLER"] == "pgbouncer"
        assert "@pgbouncer-replica:5432/" in environment["DATABASE_REPLICA_URL"]
        assert "db-replica" not in SERVICES[name]["depends_on"]
    migrate = SERVICES["migrate"]["environment"]
    assert "@db:5432/" in migrate["DATABASE_URL"]
    assert migrate["DATABASE_POOLER"] == ""


def test_compose_secrets_have_no_defaults():
    environment = SERVICES["web"]["environment"]
    assert environment["SECRET_KEY"] == "${SECRET_KEY:?set SECRET_KEY in .env}"
    assert environment["DEBUG"] == "false"
    assert ":?" in SERVICES["db"]["environment"]["POSTGRES_PASSWORD"]


def test_dockerfile_is_slim_non_root_with_static_and_healthcheck():
    dockerfile = (REPO / "Dockerfile").read_text()
    instructions = [
        line.split(None, 1)
        for line in re.sub(r"\\\n", " ", dockerfile).splitlines()
        if line and not line.startswith("#") and not line.startswith(" ")
    ]
    names = [name for name, _ in instructions]
    assert instructions[0] == ["FROM", "python:3.11-slim"]
    user = [args for name, args in instructions if name == "USER"]
    assert user == ["wallet"]
    assert names.index("USER") < names.index("CMD")
    assert "manage.py collectstatic --noinput" in dockerfile
    healthcheck = next(args for name, args in instructions if name == "HEALTHCHECK")
    assert "http://127.0.0.1:8000/healthz" in healthcheck
    assert "gunicorn.conf.py" in dict(instructions)["CMD"]


def test_nginx_conf_is_the_rendered_template():
    """nginx/nginx.conf (what Compose mounts) never drifts from the template the
    end-to-end tests run; regenerate with `python -m tests.stack nginx-conf`."""
    assert (REPO / "nginx" / "nginx.conf").read_text() == render_nginx_conf(
        **COMPOSE_NGINX
    )


def test_nginx_accepts_the_rendered_config(tmp_path):
    tmp_path.chmod(0o755)
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        render_nginx_conf(
            **{
                **COMPOSE_NGINX,
                "user": f"{getpass.getuser()} {grp.getgrgid(os.getgid()).gr_name}",
                "listen": "127.0.0.1:8080",
                "upstream": "127.0.0.1:8000",
                "temp_dir": str(tmp_path),
                "pid_file": str(tmp_path / "nginx.pid"),
                "error_log": str(tmp_path / "error.log"),
                "access_log": str(tmp_path / "access.log"),
                "proxy_params": str(REPO / "nginx" / "proxy.conf"),
            }
        )
    )
    result = subprocess.run(
        [
            *(NGINX_BINARY, "-t", "-p", str(tmp_path)),
            *("-e", str(tmp_path / "error.log"), "-c", str(conf)),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    text = conf.read_text()
    assert "limit_req_status 429;" in text
    assert re.search(r"location /api/v1/auth/ \{\s+limit_req zone=wallet_auth", text)


def _variables_read_by_the_code() -> set[str]:
    names = set()
    settings_source = (REPO / "wallet_project" / "settings.py").read_text()
    names |= set(
        re.findall(r"env(?:\.\w+)?\(\s*\"([A-Z][A-Z0-9_]*)\"", settings_source)
    )
    names |= {f"THROTTLE_{scope.upper()}" for scope in settings._THROTTLE_RATES}
    gunicorn_source = (REPO / "gunicorn.conf.py").read_text()
    names |= set(
        re.findall(r"os\.environ(?:\.get)?[\[(]\"([A-Z][A-Z0-9_]*)\"", gunicorn_source)
    )
    names |= set(
        re.findall(r"os\.environ\.setdefault\(\"([A-Z][A-Z0-9_]*)\"", gunicorn_source)
    )
    return names


def test_env_example_lists_every_variable():
    listed = set(
        re.findall(
            r"^#? ?([A-Z][A-Z0-9_]*)=", (REPO / ".env.example").read_text(), re.M
        )
    )
    read = _variables_read_by_the_code()
    assert "DATABASE_URL" in read  # the scan itself works
    assert read - listed == set()
    compose_text = (REPO / "docker-compose.yml").read_text()
    interpolated = set(re.findall(r"(?<!\$)\$\{([A-Z][A-Z0-9_]*)", compose_text))
    assert interpolated - listed == set()


def test_check_deploy_is_clean_for_production_settings():
    env = {
        "PATH": os.environ["PATH"],
        "DJANGO_SETTINGS_MODULE": "wallet_project.settings",
        "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "BEHIND_TLS_PROXY": "true",
        "ALLOWED_HOSTS": "wallet.example.com",
        "DATABASE_URL": os.environ.get("DATABASE_URL", ""),
        "REDIS_URL": os.environ.get("REDIS_URL", ""),
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout
