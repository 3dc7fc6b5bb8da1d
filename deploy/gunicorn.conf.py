"""gunicorn settings for both services (one image, two commands):

    gunicorn -c deploy/gunicorn.conf.py 'auth_server:create_app()'   # PORT=8888
    gunicorn -c deploy/gunicorn.conf.py 'call_api:create_app()'      # PORT=8889

Workers from ``WEB_CONCURRENCY`` (default 2), threads from ``GUNICORN_THREADS``, the worker
class from ``GUNICORN_WORKER_CLASS`` (``gthread`` or ``sync``).
SIGTERM stops accepting connections and lets in-flight requests finish for
``graceful_timeout`` seconds. The apps log one JSON line per request themselves (without
query strings, which may carry tokens), so gunicorn's access log stays off.
"""

import os
import shutil
import tempfile

bind = os.environ.get("BIND", f"0.0.0.0:{os.environ.get('PORT', '8000')}")
# A fixed default: cpu_count() sees the host, not a container's CPU limit.
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
# gthread (the default) serves long polls (the dialer's POST /dialer/poll) without tying up a
# process; sync costs less CPU per request (docs/PERFORMANCE.md, "Issue 14: results"):
# docs/OPERATIONS.md says which service should run which.
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "gthread")
if worker_class not in ("gthread", "sync"):
    raise SystemExit(f"GUNICORN_WORKER_CLASS must be gthread or sync, not {worker_class!r}")
if worker_class == "sync":
    threads = 1  # gunicorn would silently run gthread for a sync worker with threads > 1
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "20"))
keepalive = 5
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "0"))
max_requests_jitter = max_requests // 10

# Request size limits (bodies are limited by the apps' MAX_CONTENT_LENGTH).
limit_request_line = 8190
limit_request_fields = 64
limit_request_field_size = 16384

# X-Forwarded-* are handled by the apps (TRUSTED_PROXIES, werkzeug ProxyFix).
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")

# gunicorn >= 23 opens a control socket in $HOME, read-only in containers.
control_socket_disable = True

accesslog = None
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOGLEVEL", "info")

# Prometheus multi-process mode: every worker writes its counters to this folder.
if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="clickcall-prom-")
_prom_dir = os.environ["PROMETHEUS_MULTIPROC_DIR"]


def on_starting(server):  # noqa: ARG001
    os.makedirs(_prom_dir, exist_ok=True)
    for name in os.listdir(_prom_dir):
        path = os.path.join(_prom_dir, name)
        if os.path.isfile(path):
            os.remove(path)


def child_exit(server, worker):  # noqa: ARG001
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):  # noqa: ARG001
    if _prom_dir.startswith(tempfile.gettempdir()) and "clickcall-prom-" in _prom_dir:
        shutil.rmtree(_prom_dir, ignore_errors=True)
