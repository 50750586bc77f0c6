# Wallet: one image for every Python process (web, worker, beat, migrate); see
# docker-compose.yml for how they are started.
FROM python:3.11.15-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_SETTINGS_MODULE=wallet_project.settings \
    STATIC_ROOT=/app/staticfiles \
    MEDIA_ROOT=/app/media \
    GUNICORN_BIND=0.0.0.0:8000

RUN groupadd --system --gid 10001 wallet \
    && useradd --system --uid 10001 --gid wallet --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin wallet

WORKDIR /app

# Statement PDFs (transactions/statement_pdf.py) are drawn with DejaVu Sans (Cyrillic
# included): Debian's fonts-dejavu-core, at STATEMENT_PDF_FONT_DIR's default path.
RUN apt-get update \
    && apt-get install -y --no-install-recommends fonts-dejavu-core \
    && rm -rf /var/lib/apt/lists/* \
    && test -f /usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf

# Dependencies first: this layer is rebuilt only when the lock changes. Every
# package, transitive ones included, is pinned with its hashes (requirements.lock,
# `make lock`): pip refuses anything else. (psycopg[binary], gevent and Pillow ship
# manylinux wheels: no compiler needed.)
COPY requirements.lock .
RUN pip install --require-hashes -r requirements.lock

# The code belongs to root: the app user can read it, not change it.
COPY . .

# Static files are collected into the image (Compose's `migrate` service copies
# them into the volume Nginx serves). The key, the database and mail URLs only satisfy
# settings at build time (collectstatic connects to no database).
RUN DEBUG=false SECRET_KEY=collectstatic-at-build-time-only \
        DATABASE_URL=postgres://collectstatic-at-build-time-only/none \
        EMAIL_URL=consolemail:// \
        python manage.py collectstatic --noinput \
    && mkdir -p /app/media /app/var \
    && chown -R wallet:wallet /app/staticfiles /app/media /app/var

USER wallet

EXPOSE 8000

HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]

CMD ["gunicorn", "wallet_project.wsgi", "-c", "gunicorn.conf.py"]
