# syntax=docker/dockerfile:1
#
# One image for both ClickCall services; the command picks the service:
#
#   docker run … clickcall                       # auth server: gunicorn on $PORT (8888)
#   docker run … -e PORT=8889 clickcall gunicorn -c deploy/gunicorn.conf.py 'call_api:create_app()'
#   docker run … clickcall auth | call           # migrate first, then serve (deploy/entrypoint.sh)
#   docker run … clickcall auth-server init-db   # any CLI command (auth-server, call-api)
#
# No HEALTHCHECK here: the two services answer on different ports and one-off commands use
# the same image. docker-compose.yml and orchestrators probe GET /healthz (and /readyz).

# ---------------------------------------------------------------------------------------
# builder: the project and its dependencies in a virtualenv (wheels only, no compiler).
FROM python:3.11-slim-bookworm AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

RUN python -m venv /opt/venv

WORKDIR /src
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY auth_server ./auth_server
COPY call_api ./call_api

RUN pip install --no-cache-dir .

# The wheel must carry the Alembic files that are not Python (alembic.ini, script.py.mako);
# copy any that the package data left out, then prove the migrations load by rendering
# them as SQL (offline: no database needed).
RUN site="$(python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')" \
    && for pkg in auth_server call_api; do \
         for f in alembic.ini script.py.mako; do \
           [ -f "$site/$pkg/migrations/$f" ] || cp "$pkg/migrations/$f" "$site/$pkg/migrations/$f"; \
         done; \
       done \
    && export CLICKCALL_VAR_DIR=/tmp/build-check \
    && AUTH_DATABASE_URL=postgresql://check@localhost/check auth-server db upgrade --sql > /dev/null \
    && CALL_DATABASE_URL=postgresql://check@localhost/check call-api db upgrade --sql > /dev/null \
    && rm -rf /tmp/build-check

# ---------------------------------------------------------------------------------------
# runtime: the virtualenv, the gunicorn settings and the entrypoint; runs as a non-root user.
FROM python:3.11-slim-bookworm AS runtime

LABEL org.opencontainers.image.title="clickcall" \
      org.opencontainers.image.description="ClickCall auth server (8888) and call API (8889)"

ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    CLICKCALL_VAR_DIR=/var/lib/clickcall

# uid/gid 10001: numeric, so that Kubernetes' runAsNonRoot can verify it. The keys folder
# exists in the image with the right owner and mode so that a fresh volume mounted on it
# inherits them.
RUN groupadd --system --gid 10001 clickcall \
    && useradd --system --uid 10001 --gid clickcall --no-create-home \
         --home-dir /var/lib/clickcall --shell /usr/sbin/nologin clickcall \
    && install -d -o clickcall -g clickcall -m 0700 /var/lib/clickcall /var/lib/clickcall/keys

COPY --from=builder /opt/venv /opt/venv

WORKDIR /app
COPY deploy/gunicorn.conf.py deploy/entrypoint.sh ./deploy/

USER 10001:10001

EXPOSE 8888 8889

ENTRYPOINT ["sh", "/app/deploy/entrypoint.sh"]
CMD ["gunicorn", "-c", "deploy/gunicorn.conf.py", "auth_server:create_app()"]
