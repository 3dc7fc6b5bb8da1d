#!/bin/sh
# Container entrypoint for both ClickCall services (one image, two commands).
#
#   entrypoint.sh auth   migrate the auth database (Alembic, `auth-server init-db`), create
#                        the first signing key with `auth-server keys rotate` if AUTH_KEYS_DIR
#                        holds none (refused with APP_ENV=production: provision the key
#                        yourself, see docs/OPERATIONS.md), then serve the auth server under
#                        gunicorn on PORT (default 8888)
#   entrypoint.sh call   migrate the calls database (`call-api init-db`), then serve the call
#                        API under gunicorn on PORT (default 8889)
#   entrypoint.sh CMD…   run CMD as given: the image's default `gunicorn …` (the auth server,
#                        no migration), `auth-server keys rotate`, `call-api expire-calls`, …
#
# `auth` and `call` suit a single instance (docker compose). With several replicas run the
# migrations once per release as a separate step and start the replicas with the plain
# gunicorn command, so that replicas never race each other on the schema or the keys.
set -eu

here="$(cd "$(dirname "$0")" && pwd)"

serve() {  # serve APP_MODULE DEFAULT_PORT
    PORT="${PORT:-$2}"
    export PORT
    exec gunicorn -c "$here/gunicorn.conf.py" "$1:create_app()"
}

has_signing_key() {  # has_signing_key DIR
    for pem in "$1"/*.pem; do
        [ -f "$pem" ] && return 0
    done
    return 1
}

case "${1:-}" in
    auth)
        # The same default as auth_server/config.py.
        keys_dir="${AUTH_KEYS_DIR:-${CLICKCALL_VAR_DIR:-var}/keys}"
        if ! has_signing_key "$keys_dir"; then
            if [ "${APP_ENV:-development}" = "production" ]; then
                echo "entrypoint: AUTH_KEYS_DIR=$keys_dir holds no signing key;" \
                    "APP_ENV=production never creates one on the fly." \
                    "Provision it first (docs/OPERATIONS.md, 'The first signing key')." >&2
                exit 1
            fi
            echo "entrypoint: no signing key in $keys_dir, creating one" >&2
            auth-server keys rotate
        fi
        auth-server init-db
        serve auth_server 8888
        ;;
    call)
        call-api init-db
        serve call_api 8889
        ;;
    "")
        echo "usage: entrypoint.sh auth | call | COMMAND [ARGS…]" >&2
        exit 64
        ;;
    *)
        PORT="${PORT:-8888}"
        export PORT
        exec "$@"
        ;;
esac
