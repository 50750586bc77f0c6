"""The deployment files say what the design says. There is no Docker engine here, so
docker-compose.yml and the Dockerfile are checked as data; nginx.conf is checked
against its template, and by `nginx -t`."""

import ast
import getpass
import grp
import importlib.resources
import json
import os
import re
import secrets
import subprocess
import sys

import jsonschema
import pytest
import yaml
from django.conf import settings

from tests.stack import (
    COMPOSE_NGINX,
    NGINX_BINARY,
    REAL_IP_SCRIPT,
    REPO,
    render_nginx_conf,
    write_real_ip_conf,
)
from wallet_project import embedded

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
        "email-worker",
        "beat",
        "db",
        "redis",
        "mailpit",
        "migrate",
        "pgbouncer",
        "pgbouncer-replica",
        "db-replica",
        "prometheus",
        "grafana",
    }
    assert SERVICES["nginx"]["ports"] == [
        "${WALLET_HTTP_BIND:-127.0.0.1}:${WALLET_HTTP_PORT:-8080}:8080"
    ]
    assert _command("web").startswith(
        "gunicorn wallet_project.wsgi -c gunicorn.conf.py"
    )
    assert "celery -A wallet_project worker -Q celery " in _command("worker")
    # Emails on a worker of their own: a fee run never delays a sign-up code.
    assert "celery -A wallet_project worker -Q email " in _command("email-worker")
    assert "celery -A wallet_project beat" in _command("beat")
    assert SERVICES["db"]["image"].startswith("postgres:16.")
    assert SERVICES["redis"]["image"].startswith("redis:7.")
    assert SERVICES["mailpit"]["image"].startswith("axllent/mailpit")


def test_compose_keeps_development_mail_out_of_production():
    """Mailpit (no login) runs only with `--profile dev`, on loopback, at a pinned
    version; the app's EMAIL_URL has no default to fall back on."""
    mailpit = SERVICES["mailpit"]
    assert mailpit["profiles"] == ["dev"]
    assert re.fullmatch(r"axllent/mailpit:v\d+\.\d+\.\d+", mailpit["image"])
    assert mailpit["ports"] == ["127.0.0.1:${MAILPIT_UI_PORT:-8025}:8025"]
    email_url = SERVICES["web"]["environment"]["EMAIL_URL"]
    assert email_url.startswith("${EMAIL_URL:?"), email_url
    for name, service in SERVICES.items():
        assert "mailpit" not in service.get("depends_on", {}), name


def test_production_without_email_url_refuses_to_start():
    env = {
        "PATH": os.environ["PATH"],
        "DJANGO_SETTINGS_MODULE": "wallet_project.settings",
        "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "JWT_SIGNING_KEY": secrets.token_urlsafe(50),
        "DATABASE_URL": "postgres://nobody@127.0.0.1:1/none",
    }
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode != 0
    assert "Set the EMAIL_URL environment variable" in result.stderr
    with_it = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=REPO,
        env={**env, "EMAIL_URL": "smtp://mail.example.com:587"},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert with_it.returncode == 0, with_it.stderr


def test_compose_file_is_valid_against_the_compose_spec_schema():
    """The compose-spec JSON schema (as check-jsonschema vendors it, offline):
    a misspelt key or a wrong type fails here instead of at `docker compose up`."""
    schema = json.loads(
        (
            importlib.resources.files("check_jsonschema")
            / "builtin_schemas/vendor/compose-spec.json"
        ).read_text()
    )
    validator_class = jsonschema.validators.validator_for(schema)
    validator = validator_class(schema, format_checker=validator_class.FORMAT_CHECKER)
    errors = [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(COMPOSE)]
    assert errors == []
    # The check can fail: the same file with one misspelt key does.
    web = {**SERVICES["web"], "stop_grace_perod": "45s"}
    misspelt = {**COMPOSE, "services": {**SERVICES, "web": web}}
    assert not validator.is_valid(misspelt)


def test_compose_images_are_pinned_to_a_patch_release():
    images = {name: s["image"] for name, s in SERVICES.items() if "build" not in s}
    assert images.keys() == {
        *("nginx", "db", "db-replica", "redis", "mailpit"),
        *("pgbouncer", "pgbouncer-replica", "prometheus", "grafana"),
    }
    assert images["db-replica"] == images["db"]
    for name, image in images.items():
        # PostgreSQL numbers its releases MAJOR.MINOR (16.14 is a patch release).
        release = r"\d+\.\d+" if name.startswith("db") else r"v?\d+\.\d+\.\d+"
        assert re.search(rf":{release}(-[a-z0-9.]+)?$", image), (name, image)
    nginx_minor = int(re.search(r"nginx:1\.(\d+)\.", images["nginx"]).group(1))
    assert nginx_minor % 2 == 0, "Nginx's stable branches have even minor numbers"


def _seconds(duration: str) -> int:
    match = re.fullmatch(r"(?:(\d+)m)?(?:(\d+)s)?", duration)
    assert match and duration, duration
    return int(match.group(1) or 0) * 60 + int(match.group(2) or 0)


def test_compose_stops_web_and_worker_after_their_graceful_shutdown():
    """Docker's default 10 s before SIGKILL would cut Gunicorn's graceful
    timeout (and a Celery warm shutdown) short."""
    gunicorn = (REPO / "gunicorn.conf.py").read_text()
    graceful = int(
        re.search(r'"GUNICORN_GRACEFUL_TIMEOUT", "(\d+)"', gunicorn).group(1)
    )
    for name in ("web", "worker"):
        assert _seconds(SERVICES[name]["stop_grace_period"]) > graceful, name


def test_compose_database_healthcheck_asks_over_tcp():
    """pg_isready on the unix socket passes against the image's init-time server."""
    test = SERVICES["db"]["healthcheck"]["test"]
    assert test[0] == "CMD-SHELL"
    assert re.search(r"\bpg_isready -h 127\.0\.0\.1\b", test[1]), test


def test_compose_publishes_only_on_loopback_by_default():
    for name, service in SERVICES.items():
        for port in service.get("ports", []):
            assert re.match(r"(\$\{[A-Z_]+:-)?127\.0\.0\.1\b", port), (name, port)


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
    # Point-in-time recovery: WAL segments archived to a volume of their own.
    assert "walarchive:/wal-archive" in SERVICES["db"]["volumes"]
    assert "-c archive_mode=on" in _command("db")
    assert "cp %p /wal-archive/%f" in _command("db")
    nginx_volumes = SERVICES["nginx"]["volumes"]
    assert f"static:{COMPOSE_NGINX['static_root']}:ro" in nginx_volumes
    assert f"media:{COMPOSE_NGINX['media_root']}:ro" in nginx_volumes
    assert "./nginx/nginx.conf:/etc/nginx/nginx.conf:ro" in nginx_volumes
    assert f"./nginx/proxy.conf:{COMPOSE_NGINX['proxy_params']}:ro" in nginx_volumes
    assert (
        "./nginx/real-ip.sh:/docker-entrypoint.d/40-wallet-real-ip.sh:ro"
        in nginx_volumes
    )
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


def test_compose_prometheus_scrapes_web_and_workers_with_the_token():
    """Prometheus reads each process directly (never through Nginx, which
    refuses /metrics), sending the METRICS_TOKEN compose gives the apps."""
    config = yaml.safe_load((REPO / "deploy/prometheus/prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["wallet-web"]["dns_sd_configs"] == [
        {"names": ["web"], "type": "A", "port": 8000}
    ]
    assert jobs["wallet-worker"]["dns_sd_configs"][0]["names"] == [
        "worker",
        "email-worker",
    ]
    for job in jobs.values():
        assert (
            job["authorization"]["credentials_file"] == "/etc/prometheus/metrics_token"
        )
    assert COMPOSE["configs"]["metrics-token"]["content"] == (
        "${METRICS_TOKEN:?set METRICS_TOKEN in .env}"
    )
    assert SERVICES["web"]["environment"]["METRICS_TOKEN"] == (
        "${METRICS_TOKEN:?set METRICS_TOKEN in .env}"
    )
    for worker in ("worker", "email-worker"):
        environment = SERVICES[worker]["environment"]
        assert environment["METRICS_WORKER_PORT"] == "9808"
        assert (
            environment["METRICS_TOKEN"]
            == SERVICES["web"]["environment"]["METRICS_TOKEN"]
        )
        assert "ports" not in SERVICES[worker]
    assert "ports" not in SERVICES["prometheus"]
    grafana = SERVICES["grafana"]
    assert ":?" in grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD"]
    assert (
        "./deploy/grafana/dashboards:/var/lib/grafana/dashboards:ro"
        in grafana["volumes"]
    )


def test_nginx_never_routes_metrics():
    conf = (REPO / "nginx" / "nginx.conf").read_text()
    assert re.search(
        r"location = /metrics \{\s*default_type application/json;\s*return 404", conf
    )


def test_compose_secrets_have_no_defaults():
    environment = SERVICES["web"]["environment"]
    assert environment["SECRET_KEY"] == "${SECRET_KEY:?set SECRET_KEY in .env}"
    assert (
        environment["JWT_SIGNING_KEY"]
        == "${JWT_SIGNING_KEY:?set JWT_SIGNING_KEY in .env}"
    )
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
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", instructions[0][1])
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


def test_compose_nginx_trusts_the_proxies_it_is_told_of():
    nginx = SERVICES["nginx"]
    assert nginx["environment"]["TRUSTED_PROXIES"] == "${TRUSTED_PROXIES:-}"
    # The image runs /docker-entrypoint.d/*.sh only when they are executable.
    assert os.access(REAL_IP_SCRIPT, os.X_OK)


def test_real_ip_script_writes_one_trusted_range_per_line_and_refuses_junk(tmp_path):
    out = tmp_path / "real_ip.conf"
    write_real_ip_conf(out, "10.0.0.0/8, 192.168.1.7 fd00::/8")
    lines = [line for line in out.read_text().splitlines() if line[:1] != "#"]
    assert lines == [
        "set_real_ip_from 10.0.0.0/8;",
        "set_real_ip_from 192.168.1.7;",
        "set_real_ip_from fd00::/8;",
        "real_ip_header X-Forwarded-For;",
        "real_ip_recursive on;",
    ]
    write_real_ip_conf(out, "")
    assert "set_real_ip_from" not in out.read_text()
    with pytest.raises(subprocess.CalledProcessError) as refused:
        write_real_ip_conf(out, "10.0.0.0/8;include /etc/passwd")
    assert b"not an address or range" in refused.value.stderr
    assert "passwd" not in out.read_text()


def test_nginx_accepts_the_rendered_config(tmp_path):
    """Compose's config with only the paths and the user of this machine, and
    its upstream as an address: this machine's Nginx (1.22) neither knows
    `resolve` (1.27.3) nor the name `web`; Compose's text is checked below."""
    tmp_path.chmod(0o755)
    conf = tmp_path / "nginx.conf"
    write_real_ip_conf(tmp_path / "real_ip.conf", "172.16.0.0/12")
    conf.write_text(
        render_nginx_conf(
            **{
                **COMPOSE_NGINX,
                "user": f"{getpass.getuser()} {grp.getgrgid(os.getgid()).gr_name}",
                "listen": "127.0.0.1:8080",
                "real_ip_conf": str(tmp_path / "real_ip.conf"),
                "temp_dir": str(tmp_path),
                "pid_file": str(tmp_path / "nginx.pid"),
                "error_log": str(tmp_path / "error.log"),
                "access_log": str(tmp_path / "access.log"),
                "proxy_params": str(REPO / "nginx" / "proxy.conf"),
                "upstream": "127.0.0.1:8000",
                "upstream_resolve": "",
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
    compose = (REPO / "nginx" / "nginx.conf").read_text()
    assert "resolver 127.0.0.11 valid=10s" in compose
    assert re.search(
        r"upstream wallet_web \{\s+zone wallet_web 64k;\s+server web:8000 resolve;"
        r"\s+keepalive 64;",
        compose,
    )
    assert (
        "proxy_pass http://wallet_web;" in (REPO / "nginx" / "proxy.conf").read_text()
    )


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
        "JWT_SIGNING_KEY": secrets.token_urlsafe(50),
        "BEHIND_TLS_PROXY": "true",
        "ALLOWED_HOSTS": "wallet.example.com",
        "EMAIL_URL": "smtp://mail.example.com:587/?tls=True",
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


# --- Supply chain: hashed locks, what goes into the image ------------------------------


def _pins(path) -> dict[str, str]:
    """{normalized name: version} of the `name==version` lines of a requirements file
    (extras and comments dropped; -r lines skipped)."""
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if match := re.match(r"([A-Za-z0-9._-]+)(?:\[[^\]]*\])?==([^\s;\\]+)", line):
            pins[re.sub(r"[-_.]+", "-", match.group(1)).lower()] = match.group(2)
    return pins


def _locked(path) -> dict[str, list[str]]:
    """{normalized name==version: its hashes} of a pip-compile --generate-hashes lock."""
    entries: dict[str, list[str]] = {}
    current = None
    for line in path.read_text().splitlines():
        if line.startswith((" ", "\t")):
            if current and (found := re.search(r"--hash=(sha256:[0-9a-f]{64})", line)):
                entries[current].append(found.group(1))
        elif line and not line.startswith("#"):
            name, version = line.split(" ", 1)[0].split("==")
            current = f"{re.sub(r'[-_.]+', '-', name).lower()}=={version}"
            entries[current] = []
    return entries


RUNTIME_LOCK = REPO / "requirements.lock"
DEV_LOCK = REPO / "requirements-dev.lock"


def test_the_locks_pin_every_package_with_hashes():
    for lock in (RUNTIME_LOCK, DEV_LOCK):
        entries = _locked(lock)
        assert len(entries) > 40, lock
        unhashed = [name for name, hashes in entries.items() if not hashes]
        assert unhashed == [], lock


def test_the_locks_agree_with_the_requirements_they_were_compiled_from():
    """An edit of requirements*.txt without `make lock` fails here."""
    runtime = set(_locked(RUNTIME_LOCK))
    dev = set(_locked(DEV_LOCK))
    for name, version in _pins(REPO / "requirements.txt").items():
        assert f"{name}=={version}" in runtime, name
    for name, version in _pins(REPO / "requirements-dev.txt").items():
        assert f"{name}=={version}" in dev, name
    # The dev lock is compiled against the runtime lock: the same versions.
    assert runtime <= dev
    # honcho only runs `make run` (Procfile); production runs separate services.
    assert not any(entry.startswith("honcho==") for entry in runtime)
    assert any(entry.startswith("honcho==") for entry in dev)


def test_the_image_and_make_install_install_the_locks_with_hashes_required():
    dockerfile = re.sub(r"\\\n", " ", (REPO / "Dockerfile").read_text())
    assert "COPY requirements.lock ." in dockerfile
    installs = re.findall(r"^RUN .*pip install.*$", dockerfile, re.M)
    assert installs, dockerfile
    for install in installs:
        assert "--require-hashes -r requirements.lock" in install
    makefile = (REPO / "Makefile").read_text()
    # Into the project's venv: the dev lock, hashes required, nothing else.
    venv_installs = re.findall(r"\$\(BIN\)/pip install .*", makefile)
    assert venv_installs, makefile
    for install in venv_installs:
        assert "--require-hashes -r requirements-dev.lock" in install, install


def _dockerignore_excludes(path: str) -> bool:
    """Whether Docker leaves `path` (relative, slash-separated) out of the build
    context: the last .dockerignore pattern matching it or a parent wins."""
    rules = []
    for raw in (REPO / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").strip("/")
        regex = ""
        i = 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                regex, i = regex + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                regex, i = regex + ".*", i + 2
            elif pattern[i] == "*":
                regex, i = regex + "[^/]*", i + 1
            elif pattern[i] == "?":
                regex, i = regex + "[^/]", i + 1
            else:
                regex, i = regex + re.escape(pattern[i]), i + 1
        rules.append((re.compile(regex + r"\Z"), not negate))
    parts = path.split("/")
    for depth in range(1, len(parts) + 1):
        prefix = "/".join(parts[:depth])
        excluded = False
        for regex, excludes in rules:
            if regex.match(prefix):
                excluded = excludes
        if excluded:
            return True
    return False


def test_dockerignore_keeps_tests_bench_ci_docs_and_local_data_out_of_the_image():
    for path in (
        "tests/stack.py",
        "accounts/tests/test_api.py",
        "conftest.py",
        "bench/run.py",
        "fees/bench/seed_due_wallets.sql",
        ".ci/run",
        "docs/runbook.md",
        "README.md",
        "var/postgres/PG_VERSION",
        ".venv/bin/python",
        ".env",
        ".git/HEAD",
        "requirements-dev.lock",
        "accounts/__pycache__/models.cpython-311.pyc",
    ):
        assert _dockerignore_excludes(path), path
    for path in (
        "manage.py",
        "gunicorn.conf.py",
        "requirements.lock",
        "wallet_project/settings.py",
        "accounts/migrations/0001_initial.py",
        "static/wallet/admin.css",
        "templates/drf_spectacular/redoc.html",
        "locale/ru/LC_MESSAGES/django.mo",
        ".env.example",
    ):
        assert not _dockerignore_excludes(path), path


# --- .env.example shows the real defaults ----------------------------------------------


def _constant(node: ast.expr):
    """The value of a default written as a constant expression (24 * 3600, a list
    of strings, -1); anything else (a call, a name) raises ValueError."""
    allowed = (ast.Constant, ast.BinOp, ast.UnaryOp, ast.List, ast.Tuple)
    allowed += (ast.operator, ast.unaryop, ast.Load)
    if not all(isinstance(child, allowed) for child in ast.walk(node)):
        raise ValueError(ast.dump(node))
    code = compile(ast.Expression(node), "<default>", "eval")
    return eval(code, {"__builtins__": {}})  # noqa: S307 - constants only, checked above


def _defaults_in_code() -> dict[str, object]:
    """{variable: default} for every variable read with a constant default:
    env.<type>("NAME", default=...) in settings.py, os.environ.get("NAME", "...")
    in gunicorn.conf.py (its setdefault()s are the web process's overrides)."""
    defaults: dict[str, object] = {}
    for path in (REPO / "gunicorn.conf.py", REPO / "wallet_project" / "settings.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and node.args):
                continue
            name = node.args[0]
            if not (isinstance(name, ast.Constant) and isinstance(name.value, str)):
                continue
            func = ast.unparse(node.func)
            try:
                if func.startswith("env.") or func == "env":
                    keyword = next(k for k in node.keywords if k.arg == "default")
                    defaults[name.value] = _constant(keyword.value)
                elif func == "os.environ.get" and len(node.args) == 2:
                    defaults[name.value] = _constant(node.args[1])
            except (StopIteration, ValueError):
                continue
    return defaults


def _as_env(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ",".join(map(str, value))
    return str(value)


def _same(example: str, default: object) -> bool:
    if isinstance(default, int | float) and not isinstance(default, bool):
        try:
            return float(example) == float(default)
        except ValueError:
            return False
    return example == _as_env(default)


def test_env_example_shows_the_defaults_the_code_has():
    """A commented-out `# NAME=value` line in .env.example is the default: where the
    code's default is a constant, the two agree."""
    defaults = _defaults_in_code()
    assert defaults["FX_SPREAD_BPS"] == 50  # the scan itself works
    # Empty means "the embedded server's usual directory".
    assert embedded.resolve_data_dir(defaults["EMBEDDED_POSTGRES_DIR"]) == (
        REPO / "var" / "postgres"
    )
    defaults["EMBEDDED_POSTGRES_DIR"] = "var/postgres"
    assert defaults["GUNICORN_GRACEFUL_TIMEOUT"] == "30"
    assert defaults["RATE_MAX_AGE_SECONDS"] == 86400
    example = (REPO / ".env.example").read_text()
    # The value ends at two spaces (a remark may follow).
    shown = dict(re.findall(r"^# ([A-Z][A-Z0-9_]*)=(.*?)(?:  .*)?$", example, re.M))
    assert len(shown) > 50
    wrong = {
        name: (value, _as_env(defaults[name]))
        for name, value in shown.items()
        if name in defaults and not _same(value, defaults[name])
    }
    assert wrong == {}, "name: (.env.example, the code's default)"
    # Required ones are not commented out: nothing to fall back on.
    for name in ("SECRET_KEY", "EMAIL_URL", "POSTGRES_PASSWORD"):
        assert re.search(rf"^{name}=$", example, re.M), name
