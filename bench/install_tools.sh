#!/usr/bin/env bash
# Tools for `make bench`, from Debian: wrk (load generator), nginx (proxy part),
# pgbench (database baseline; postgresql-client). Installs only what is missing, and only
# as root; otherwise says what to install. nginx is optional: without it bench/run.py
# skips the proxy part with a message.
set -u

missing=()
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v pgbench >/dev/null 2>&1 || missing+=(postgresql-client)
want_nginx=0
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || want_nginx=1

if [ ${#missing[@]} -eq 0 ] && [ $want_nginx -eq 0 ]; then
    exit 0
fi

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    [ ${#missing[@]} -gt 0 ] && echo "bench: please install ${missing[*]} (Debian: apt-get install ${missing[*]})" >&2
    [ $want_nginx -eq 1 ] && echo "bench: nginx is not installed: the proxy part will be skipped" >&2
    [ ${#missing[@]} -eq 0 ]
    exit
fi

export DEBIAN_FRONTEND=noninteractive
echo "bench: installing ${missing[*]} $([ $want_nginx -eq 1 ] && echo nginx-light) with apt-get"
apt-get update -qq >/dev/null || echo "bench: apt-get update failed" >&2
if [ ${#missing[@]} -gt 0 ]; then
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || {
        echo "bench: could not install ${missing[*]}" >&2
        exit 1
    }
fi
if [ $want_nginx -eq 1 ]; then
    # nginx-light has the proxy and upstream modules; the package's own service is not used
    # (bench/run.py starts nginx with its own config on loopback ports).
    apt-get install -y -qq --no-install-recommends nginx-light >/dev/null \
        || apt-get install -y -qq --no-install-recommends nginx >/dev/null \
        || echo "bench: could not install nginx: the proxy part will be skipped" >&2
fi
exit 0
