# Wallet: `make run` starts everything on the embedded default (a real PostgreSQL
# from a pip wheel, its data in var/postgres, and a filesystem Celery broker; with
# DATABASE_URL set, that server instead); `make test` runs the whole suite on
# PostgreSQL + Redis.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

# The test suite's services (override to point elsewhere).
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/wallet
TEST_REDIS_URL ?= redis://127.0.0.1:6379/14
TEST_ENV := DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) \
	SECRET_KEY=test-only-secret-key-0123456789abcdefghijklmnopqrstuvwxyz \
	DEBUG=false ALLOWED_HOSTS=testserver,localhost,127.0.0.1 EMAIL_URL=consolemail:// \
	JWT_SIGNING_KEY=test-only-jwt-signing-key-0123456789abcdefghijklmnopqrstuvwxyz

.PHONY: install lock run serve test e2e hostile audit lint format typecheck messages clean bench

# Installs the dev lock (runtime + test/dev tools, every package pinned with its
# hashes; pip refuses anything else). The Dockerfile installs requirements.lock.
install: $(VENV)/.installed

$(VENV)/.installed: requirements-dev.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check --require-hashes -r requirements-dev.lock
	touch $@

# Regenerate the locks after editing requirements.txt or requirements-dev.txt, with
# pip-tools in a venv of its own (var/lock-venv): the dev lock is constrained to the
# runtime lock, so both install the same versions of what they share.
PIP_COMPILE := var/lock-venv/bin/pip-compile --quiet --generate-hashes --allow-unsafe \
	--strip-extras --no-emit-index-url --no-emit-find-links
lock:
	test -x var/lock-venv/bin/pip-compile || { $(PYTHON) -m venv var/lock-venv && \
		var/lock-venv/bin/pip install -q pip-tools==7.6.2; }
	$(PIP_COMPILE) -o requirements.lock requirements.txt
	$(PIP_COMPILE) -c requirements.lock -o requirements-dev.lock requirements-dev.txt

# wallet_project/embedded.py starts PostgreSQL (initdb on the first run only), runs
# `make serve` against it and stops the server when that ends (Ctrl-C included).
run: install
	@mkdir -p var
	@DEBUG=$${DEBUG:-true} $(BIN)/python -m wallet_project.embedded -- \
		$(MAKE) --no-print-directory serve

# What `make run` runs once its database is up: migrations, then web, worker and
# beat (honcho + Procfile).
serve:
	DEBUG=$${DEBUG:-true} $(BIN)/python manage.py migrate --noinput
	@echo
	@echo "  Wallet is starting on http://$(HOST):$(PORT)"
	@echo "    API docs (Swagger): http://$(HOST):$(PORT)/api/docs/"
	@echo "    API docs (ReDoc):   http://$(HOST):$(PORT)/api/redoc/"
	@echo "    OpenAPI schema:     http://$(HOST):$(PORT)/api/schema/"
	@echo "    Admin:              http://$(HOST):$(PORT)/admin/"
	@echo "  Create an operator account (in another terminal):"
	@echo "    DEBUG=true $(BIN)/python manage.py createsuperuser"
	@echo "  Emails (sign-up codes) are printed here, by the worker."
	@echo
	PATH="$(CURDIR)/$(BIN):$$PATH" DEBUG=$${DEBUG:-true} HOST=$(HOST) PORT=$(PORT) \
		honcho start -f Procfile

test: install lint
	@$(TEST_ENV) $(BIN)/python -m pytest -p no:cacheprovider $(PYTEST_ARGS)

# Only the end-to-end tests: real Nginx, Gunicorn (gevent), Celery worker and beat on
# loopback (tests/stack.py). `make test` runs them too.
e2e: install
	@$(TEST_ENV) $(BIN)/python -m pytest -p no:cacheprovider -m e2e tests/e2e $(PYTEST_ARGS)

# Only the hostile suite (tests/hostile): schemathesis, faults under load on its own
# PostgreSQL cluster and Redis, attacks, the bad-input table. `make test` runs it
# too. Figures: var/hostile/*.json.
hostile: install
	@$(TEST_ENV) $(BIN)/python -m pytest -p no:cacheprovider -m hostile tests/hostile $(PYTEST_ARGS)

# Known vulnerabilities in the locked runtime requirements (needs the PyPI/OSV
# vulnerability API; --strict fails when a package could not be checked).
audit: install
	$(BIN)/pip-audit --strict --progress-spinner off --require-hashes -r requirements.lock

# lint-imports holds the layers (accounts -> wallets -> transactions -> fees -> API
# modules) and forbids import cycles: the contracts are in pyproject.toml.
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(MAKE) --no-print-directory typecheck

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# mypy + django-stubs (pyproject.toml [tool.mypy]; django-money's fields are typed in
# typings/): strict (every def annotated) in the ledger, fees and the API modules.
# `make lint` runs it. The settings need no service: DEBUG=true is all they read here.
typecheck: install
	DEBUG=true $(BIN)/mypy accounts wallets transactions fees wallet_project

# The benchmark: Nginx -> Gunicorn (gevent) -> PostgreSQL/Redis on loopback under wrk,
# next to the database's floor (pgbench) and Django's (a bare view); ~10 minutes.
# Prints one table, writes var/bench/*.json. BENCH_SECONDS=5 for a quick try; see
# bench/run.py for the other knobs. Run it on a quiet machine.
BENCH_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/wallet_bench
BENCH_REDIS_URL ?= redis://127.0.0.1:6379/8
bench: install
	@command -v wrk >/dev/null && command -v pgbench >/dev/null && command -v nginx >/dev/null \
		&& command -v pgbouncer >/dev/null \
		|| sudo -n apt-get install -y wrk postgresql-client nginx-light pgbouncer \
		|| apt-get install -y wrk postgresql-client nginx-light pgbouncer
	BENCH_DATABASE_URL=$(BENCH_DATABASE_URL) BENCH_REDIS_URL=$(BENCH_REDIS_URL) \
		$(BIN)/python -m bench.run

# Regenerate and compile the translation catalogs (needs GNU gettext).
messages: install
	DEBUG=true $(BIN)/python manage.py makemessages -l ru --no-location
	DEBUG=true $(BIN)/python manage.py compilemessages

# Deletes the embedded database too (not while `make run` is running).
clean:
	@! { test -f var/postgres/postmaster.pid && \
		kill -0 "$$(head -1 var/postgres/postmaster.pid)" 2>/dev/null; } || \
		{ echo "The embedded PostgreSQL is running (var/postgres): stop make run first."; exit 1; }
	rm -rf var/celery var/postgres var/postgres.initdb var/postgres.log
