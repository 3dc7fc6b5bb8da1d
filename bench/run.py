"""`make bench`: load-test both services under gunicorn against their baselines.

    .venv/bin/python bench/run.py            # full run (< 10 minutes on 2 cores)
    .venv/bin/python bench/run.py --quick    # short runs (< 2 minutes): for building/debugging
    .venv/bin/python bench/run.py --help     # workers, threads, connections, durations, …

What it does (docs/PERFORMANCE.md has the method and the latest numbers):

1. recreates a throwaway database pair (``clickcall_bench_auth``/``clickcall_bench_calls``)
   on the PostgreSQL of ``BENCH_POSTGRES_URL``, builds the schemas with the services'
   migrations and seeds clients, users, calls;
2. starts the auth server, the call API (which gets its keys from the auth server's JWKS)
   and a bare Flask app, each as ``gunicorn -c deploy/gunicorn.conf.py`` bound to
   127.0.0.1 with the same fixed worker and thread counts;
3. measures the baselines: (a) the bare Flask endpoint, (b) ``pgbench`` running the SQL of
   the call-creation transaction;
4. drives every scenario with ``wrk`` (Lua scripts in ``bench/lua``) and reads each
   worker's peak RSS;
5. runs the call scenarios again through nginx in front of one, then two replicas of each
   service;
6. ``lifecycle``: calls the simulator dialer answers and ends, their webhooks delivered by
   ``call-api worker`` to a receiver here, and what the outbox costs (``run_lifecycle``);
7. prints a table, checks the targets and writes ``bench/results.json``.

All traffic goes to 127.0.0.1; every run is bounded by its duration.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
LUA = BENCH / "lua"
sys.path.insert(0, str(ROOT))

from bench import seed as seeding  # noqa: E402

AUTH_DB = "clickcall_bench_auth"
CALLS_DB = "clickcall_bench_calls"
SCENARIOS = (
    "token_client_credentials",
    "token_code_exchange",
    "call_get",
    "call_list",
    "call_create_end",
    "call_at_limit",
    "jwks",
    "lifecycle",
)
CALL_SCENARIOS = ("call_get", "call_list", "call_create_end", "call_at_limit")
CALL_LIMIT = 2
# Issue 14's targets (ratios to the baselines measured in the same run).
TARGETS = {
    # scenario: (what, attribute, minimum)
    "token_client_credentials": (
        "token endpoint (client_credentials) ≥ 0.25× bare Flask",
        "ratio_flask",
        0.25,
    ),
    "call_get": ("authenticated GET /rest/call?token_call ≥ 0.5× bare Flask", "ratio_flask", 0.5),
    "call_list": ("GET /rest/call (list) ≥ 0.4× bare Flask", "ratio_flask", 0.4),
    "call_create_end": ("POST+PUT pairs ≥ 0.35× pgbench of the same SQL", "ratio_pg", 0.35),
}
P99_TARGET_MS = 50.0

T0 = time.monotonic()
TTY = sys.stdout.isatty()


def say(message: str) -> None:
    elapsed = time.monotonic() - T0
    print(f"[{int(elapsed) // 60:2d}:{int(elapsed) % 60:02d}] {message}", flush=True)


class BenchError(RuntimeError):
    pass


# --------------------------------------------------------------------------- settings


@dataclass
class Settings:
    quick: bool
    workers: int
    threads: int
    connections: int
    wrk_threads: int
    duration: int
    warmup: int
    pg_clients: int
    proxy: bool
    proxy_workers: int
    readers: int
    writers: int
    postgres_url: str
    out: Path
    keep: bool
    profile: list[str] = field(default_factory=list)
    only: list[str] = field(default_factory=list)
    worker_class: str = "gthread"
    signing_alg: str = "RS256"
    lifecycle_calls: int = 32
    lifecycle_seconds: int = 30
    lifecycle_workers: int = 1
    ring_seconds: float = 0.2
    talk_seconds: float = 0.5


def parse_args(argv: list[str] | None = None) -> Settings:
    env = os.environ
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", default=env.get("QUICK", "") not in ("", "0"))
    p.add_argument(
        "--workers",
        type=int,
        default=int(env.get("BENCH_WORKERS", "2")),
        help="gunicorn workers per service (WEB_CONCURRENCY); default 2",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=int(env.get("BENCH_THREADS", "4")),
        help="gunicorn threads per worker (GUNICORN_THREADS); default 4, as deploy/",
    )
    p.add_argument(
        "--worker-class",
        choices=("gthread", "sync"),
        default=env.get("BENCH_WORKER_CLASS", "gthread"),
        help="gunicorn worker class of every service: gthread (deploy/'s, with --threads) or "
        "sync (one request at a time per worker: --threads is 1)",
    )
    p.add_argument(
        "--signing-alg",
        choices=("RS256", "ES256", "EdDSA"),
        default=env.get("BENCH_SIGNING_ALG", "RS256"),
        help="the auth server's signing key (the call API accepts only it); default RS256, "
        "the services' default",
    )
    p.add_argument("--connections", type=int, default=int(env.get("BENCH_CONNECTIONS", "32")))
    p.add_argument("--wrk-threads", type=int, default=2)
    p.add_argument("--duration", type=int, help="seconds per measured run (default 20, quick 3)")
    p.add_argument("--warmup", type=int, help="seconds of warm-up per run (default 3, quick 1)")
    p.add_argument(
        "--pg-clients",
        type=int,
        help="pgbench clients (default: workers × threads, the call API's DB concurrency)",
    )
    p.add_argument("--no-proxy", action="store_true", help="skip the nginx part")
    p.add_argument(
        "--proxy-workers",
        type=int,
        default=int(env.get("BENCH_PROXY_WORKERS", "1")),
        help="gunicorn workers per replica behind nginx (default 1, see docs/PERFORMANCE.md)",
    )
    p.add_argument("--readers", type=int, default=64, help="users for call_get/call_list")
    p.add_argument("--writers", type=int, default=256, help="users for call_create_end")
    p.add_argument(
        "--postgres-url",
        default=env.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
    )
    p.add_argument("--out", type=Path, default=BENCH / "results.json")
    p.add_argument("--keep", action="store_true", help="keep the databases and the work folder")
    p.add_argument(
        "--profile",
        action="append",
        default=[],
        metavar="SCENARIO",
        help="record py-spy profiles of the workers during SCENARIO (repeatable, or 'all')",
    )
    p.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="SCENARIO",
        help="run only these scenarios (repeatable; the baselines always run)",
    )
    p.add_argument(
        "--lifecycle-calls",
        type=int,
        default=32,
        help="lifecycle: calls kept going at once (one closed-loop caller per user)",
    )
    p.add_argument(
        "--lifecycle-seconds",
        type=int,
        help="lifecycle: seconds of calls the simulator answers and ends (default 30, quick 10)",
    )
    p.add_argument(
        "--lifecycle-workers", type=int, default=1, help="lifecycle: webhook workers (default 1)"
    )
    p.add_argument("--ring-seconds", type=float, default=0.2, help="lifecycle: simulator ring")
    p.add_argument("--talk-seconds", type=float, default=0.5, help="lifecycle: simulator talk")
    a = p.parse_args(argv)
    duration = a.duration or (3 if a.quick else 20)
    if a.worker_class == "sync":
        a.threads = 1  # gunicorn would run gthread for a sync worker with threads > 1
    warmup = a.warmup if a.warmup is not None else (1 if a.quick else 3)
    profile = list(SCENARIOS) if "all" in a.profile else a.profile
    for name in [*profile, *a.only]:
        if name not in SCENARIOS:
            p.error(f"unknown scenario {name!r}; one of {', '.join(SCENARIOS)}")
    return Settings(
        quick=a.quick,
        workers=a.workers,
        threads=a.threads,
        connections=a.connections,
        wrk_threads=min(a.wrk_threads, a.connections),
        duration=duration,
        warmup=warmup,
        pg_clients=a.pg_clients or a.workers * a.threads,
        proxy=not a.no_proxy,
        proxy_workers=a.proxy_workers,
        readers=a.readers,
        writers=a.writers,
        postgres_url=a.postgres_url,
        out=a.out,
        keep=a.keep,
        profile=profile,
        only=a.only,
        lifecycle_calls=a.lifecycle_calls,
        lifecycle_seconds=a.lifecycle_seconds or (10 if a.quick else 30),
        lifecycle_workers=a.lifecycle_workers,
        ring_seconds=a.ring_seconds,
        talk_seconds=a.talk_seconds,
        worker_class=a.worker_class,
        signing_alg=a.signing_alg,
    )


# --------------------------------------------------------------------------- processes


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (the gunicorn workers of a master)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid …; comm may contain spaces, so split after the last ')'.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            found.append(int(entry))
    return sorted(found)


def status_kb(pid: int, key: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def backend_cpu(admin_url: str, database: str) -> dict[int, float]:
    """CPU seconds of every PostgreSQL backend connected to ``database`` (same machine)."""
    import sqlalchemy as sa

    from shared.db import normalise_url

    engine = sa.create_engine(normalise_url(admin_url), poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            pids = conn.execute(
                sa.text("SELECT pid FROM pg_stat_activity WHERE datname = :db"), {"db": database}
            ).scalars()
            return {pid: cpu_seconds(pid) for pid in pids}
    except Exception:
        return {}
    finally:
        engine.dispose()


@dataclass
class Service:
    name: str
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    expected_workers: int = 1

    def workers(self) -> list[int]:
        return children(self.process.pid)

    def reset_peak_rss(self) -> bool:
        """Reset the kernel's peak-RSS counter (VmHWM) of every worker (Linux ≥ 4.0)."""
        ok = True
        for pid in self.workers():
            try:
                Path(f"/proc/{pid}/clear_refs").write_text("5")
            except OSError:
                ok = False
        return ok

    def cpu_seconds(self) -> float:
        return sum(cpu_seconds(pid) for pid in self.workers())

    def peak_rss_mb(self) -> float | None:
        """The largest per-worker peak RSS since the last reset."""
        values = [status_kb(pid, "VmHWM") for pid in self.workers()]
        values = [v for v in values if v is not None]
        return round(max(values) / 1024, 1) if values else None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class Processes:
    """Every process this run starts, so that all of them (and only them) get stopped."""

    def __init__(self, workdir: Path, worker_class: str = "gthread") -> None:
        self.workdir = workdir
        self.worker_class = worker_class
        self.services: list[Service] = []
        self.others: list[subprocess.Popen[bytes]] = []

    def gunicorn(
        self,
        name: str,
        app: str,
        workers: int,
        threads: int,
        env: dict[str, str],
        port: int | None = None,
    ) -> Service:
        port = port or free_port()
        log_path = self.workdir / f"{name}.log"
        full_env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
        full_env.update(
            {
                "BIND": f"127.0.0.1:{port}",
                "WEB_CONCURRENCY": str(workers),
                "GUNICORN_THREADS": str(threads),
                "GUNICORN_LOGLEVEL": "warning",
                "CLICKCALL_VAR_DIR": str(self.workdir / f"var-{name}"),
                "PYTHONPATH": str(ROOT),
                **env,
            }
        )
        cmd = [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "deploy/gunicorn.conf.py")]
        cmd += ["--worker-class", self.worker_class, app]  # the command line wins over the file
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                cmd,
                cwd=ROOT,
                env=full_env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        service = Service(name, f"http://127.0.0.1:{port}", process, log_path, workers)
        self.services.append(service)
        return service

    def python(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        """A Python process of the project (``-m call_api.cli worker`` …), logged to a file."""
        full_env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
        full_env.update(
            {
                "CLICKCALL_VAR_DIR": str(self.workdir / f"var-{name}"),
                "PYTHONPATH": str(ROOT),
                **env,
            }
        )
        with open(self.workdir / f"{name}.log", "wb") as log:
            process = subprocess.Popen(
                [sys.executable, *args],
                cwd=ROOT,
                env=full_env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.others.append(process)
        return process

    def end(self, process: subprocess.Popen[bytes]) -> None:
        """SIGTERM one of ``others`` and wait for it."""
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        if process in self.others:
            self.others.remove(process)

    def wait_ready(self, services: list[Service], timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        pending = list(services)
        while pending:
            for service in list(pending):
                if service.process.poll() is not None:
                    raise BenchError(f"{service.name} exited early:\n{service.log_tail()}")
                try:
                    ready = requests.get(service.url + "/healthz", timeout=2).status_code == 200
                except requests.RequestException:
                    ready = False
                if ready and len(service.workers()) >= service.expected_workers:
                    pending.remove(service)
            if pending and time.monotonic() > deadline:
                names = ", ".join(s.name for s in pending)
                raise BenchError(f"not ready in {timeout:.0f}s: {names}\n{pending[0].log_tail()}")
            if pending:
                time.sleep(0.2)

    def stop(self, service: Service) -> None:
        if service.process.poll() is None:
            service.process.send_signal(signal.SIGTERM)
            try:
                service.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(service.process.pid, signal.SIGKILL)
                service.process.wait(5)
        if service in self.services:
            self.services.remove(service)

    def stop_all(self) -> None:
        for service in list(self.services):
            try:
                self.stop(service)
            except Exception as exc:  # keep stopping the others
                print(f"warning: stopping {service.name}: {exc}", file=sys.stderr)
        for process in self.others:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()


# --------------------------------------------------------------------------- load generators


def progress(label: str, seconds: float, done: Callable[[], bool]) -> None:
    """A ticking progress line while a run lasts."""
    start = time.monotonic()
    last_print = 0.0
    while not done():
        time.sleep(0.25)
        elapsed = time.monotonic() - start
        if TTY:
            width = 20
            filled = min(width, int(width * elapsed / max(seconds, 0.1)))
            bar = "#" * filled + "." * (width - filled)
            print(f"\r         {label} [{bar}] {elapsed:4.0f}/{seconds:.0f}s", end="", flush=True)
        elif elapsed - last_print >= 5:
            last_print = elapsed
            print(f"         {label}: {elapsed:.0f}/{seconds:.0f}s", flush=True)
    if TTY:
        print("\r" + " " * 79 + "\r", end="", flush=True)


@dataclass
class WrkResult:
    raw: dict[str, Any]

    @property
    def duration_s(self) -> float:
        return float(self.raw["duration_us"]) / 1e6

    @property
    def requests(self) -> int:
        return int(self.raw["requests"])

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0

    def latency_ms(self, key: str) -> float:
        return float(self.raw["latency_us"][key]) / 1000

    @property
    def socket_errors(self) -> int:
        return int(sum(self.raw["socket_errors"].values()))

    @property
    def errors(self) -> int:
        """Socket errors and timeouts plus every status the scenario did not expect."""
        return self.socket_errors + int(self.raw["unexpected"])

    @property
    def statuses(self) -> dict[str, int]:
        return {str(int(float(k))): int(v) for k, v in self.raw["statuses"].items()}

    def counter(self, name: str) -> int:
        return int(self.raw.get("counters", {}).get(name, 0))


def run_wrk(
    s: Settings,
    workdir: Path,
    label: str,
    url: str,
    script: str,
    seconds: int,
    env: dict[str, str] | None = None,
    show: bool = True,
) -> WrkResult:
    out = workdir / f"wrk-{label}-{time.monotonic_ns()}.json"
    full_env = {
        **os.environ,
        "BENCH_LUA_DIR": str(LUA),
        "BENCH_OUT": str(out),
        "BENCH_THREADS": str(s.wrk_threads),
        **(env or {}),
    }
    cmd = [
        "wrk",
        f"-t{s.wrk_threads}",
        f"-c{s.connections}",
        f"-d{seconds}s",
        "--timeout",
        "10s",
        "-s",
        str(LUA / script),
        url,
    ]
    process = subprocess.Popen(
        cmd, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=workdir
    )
    if show:
        progress(label, seconds, lambda: process.poll() is not None)
    output = process.communicate(timeout=seconds + 60)[0].decode(errors="replace")
    if process.returncode != 0 or not out.exists():
        raise BenchError(f"wrk failed for {label} (exit {process.returncode}):\n{output}")
    return WrkResult(json.loads(out.read_text()))


def seed_pgbench_users(url: str, count: int) -> None:
    """The ``call_users`` rows of pgbench's subjects (``pgbench-1`` … ``pgbench-N``): as in
    the app, a user's row exists after their first call, and start_call inserts it only when
    it is missing, which a pgbench script cannot express."""
    import sqlalchemy as sa

    from shared.db import normalise_url

    engine = sa.create_engine(normalise_url(url))
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO call_users (subject, created_at, updated_at) "
                "SELECT 'pgbench-' || n, now(), now() FROM generate_series(1, :count) AS n "
                "ON CONFLICT DO NOTHING"
            ),
            {"count": count},
        )
    engine.dispose()


def run_pgbench(
    s: Settings, label: str, url: str, script: Path, clients: int, defines: dict[str, str]
) -> dict[str, Any]:
    if "nusers" in defines:
        seed_pgbench_users(url, int(defines["nusers"]))
    cmd = [
        "pgbench",
        "-n",
        "-M",
        "simple",
        "-c",
        str(clients),
        "-j",
        str(min(2, clients)),
        "-T",
        str(s.duration),
        "-P",
        "1",
        *[arg for k, v in defines.items() for arg in ("-D", f"{k}={v}")],
        "-f",
        str(script),
        url,
    ]
    process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    lines: list[str] = []

    def read_progress() -> None:
        assert process.stderr is not None
        for raw in process.stderr:
            lines.append(raw.decode(errors="replace").rstrip())

    reader = threading.Thread(target=read_progress, daemon=True)
    reader.start()
    progress(label, s.duration, lambda: process.poll() is not None)
    stdout = process.communicate(timeout=s.duration + 60)[0].decode(errors="replace")
    reader.join(5)
    if process.returncode != 0:
        tail = "\n".join(lines[-10:])
        raise BenchError(f"pgbench failed for {label}:\n{stdout}\n{tail}")
    tps = latency = failed = None
    for line in stdout.splitlines():
        line = line.strip()
        if line.startswith("tps = "):
            tps = float(line.split()[2])
        elif line.startswith("latency average = "):
            latency = float(line.split()[3])
        elif line.startswith("number of failed transactions:"):
            failed = int(line.split(":")[1].split()[0])
    if tps is None:
        raise BenchError(f"pgbench printed no tps for {label}:\n{stdout}")
    return {"tps": round(tps, 1), "latency_avg_ms": latency, "failed": failed, "clients": clients}


# --------------------------------------------------------------------------- profiling


class Profiler:
    """py-spy ``record`` of every worker of a service while one scenario runs."""

    def __init__(self, service: Service, label: str, seconds: int) -> None:
        self.paths: list[Path] = []
        self.processes: list[subprocess.Popen[bytes]] = []
        exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        if not Path(exe).exists():
            say("  (py-spy is not installed: `.venv/bin/pip install py-spy`; no profile)")
            return
        # "gil" (default): samples of threads holding the GIL, i.e. the Python CPU profile;
        # "wall": every thread not idle, so time spent waiting for PostgreSQL shows too.
        mode = os.environ.get("BENCH_PROFILE_MODE", "gil")
        self.mode_args = ["--gil"] if mode == "gil" else []
        folder = BENCH / "profiles"
        folder.mkdir(exist_ok=True)
        for pid in service.workers():
            path = folder / f"{label}-{mode}-{pid}.txt"
            self.paths.append(path)
            self.processes.append(
                subprocess.Popen(
                    [
                        exe,
                        "record",
                        "--pid",
                        str(pid),
                        "--duration",
                        str(seconds),
                        "--rate",
                        "200",
                        "--nonblocking",
                        *self.mode_args,
                        "--format",
                        "raw",
                        "--output",
                        str(path),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )

    def finish(self) -> None:
        for process in self.processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.terminate()
        for path in self.paths:
            if path.exists():
                say(f"  profile: {path.relative_to(ROOT)}")


# --------------------------------------------------------------------------- the run


def machine_facts(s: Settings) -> dict[str, Any]:
    def version(cmd: list[str]) -> str | None:
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        text = (out.stdout + out.stderr).strip().splitlines()
        return text[0] if text else None

    cpu = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = None
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem_gb = round(kb / 1024 / 1024, 1)
    except (OSError, ValueError, IndexError):
        pass
    import gunicorn

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": mem_gb,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "gunicorn": gunicorn.__version__,
        "wrk": version(["wrk", "-v"]),
        "pgbench": version(["pgbench", "--version"]),
        "nginx": version(["nginx", "-v"]) if shutil.which("nginx") else None,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "settings": {
            "quick": s.quick,
            "workers_per_service": s.workers,
            "threads_per_worker": s.threads,
            "worker_class": s.worker_class,
            "signing_alg": s.signing_alg,
            "connections": s.connections,
            "wrk_threads": s.wrk_threads,
            "duration_s": s.duration,
            "warmup_s": s.warmup,
            "pgbench_clients": s.pg_clients,
            "proxy_workers_per_replica": s.proxy_workers,
        },
    }


@dataclass
class Context:
    s: Settings
    workdir: Path
    procs: Processes
    auth_url: str = ""
    calls_url: str = ""
    keys_dir: Path = Path()
    public_key: Path = Path()
    seed: seeding.Seed | None = None
    auth_flask: Any = None
    call_flask: Any = None
    results: dict[str, Any] = field(default_factory=dict)


def write_data(ctx: Context, name: str, lines: list[str]) -> str:
    path = ctx.workdir / f"{name}.txt"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def summarise(
    ctx: Context, name: str, result: WrkResult, service: Service | None, rss: float | None
) -> dict[str, Any]:
    base = ctx.results["baselines"]
    rps = result.rps
    row: dict[str, Any] = {
        "rps": round(rps, 1),
        "p50_ms": round(result.latency_ms("p50"), 2),
        "p95_ms": round(result.latency_ms("p95"), 2),
        "p99_ms": round(result.latency_ms("p99"), 2),
        "errors": result.errors,
        "ratio_flask": round(rps / base["flask_rps"], 3) if base.get("flask_rps") else None,
        "ratio_pg": None,
        "rss_mb": rss,
        "requests": result.requests,
        "duration_s": round(result.duration_s, 2),
        "statuses": result.statuses,
        "socket_errors": {k: int(v) for k, v in result.raw["socket_errors"].items()},
    }
    if name == "call_create_end":
        pairs = rps / 2
        row["pairs_per_s"] = round(pairs, 1)
        if base.get("pgbench_tps"):
            row["ratio_pg"] = round(pairs / base["pgbench_tps"], 3)
        row["posts"] = result.counter("post")
        row["puts"] = result.counter("put")
    if name == "call_at_limit":
        row["expected_409"] = result.counter("expected_409")
        if base.get("pgbench_at_limit_tps"):
            row["ratio_pg"] = round(rps / base["pgbench_at_limit_tps"], 3)
    if name == "token_code_exchange" and result.counter("exhausted"):
        row["codes_exhausted_threads"] = result.counter("exhausted")
    return row


def measure(
    ctx: Context,
    name: str,
    service: Service,
    url: str,
    script: str,
    env: dict[str, str] | None = None,
    warm_env: dict[str, str] | None = None,
    label: str | None = None,
    profile_service: Service | None = None,
    rss_services: list[Service] | None = None,
    database: str | None = None,
    after: Callable[[], None] | None = None,
) -> dict[str, Any]:
    s = ctx.s
    label = label or name
    if s.warmup:
        warm = run_wrk(s, ctx.workdir, f"{label} warm-up", url, script, s.warmup, warm_env or env)
        if warm.errors:
            say(f"  warning: {warm.errors} errors during the warm-up ({warm.statuses})")
        if after:
            after()
    watched = rss_services or [service]
    for svc in watched:
        svc.reset_peak_rss()
    profiler = None
    if name in s.profile and profile_service is not None:
        profiler = Profiler(profile_service, label.replace(" ", "_"), s.duration)
    app_cpu = sum(svc.cpu_seconds() for svc in watched)
    db_cpu = backend_cpu(s.postgres_url, database) if database else {}
    result = run_wrk(s, ctx.workdir, label, url, script, s.duration, env)
    app_cpu = sum(svc.cpu_seconds() for svc in watched) - app_cpu
    if database:
        db_cpu_after = backend_cpu(s.postgres_url, database)
        db_cpu_used = sum(v - db_cpu.get(pid, 0.0) for pid, v in db_cpu_after.items())
    if profiler:
        profiler.finish()
    if after:
        after()
    peaks = [p for p in (svc.peak_rss_mb() for svc in watched) if p is not None]
    row = summarise(ctx, name, result, service, max(peaks) if peaks else None)
    if result.requests:
        # CPU per request: robust to a noisy machine where req/s is not (see PERFORMANCE.md).
        row["app_cpu_ms_per_req"] = round(app_cpu * 1000 / result.requests, 3)
        if database:
            row["db_cpu_ms_per_req"] = round(db_cpu_used * 1000 / result.requests, 3)
        total = row["app_cpu_ms_per_req"] + row.get("db_cpu_ms_per_req", 0.0)
        row["cpu_ms_per_req"] = round(total, 3)
        # The ratio to bare Flask that CPU alone allows (both CPU-bound on the same cores):
        # much steadier than req/s on a busy machine.
        flask_cpu = ctx.results["baselines"].get("flask", {}).get("app_cpu_ms_per_req")
        if flask_cpu and total:
            row["cpu_ratio_flask"] = round(flask_cpu / total, 3)
    note = ""
    if name == "call_at_limit":
        note = f", {row['expected_409']} expected 409s"
    if name == "call_create_end":
        note = f", {row['pairs_per_s']:.0f} pairs/s"
    cpu = ""
    if "app_cpu_ms_per_req" in row:
        cpu = f"; CPU/req: app {row['app_cpu_ms_per_req']:.2f} ms"
        if "db_cpu_ms_per_req" in row:
            cpu += f", PostgreSQL {row['db_cpu_ms_per_req']:.2f} ms"
    say(
        f"  {label}: {row['rps']:.0f} req/s, p50 {row['p50_ms']:.1f} ms, "
        f"p99 {row['p99_ms']:.1f} ms, {row['errors']} errors{note}{cpu}"
    )
    if row["errors"]:
        say(f"  statuses: {row['statuses']}, socket errors: {row['socket_errors']}")
    return row


def setup_databases(ctx: Context) -> None:
    s = ctx.s
    say(f"databases: recreating {AUTH_DB} and {CALLS_DB}")
    ctx.auth_url = seeding.recreate_database(s.postgres_url, AUTH_DB)
    ctx.calls_url = seeding.recreate_database(s.postgres_url, CALLS_DB)
    from shared.keys import KeyStore, public_pem

    ctx.keys_dir = ctx.workdir / "keys"
    store = KeyStore(ctx.keys_dir)
    store.add(s.signing_alg)
    key = store.current()
    assert key is not None
    ctx.public_key = ctx.workdir / "public.pem"
    ctx.public_key.write_bytes(public_pem(key.private_key))


def seed_data(ctx: Context) -> None:
    """Schemas (the services' migrations), clients, users, tokens, calls."""
    s = ctx.s
    ctx.auth_flask = seeding.auth_app(ctx.auth_url, ctx.keys_dir)
    ctx.call_flask = seeding.call_app(ctx.calls_url, ctx.public_key)
    seeding.upgrade_auth(ctx.auth_flask)
    seeding.upgrade_calls(ctx.call_flask)
    users = s.readers + s.writers + 1
    say(f"seeding: 2 clients, {users} users with access tokens, {s.readers + 2} calls")
    ctx.seed = seeding.seed_auth(ctx.auth_flask, s.readers, s.writers)
    seed = ctx.seed
    assert seed.limited is not None
    seeding.mint_tokens(ctx.auth_flask, seed, [*seed.readers, *seed.writers, seed.limited])
    seeding.seed_calls(ctx.call_flask, seed, CALL_LIMIT)


def auth_env(ctx: Context) -> dict[str, str]:
    return {
        "AUTH_DATABASE_URL": ctx.auth_url,
        "AUTH_KEYS_DIR": str(ctx.keys_dir),
        "AUTH_ISSUER": seeding.ISSUER,
        "CALL_AUDIENCE": seeding.AUDIENCE,
        "AUTH_SECRET_KEY": "bench-secret-key",
        "RATELIMIT_ENABLED": "false",
        "AUTH_GENERATE_KEYS": "false",
        "AUTH_SIGNING_ALG": ctx.s.signing_alg,
    }


def call_env(ctx: Context, jwks_base: str) -> dict[str, str]:
    return {
        "CALL_DATABASE_URL": ctx.calls_url,
        "AUTH_ISSUER": seeding.ISSUER,
        "CALL_AUDIENCE": seeding.AUDIENCE,
        "CALL_JWKS_URL": jwks_base + "/.well-known/jwks.json",
        # The revocation feed, polled as in production (its cost is in every number).
        "CALL_REVOCATION_URL": jwks_base + "/oauth/revocations",
        "CALL_MAX_ONGOING_DEFAULT": str(CALL_LIMIT),
        "CALL_ALGORITHMS": ctx.s.signing_alg,
    }


NGINX_CONF = """\
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    upstream auth {{
{auth_servers}
        keepalive 64;
    }}
    upstream calls_one {{
        server {call_one};
        keepalive 64;
    }}
    upstream calls_two {{
{call_servers}
        keepalive 64;
    }}
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_set_header Host $http_host;
    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    proxy_set_header X-Forwarded-Proto $scheme;
    server {{
        listen 127.0.0.1:{auth_port};
        location / {{ proxy_pass http://auth; }}
    }}
    server {{
        listen 127.0.0.1:{one_port};
        location / {{ proxy_pass http://calls_one; }}
    }}
    server {{
        listen 127.0.0.1:{two_port};
        location / {{ proxy_pass http://calls_two; }}
    }}
}}
"""


@dataclass
class Stack:
    bare: Service
    auth: Service
    api: Service
    proxy_auths: list[Service] = field(default_factory=list)
    proxy_calls: list[Service] = field(default_factory=list)
    proxy_ports: dict[str, int] = field(default_factory=dict)
    proxy_skipped: str | None = None

    def all(self) -> list[Service]:
        return [self.bare, self.auth, self.api, *self.proxy_auths, *self.proxy_calls]


def find_nginx() -> str | None:
    found = shutil.which("nginx")
    if found:
        return found
    return "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None


def start_stack(ctx: Context) -> Stack:
    """Start every server of the run at once (they boot while the data is seeded)."""
    s = ctx.s
    procs = ctx.procs
    say(
        f"services: gunicorn -c deploy/gunicorn.conf.py, {s.workers} workers × "
        f"{s.threads} threads each ({s.worker_class}): auth server, call API, bare Flask"
    )
    bare = procs.gunicorn("bare_flask", "bench.bare_app:create_app()", s.workers, s.threads, {})
    auth = procs.gunicorn(
        "auth_server", "auth_server:create_app()", s.workers, s.threads, auth_env(ctx)
    )
    api = procs.gunicorn(
        "call_api", "call_api:create_app()", s.workers, s.threads, call_env(ctx, auth.url)
    )
    stack = Stack(bare, auth, api)
    wanted = [n for n in CALL_SCENARIOS if not s.only or n in s.only]
    if not s.proxy:
        stack.proxy_skipped = "--no-proxy"
        return stack
    if not wanted:
        stack.proxy_skipped = "no call scenario selected"
        return stack
    nginx = find_nginx()
    if not nginx:
        stack.proxy_skipped = "nginx is not installed (as root, `make bench` installs it)"
        say(f"nginx part SKIPPED: {stack.proxy_skipped}")
        return stack
    w = s.proxy_workers
    say(
        f"services behind nginx: 2 auth server and 2 call API replicas, {w} worker(s) × "
        f"{s.threads} threads each"
    )
    ndir = ctx.workdir / "nginx"
    ndir.mkdir()
    # nginx's workers drop root privileges: let them reach their temp folders.
    ctx.workdir.chmod(0o755)
    ndir.chmod(0o755)
    ports = {"auth_port": free_port(), "one_port": free_port(), "two_port": free_port()}
    proxy_auth = f"http://127.0.0.1:{ports['auth_port']}"
    behind = {"TRUSTED_PROXIES": "1"}
    auths = [
        procs.gunicorn(
            f"auth_replica{i}", "auth_server:create_app()", w, s.threads, auth_env(ctx) | behind
        )
        for i in (1, 2)
    ]
    # The call API replicas get their keys through the proxy, from either auth replica.
    calls = [
        procs.gunicorn(
            f"call_replica{i}",
            "call_api:create_app()",
            w,
            s.threads,
            call_env(ctx, proxy_auth) | behind,
        )
        for i in (1, 2)
    ]
    conf = ndir / "nginx.conf"
    conf.write_text(
        NGINX_CONF.format(
            dir=ndir,
            auth_servers="\n".join(f"        server {a.url[7:]};" for a in auths),
            call_one=calls[0].url[7:],
            call_servers="\n".join(f"        server {c.url[7:]};" for c in calls),
            **ports,
        )
    )
    test = subprocess.run(
        [nginx, "-t", "-c", str(conf), "-p", str(ndir)], capture_output=True, text=True
    )
    if test.returncode != 0:
        stack.proxy_skipped = f"nginx -t failed: {test.stderr.strip()}"
        say(f"nginx part SKIPPED: {stack.proxy_skipped}")
        for service in [*auths, *calls]:
            procs.stop(service)
        return stack
    with open(ndir / "nginx-stderr.log", "wb") as log:
        proxy = subprocess.Popen(
            [nginx, "-c", str(conf), "-p", str(ndir)],
            stdout=subprocess.DEVNULL,
            stderr=log,
            start_new_session=True,
        )
    procs.others.append(proxy)
    stack.proxy_auths, stack.proxy_calls, stack.proxy_ports = auths, calls, ports
    return stack


def scenario_data(ctx: Context) -> dict[str, dict[str, str]]:
    seed = ctx.seed
    assert seed is not None and seed.limited is not None
    get_lines = [f"{u.token} {seed.reader_calls[u.id]}" for u in seed.readers]
    list_lines = [u.token for u in seed.readers]
    write_lines = [f"{u.id} {u.token}" for u in seed.writers]
    limited = [f"{seed.limited.id} {seed.limited.token}"]
    return {
        "call_get": {"BENCH_DATA": write_data(ctx, "call_get", get_lines)},
        "call_list": {"BENCH_DATA": write_data(ctx, "call_list", list_lines)},
        "call_create_end": {"BENCH_DATA": write_data(ctx, "call_create_end", write_lines)},
        "call_at_limit": {"BENCH_DATA": write_data(ctx, "call_at_limit", limited)},
    }


def after_run(ctx: Context, name: str) -> Callable[[], None] | None:
    """Clean-up between the runs of a scenario, so that each starts from the same state."""
    seed = ctx.seed
    assert seed is not None
    if name != "call_create_end":
        return None
    writers = [u.id for u in seed.writers]

    def end_leftovers() -> None:
        # A run stops with POSTs answered whose PUT was never sent: end those calls, or a
        # later run would find some users at their limit (and count 409s as errors).
        seeding.end_ongoing(ctx.call_flask, writers)

    return end_leftovers


def check_limit(ctx: Context, where: str) -> None:
    seed = ctx.seed
    assert seed is not None and seed.limited is not None
    count = seeding.ongoing(ctx.call_flask, seed.limited.id)
    ok = count == CALL_LIMIT
    ctx.results.setdefault("checks", {})[f"limit_held_{where}"] = ok
    if ok:
        say(f"  check: the limited user still has {count} ongoing calls (limit {CALL_LIMIT})")
    else:
        say(f"  CHECK FAILED: the limited user has {count} ongoing calls (limit {CALL_LIMIT})")


def run_baselines(ctx: Context, stack: Stack) -> None:
    s = ctx.s
    bare = stack.bare
    say(f"baseline (a): bare Flask GET /ping, {s.connections} connections, {s.duration}s")
    ping = {"BENCH_PATH": "/ping"}
    if s.warmup:
        run_wrk(s, ctx.workdir, "bare Flask warm-up", bare.url, "get.lua", s.warmup, ping)
    bare.reset_peak_rss()
    cpu = bare.cpu_seconds()
    flask = run_wrk(s, ctx.workdir, "bare Flask", bare.url, "get.lua", s.duration, ping)
    cpu = bare.cpu_seconds() - cpu
    cpu_per_req = round(cpu * 1000 / max(flask.requests, 1), 3)
    ctx.results["baselines"]["flask_rps"] = round(flask.rps, 1)
    ctx.results["baselines"]["flask"] = {
        "rps": round(flask.rps, 1),
        "p50_ms": round(flask.latency_ms("p50"), 2),
        "p95_ms": round(flask.latency_ms("p95"), 2),
        "p99_ms": round(flask.latency_ms("p99"), 2),
        "errors": flask.errors,
        "rss_mb": bare.peak_rss_mb(),
        "app_cpu_ms_per_req": cpu_per_req,
    }
    say(
        f"  bare Flask: {flask.rps:.0f} req/s, p50 {flask.latency_ms('p50'):.1f} ms, "
        f"p99 {flask.latency_ms('p99'):.1f} ms, {flask.errors} errors; CPU/req {cpu_per_req:.2f} ms"
    )
    ctx.procs.stop(bare)

    pg_url = ctx.calls_url.replace("postgresql+psycopg2://", "postgresql://", 1)
    say(f"baseline (b): pgbench, the SQL of POST+PUT, {s.pg_clients} clients, {s.duration}s")
    pair = run_pgbench(
        s,
        "pgbench create+end",
        pg_url,
        BENCH / "pgbench/call_create_end.sql",
        s.pg_clients,
        {"nusers": str(s.writers)},
    )
    say(f"  pgbench create+end: {pair['tps']:.0f} tps (one transaction = one POST+PUT of SQL)")
    say(f"baseline (b'): pgbench, the SQL of a refused POST, one user, {s.pg_clients} clients")
    at_limit = run_pgbench(
        s, "pgbench at-limit", pg_url, BENCH / "pgbench/call_at_limit.sql", s.pg_clients, {}
    )
    say(f"  pgbench at-limit: {at_limit['tps']:.0f} tps")
    ctx.results["baselines"].update(
        {
            "pgbench_tps": pair["tps"],
            "pgbench_at_limit_tps": at_limit["tps"],
            "pgbench": {"call_create_end": pair, "call_at_limit": at_limit},
        }
    )


def run_scenarios(ctx: Context, stack: Stack) -> None:
    s = ctx.s
    seed = ctx.seed
    assert seed is not None
    auth, api = stack.auth, stack.api
    wanted = [n for n in SCENARIOS if not s.only or n in s.only]
    scenarios = ctx.results["scenarios"]

    if "token_client_credentials" in wanted:
        say("scenario token_client_credentials: POST /oauth/token (client_credentials)")
        scenarios["token_client_credentials"] = measure(
            ctx,
            "token_client_credentials",
            auth,
            auth.url,
            "token_client_credentials.lua",
            env={"BENCH_BASIC": seed.admin_basic, "BENCH_SCOPE": "admin"},
            profile_service=auth,
            database=AUTH_DB,
        )

    if "token_code_exchange" in wanted:
        # Enough single-use codes for the run at the client_credentials rate (the exchange
        # does more work, so it is slower); a thread that runs out stops early.
        expected = scenarios.get("token_client_credentials", {}).get("rps") or 1000
        count = int(expected * s.duration * 1.5) + 1000
        warm_count = int(expected * s.warmup * 1.5) + 500 if s.warmup else 0
        say(
            f"scenario token_code_exchange: POST /oauth/token (authorization_code + PKCE), "
            f"{count + warm_count} pre-minted codes, each used once"
        )
        users = [u.id for u in seed.readers]
        codes = seeding.mint_codes(ctx.auth_flask, seed.web_client_id, users, count + warm_count)
        code_env = {"BENCH_BASIC": seed.web_basic, "BENCH_REDIRECT": seeding.REDIRECT_URI}
        main_codes = [f"{c} {v}" for c, v in codes[:count]]
        warm_codes = [f"{c} {v}" for c, v in codes[count:]]
        scenarios["token_code_exchange"] = measure(
            ctx,
            "token_code_exchange",
            auth,
            auth.url,
            "token_code_exchange.lua",
            env=code_env | {"BENCH_DATA": write_data(ctx, "codes", main_codes)},
            warm_env=code_env | {"BENCH_DATA": write_data(ctx, "codes-warm", warm_codes)},
            profile_service=auth,
            database=AUTH_DB,
        )

    if "jwks" in wanted:
        say("scenario jwks: GET /.well-known/jwks.json")
        scenarios["jwks"] = measure(
            ctx,
            "jwks",
            auth,
            auth.url,
            "get.lua",
            env={"BENCH_PATH": "/.well-known/jwks.json"},
            profile_service=auth,
        )

    data = scenario_data(ctx)
    descriptions = {
        "call_get": f"GET /rest/call?token_call=… ({s.readers} users)",
        "call_list": f"GET /rest/call ({s.readers} users, 1 ongoing call each)",
        "call_create_end": f"POST /rest/call + PUT /rest/call pairs ({s.writers} users)",
        "call_at_limit": f"POST /rest/call, one user at the limit ({CALL_LIMIT}): 409 expected",
    }
    for name in CALL_SCENARIOS:
        if name not in wanted:
            continue
        say(f"scenario {name}: {descriptions[name]}")
        scenarios[name] = measure(
            ctx,
            name,
            api,
            api.url,
            f"{name}.lua",
            env=data[name],
            profile_service=api,
            database=CALLS_DB,
            after=after_run(ctx, name),
        )
        if name == "call_at_limit":
            check_limit(ctx, "direct")
    ctx.procs.stop(api)
    ctx.procs.stop(auth)


def run_proxy(ctx: Context, stack: Stack) -> None:
    s = ctx.s
    if stack.proxy_skipped:
        ctx.results["proxy"] = {"skipped": stack.proxy_skipped}
        return
    wanted = [n for n in CALL_SCENARIOS if not s.only or n in s.only]
    calls = stack.proxy_calls
    data = scenario_data(ctx)
    out: dict[str, Any] = {
        "workers_per_replica": s.proxy_workers,
        "threads_per_worker": s.threads,
        "replicas": {"1": {}, "2": {}},
        "scaling": {},
    }
    say("through nginx: the call scenarios against 1 call API replica, then 2")
    for replicas, port, watched in (
        ("1", stack.proxy_ports["one_port"], calls[:1]),
        ("2", stack.proxy_ports["two_port"], calls),
    ):
        url = f"http://127.0.0.1:{port}"
        for name in wanted:
            label = f"nginx→{replicas} replica{'s' if replicas != '1' else ''} {name}"
            say(f"scenario {label}")
            out["replicas"][replicas][name] = measure(
                ctx,
                name,
                watched[0],
                url,
                f"{name}.lua",
                env=data[name],
                label=label,
                rss_services=watched,
                database=CALLS_DB,
                after=after_run(ctx, name),
            )
            if name == "call_at_limit":
                check_limit(ctx, f"nginx_{replicas}_replicas")
    for name in wanted:
        one = out["replicas"]["1"][name]["rps"]
        two = out["replicas"]["2"][name]["rps"]
        out["scaling"][name] = round(two / one, 2) if one else None
    ctx.results["proxy"] = {"nginx": out}


# --------------------------------------------------------------------------- lifecycle


def pending_events(ctx: Context) -> int:
    """Events the worker has still to deliver."""
    import sqlalchemy as sa

    app = ctx.call_flask
    with app.app_context():
        engine = app.extensions["sqlalchemy"].engine
        with engine.connect() as conn:
            return int(
                conn.execute(
                    sa.text("SELECT count(*) FROM call_events WHERE delivery = 'pending'")
                ).scalar()
                or 0
            )


def wait_until(what: str, check: Callable[[], bool], timeout: float) -> float:
    """Seconds until ``check()`` holds; BenchError after ``timeout``."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise BenchError(f"lifecycle: {what} not within {timeout:.0f}s")
        time.sleep(0.1)
    return time.monotonic() - start


def run_lifecycle(ctx: Context, stack: Stack) -> None:
    """Scenario ``lifecycle``: calls the simulator answers and ends, their webhooks, and what
    the outbox costs the call transaction (docs/PERFORMANCE.md, "Call lifecycle and
    webhooks").

    1. *steady*: ``--lifecycle-calls`` users each keep one call to the answering test number
       going (open it, wait for its ``call.completed`` webhook, open the next) for
       ``--lifecycle-seconds``; ``call-api simulator`` dials, ``call-api worker`` delivers to
       a receiver in this process that verifies every signature. Events/s delivered, and
       the time from each event's ``timestamp`` (the transition) to its receipt.
    2. *outbox cost*: ``call_create_end`` (POST + PUT pairs, wrk) against this call API and,
       side by side, against ``bench/no_outbox_app.py`` (the same app with
       ``calls.record_event`` a no-op), worker and simulator stopped.
    3. *drain*: the events step 2 wrote, delivered by the worker(s) as fast as they go.
    """
    from bench import lifecycle as lc

    s = ctx.s
    seed = ctx.seed
    assert seed is not None
    procs = ctx.procs
    for service in [*stack.proxy_auths, *stack.proxy_calls]:
        procs.stop(service)  # idle since the nginx part: give their memory back
    out: dict[str, Any] = {
        "settings": {
            "calls_at_once": s.lifecycle_calls,
            "seconds": s.lifecycle_seconds,
            "webhook_workers": s.lifecycle_workers,
            "simulator_ring_s": s.ring_seconds,
            "simulator_talk_s": s.talk_seconds,
            "worker_poll_interval_s": 0.5,
            "worker_batch": 20,
        }
    }
    ctx.results["lifecycle"] = out
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    say(
        f"scenario lifecycle: an auth server (the simulator's tokens), the call API and the "
        f"call API without its outbox ({s.workers} workers × {s.threads} threads each)"
    )
    auth = procs.gunicorn(
        "lifecycle_auth",
        "auth_server:create_app()",
        1,
        s.threads,
        auth_env(ctx) | {"AUTH_ISSUER": issuer},
        port=port,
    )
    env = call_env(ctx, issuer) | {"AUTH_ISSUER": issuer, "CALL_MAX_ONGOING_DEFAULT": "1000"}
    api = procs.gunicorn("lifecycle_api", "call_api:create_app()", s.workers, s.threads, env)
    bare = procs.gunicorn(
        "no_outbox_api", "bench.no_outbox_app:create_app()", s.workers, s.threads, env
    )
    flask = seeding.auth_app(ctx.auth_url, ctx.keys_dir, issuer)
    users = [seeding.BenchUser(u.id, u.username) for u in seed.writers]
    seeding.mint_tokens(flask, seed, users)
    dialer_id, dialer_secret = seeding.dialer_client(flask)
    with flask.app_context():
        flask.extensions["sqlalchemy"].engine.dispose()
    # The other scenarios' calls are still queued: the simulator would take them (and
    # keep the ones to other numbers going). They end before the webhook URL exists.
    seeding.end_all_ongoing(ctx.call_flask)
    receiver = lc.Receiver()
    with ctx.call_flask.app_context():
        from call_api.webhooks import set_endpoint

        change = set_endpoint(
            seed.web_client_id, receiver.url, ctx.call_flask.config, rotate_secret=True
        )
        assert change.secret is not None
        receiver.secret = change.secret
    procs.wait_ready([auth, api, bare])

    def start_workers() -> list[subprocess.Popen[bytes]]:
        return [
            procs.python(
                f"webhook_worker{i}", ["-m", "call_api.cli", "worker", "--id", f"bench-{i}"], env
            )
            for i in range(1, s.lifecycle_workers + 1)
        ]

    try:
        # 1. steady
        workers = start_workers()
        simulator = procs.python(
            "simulator",
            [
                "-m",
                "call_api.cli",
                "simulator",
                "--id",
                "bench-sim",
                "--max-calls",
                str(s.lifecycle_calls + 10),
                "--wait",
                "5",
            ],
            env
            | {
                "DIALER_CLIENT_ID": dialer_id,
                "DIALER_CLIENT_SECRET": dialer_secret,
                "CALL_API_URL": api.url,
                "SIMULATOR_RING_SECONDS": str(s.ring_seconds),
                "SIMULATOR_TALK_SECONDS": str(s.talk_seconds),
            },
        )
        # Warm-up: one call through everything (tokens, connections, the first claims).
        warm = lc.Openers(api.url, [(users[0].id, users[0].token)], receiver, 0.1)
        warm.run()
        if warm.failures or not warm.opened:
            raise BenchError(f"lifecycle warm-up failed: {warm.failures}")
        openers = lc.Openers(
            api.url,
            [(u.id, u.token) for u in users[: s.lifecycle_calls]],
            receiver,
            s.lifecycle_seconds,
        )
        say(
            f"  steady: {s.lifecycle_calls} callers, {s.lifecycle_seconds}s; simulator rings "
            f"{s.ring_seconds:g}s, talks {s.talk_seconds:g}s; {s.lifecycle_workers} worker(s)"
        )
        cpu = {p.pid: cpu_seconds(p.pid) for p in [*workers, simulator]}
        api_cpu = api.cpu_seconds()
        done = threading.Event()
        ticker = threading.Thread(
            target=progress,
            args=("lifecycle steady", s.lifecycle_seconds, done.is_set),
            daemon=True,
        )
        ticker.start()
        window = openers.run()
        done.set()
        wait_until("the last calls' webhooks", lambda: pending_events(ctx) == 0, 60)
        used = {p.pid: cpu_seconds(p.pid) - cpu[p.pid] for p in [*workers, simulator]}
        api_cpu = api.cpu_seconds() - api_cpu
        calls = [o.token_call for o in openers.opened]
        wanted = set(calls)
        received = [r for r in receiver.snapshot() if r.token_call in wanted]
        in_window = [r for r in received if window[0] <= r.received_at <= window[1]]
        check = lc.check_events(received, calls)
        check["unverified"] = receiver.unverified
        check["ok"] = check["ok"] and not receiver.unverified and not openers.failures
        latency = lc.percentiles(r.latency_ms for r in received)
        by_type = {
            t: lc.percentiles(r.latency_ms for r in received if r.type == t) for t in lc.TYPES
        }
        worker_cpu = sum(used[p.pid] for p in workers)
        out["steady"] = {
            "calls": len(calls),
            "events": len(received),
            "events_per_s": round(len(in_window) / s.lifecycle_seconds, 1),
            "calls_per_s": round(
                sum(1 for r in in_window if r.type == "call.completed") / s.lifecycle_seconds, 1
            ),
            "latency_ms": latency,
            "latency_ms_by_type": by_type,
            "post_ms": lc.percentiles(o.post_ms for o in openers.opened),
            "worker_cpu_ms_per_event": round(worker_cpu * 1000 / max(len(received), 1), 2),
            "simulator_cpu_ms_per_call": round(used[simulator.pid] * 1000 / max(len(calls), 1), 2),
            "api_cpu_ms_per_call": round(api_cpu * 1000 / max(len(calls), 1), 2),
            "failures": openers.failures[:10],
            "check": check,
        }
        st = out["steady"]
        say(
            f"  steady: {st['calls']} calls, {st['events']} events, {st['events_per_s']:.0f} "
            f"events/s delivered; transition → receipt p50 {latency['p50']} ms, p99 "
            f"{latency['p99']} ms; all delivered once, verified, in order: {check['ok']}"
        )
        for process in [simulator, *workers]:
            procs.end(process)

        # 2. outbox cost
        data = {
            "BENCH_DATA": write_data(ctx, "lifecycle_writers", [f"{u.id} {u.token}" for u in users])
        }
        rounds = 1 if s.quick else 2
        runs: dict[str, list[dict[str, Any]]] = {"with": [], "without": []}
        for _ in range(rounds):
            for key, service, label in (
                ("with", api, "POST+PUT, with the outbox"),
                ("without", bare, "POST+PUT, outbox a no-op"),
            ):
                say(f"  outbox cost: {label}")
                runs[key].append(
                    measure(
                        ctx,
                        "call_create_end",
                        service,
                        service.url,
                        "call_create_end.lua",
                        env=data,
                        label=f"lifecycle {label}",
                        database=CALLS_DB,
                        after=after_run(ctx, "call_create_end"),
                    )
                )

        # The database's side: pgbench of the same transactions with and without the outbox.
        pg_url = ctx.calls_url.replace("postgresql+psycopg2://", "postgresql://", 1)
        tps: dict[str, list[float]] = {"with": [], "without": []}
        for _ in range(rounds):
            for key, script in (
                ("with", "call_create_end.sql"),
                ("without", "call_create_end_no_outbox.sql"),
            ):
                result = run_pgbench(
                    s,
                    f"pgbench {script}",
                    pg_url,
                    BENCH / "pgbench" / script,
                    s.pg_clients,
                    {"nusers": str(s.writers)},
                )
                say(f"  pgbench {script}: {result['tps']:.0f} tps")
                tps[key].append(result["tps"])

        def mean(key: str, field_name: str) -> float:
            values = [r[field_name] for r in runs[key] if r.get(field_name) is not None]
            return sum(values) / len(values) if values else 0.0

        outbox: dict[str, Any] = {
            "rounds": rounds,
            "with": runs["with"],
            "without": runs["without"],
        }
        for field_name in ("rps", "p50_ms", "p99_ms", "cpu_ms_per_req"):
            outbox[f"{field_name}_with"] = round(mean("with", field_name), 2)
            outbox[f"{field_name}_without"] = round(mean("without", field_name), 2)
        if outbox["rps_without"]:
            outbox["throughput_ratio"] = round(outbox["rps_with"] / outbox["rps_without"], 3)
        if outbox["p50_ms_without"]:
            outbox["p50_ratio"] = round(outbox["p50_ms_with"] / outbox["p50_ms_without"], 3)
        outbox["pgbench_tps_with"] = round(sum(tps["with"]) / rounds, 1)
        outbox["pgbench_tps_without"] = round(sum(tps["without"]) / rounds, 1)
        outbox["pgbench_ratio"] = round(
            outbox["pgbench_tps_with"] / outbox["pgbench_tps_without"], 3
        )
        outbox["extra_cpu_ms_per_request"] = round(
            outbox["cpu_ms_per_req_with"] - outbox["cpu_ms_per_req_without"], 3
        )
        out["outbox"] = outbox
        say(
            f"  outbox cost: {outbox['rps_with']:.0f} vs {outbox['rps_without']:.0f} req/s "
            f"(×{outbox.get('throughput_ratio')}), p50 {outbox['p50_ms_with']:.1f} vs "
            f"{outbox['p50_ms_without']:.1f} ms, CPU/request "
            f"+{outbox['extra_cpu_ms_per_request']} ms"
        )

        # 3. drain
        backlog = pending_events(ctx)
        limit = 60 if s.quick else 120
        say(f"  drain: {backlog} pending events, {s.lifecycle_workers} worker(s), ≤ {limit}s")
        before = len(receiver.snapshot())
        workers = start_workers()
        # Time from the first delivery (the worker's start-up is not delivery).
        wait_until("the first delivery", lambda: len(receiver.snapshot()) > before, 60)
        first = time.monotonic()
        try:
            wait_until("the backlog", lambda: pending_events(ctx) == 0, limit)
        except BenchError:
            pass  # a partial drain still measures the rate
        elapsed = time.monotonic() - first
        drained = len(receiver.snapshot()) - before
        for process in workers:
            procs.end(process)
        out["drain"] = {
            "backlog": backlog,
            "delivered": drained,
            "seconds": round(elapsed, 1),
            "events_per_s": round(drained / elapsed, 1) if elapsed else None,
            "unverified": receiver.unverified,
        }
        say(f"  drain: {drained} events in {elapsed:.1f}s = {drained / elapsed:.0f} events/s")
    finally:
        receiver.close()
        for service in (api, bare, auth):
            procs.stop(service)


# --------------------------------------------------------------------------- report


def fmt(value: Any, digits: int = 0) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def table(results: dict[str, Any]) -> str:
    base = results["baselines"]
    lines = [
        f"{'scenario':<26} {'req/s':>8} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} "
        f"{'errors':>6} {'×flask':>6} {'×pg':>6} {'RSS MB':>6} {'CPU ms':>6}",
        "-" * 97,
    ]
    flask = base.get("flask", {})
    lines.append(
        f"{'(a) bare Flask':<26} {fmt(flask.get('rps'), 0):>8} {fmt(flask.get('p50_ms'), 1):>7} "
        f"{fmt(flask.get('p95_ms'), 1):>7} {fmt(flask.get('p99_ms'), 1):>7} "
        f"{fmt(flask.get('errors')):>6} {'1.00':>6} {'':>6} {fmt(flask.get('rss_mb'), 0):>6} "
        f"{fmt(flask.get('app_cpu_ms_per_req'), 2):>6}"
    )
    pg = base.get("pgbench", {})
    for key, label in (
        ("call_create_end", "(b) pgbench create+end"),
        ("call_at_limit", "(b') pgbench at-limit"),
    ):
        if key in pg:
            lines.append(
                f"{label:<26} {fmt(pg[key]['tps'], 0):>8} {fmt(pg[key]['latency_avg_ms'], 1):>7}"
                f"{'':>16} {fmt(pg[key]['failed']):>6}    "
                f"(tps, avg latency; {pg[key]['clients']} clients)"
            )
    lines.append("-" * 97)

    def row(name: str, r: dict[str, Any]) -> str:
        return (
            f"{name:<26} {fmt(r['rps'], 0):>8} {fmt(r['p50_ms'], 1):>7} {fmt(r['p95_ms'], 1):>7} "
            f"{fmt(r['p99_ms'], 1):>7} {fmt(r['errors']):>6} {fmt(r['ratio_flask'], 2):>6} "
            f"{fmt(r['ratio_pg'], 2):>6} {fmt(r['rss_mb'], 0):>6} "
            f"{fmt(r.get('cpu_ms_per_req'), 2):>6}"
        )

    for name in SCENARIOS:
        if name in results["scenarios"]:
            lines.append(row(name, results["scenarios"][name]))
    nginx = results.get("proxy", {}).get("nginx")
    if nginx:
        lines.append("-" * 97)
        lines.append(
            f"through nginx, {nginx['workers_per_replica']} worker(s) per replica "
            "(×1: nginx → 1 call API replica, ×2: nginx → 2 replicas)"
        )
        for replicas in ("1", "2"):
            for name, r in nginx["replicas"][replicas].items():
                lines.append(row(f"{name} ×{replicas}", r))
        scaling = ", ".join(f"{k} {fmt(v, 2)}×" for k, v in nginx["scaling"].items())
        lines.append(f"scaling 1→2 replicas: {scaling}")
    lines += lifecycle_lines(results.get("lifecycle"))
    lines.append("")
    lines.append(
        "×flask: req/s ÷ bare Flask's; ×pg: call_create_end pairs/s (req/s ÷ 2) ÷ pgbench "
        "create+end tps,\ncall_at_limit req/s ÷ pgbench at-limit tps; RSS: peak per worker; "
        "CPU ms: CPU time per request\nof the service's workers plus its PostgreSQL backends."
    )
    return "\n".join(lines)


def lifecycle_lines(life: dict[str, Any] | None) -> list[str]:
    if not life or "steady" not in life:
        return []
    st, cfg = life["steady"], life["settings"]
    lat = st["latency_ms"]
    lines = [
        "-" * 97,
        f"lifecycle: {cfg['calls_at_once']} calls at once to the simulator's answering number "
        f"(rings {cfg['simulator_ring_s']:g}s, talks {cfg['simulator_talk_s']:g}s), "
        f"{cfg['webhook_workers']} webhook worker(s)",
        f"  steady {cfg['seconds']}s: {st['calls']} calls, {st['events']} events, "
        f"{fmt(st['events_per_s'], 0)} events/s delivered ({fmt(st['calls_per_s'], 1)} calls/s); "
        f"transition → webhook received p50 {fmt(lat['p50'], 0)} ms, p95 {fmt(lat['p95'], 0)} "
        f"ms, p99 {fmt(lat['p99'], 0)} ms; worker CPU {st['worker_cpu_ms_per_event']} ms/event",
    ]
    box = life.get("outbox")
    if box:
        lines.append(
            f"  outbox cost (POST+PUT pairs, wrk): {fmt(box['rps_with'], 0)} req/s with it, "
            f"{fmt(box['rps_without'], 0)} without (×{fmt(box.get('throughput_ratio'), 2)}); "
            f"p50 {fmt(box['p50_ms_with'], 1)} vs {fmt(box['p50_ms_without'], 1)} ms, "
            f"p99 {fmt(box['p99_ms_with'], 1)} vs {fmt(box['p99_ms_without'], 1)} ms; "
            f"CPU +{box['extra_cpu_ms_per_request']} ms/request"
        )
        lines.append(
            f"  outbox cost in the database (pgbench, the same SQL): "
            f"{fmt(box['pgbench_tps_with'], 0)} tps with it, {fmt(box['pgbench_tps_without'], 0)} "
            f"without (×{fmt(box['pgbench_ratio'], 2)})"
        )
    drain = life.get("drain")
    if drain and drain.get("events_per_s") is not None:
        lines.append(
            f"  drain: {drain['delivered']} of {drain['backlog']} pending events in "
            f"{drain['seconds']}s = {fmt(drain['events_per_s'], 0)} events/s"
        )
    return lines


def check_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    checks = []
    scenarios = results["scenarios"]
    for name, (what, attr, minimum) in TARGETS.items():
        if name in scenarios:
            value = scenarios[name][attr]
            checks.append(
                {"target": what, "value": value, "met": value is not None and value >= minimum}
            )
    slow = {
        n: r["p99_ms"]
        for n, r in scenarios.items()
        if n in CALL_SCENARIOS and r["p99_ms"] >= P99_TARGET_MS
    }
    checks.append(
        {
            "target": f"p99 < {P99_TARGET_MS:.0f} ms at "
            f"{results['machine']['settings']['connections']} connections, every call scenario",
            "value": slow or "all below",
            "met": not slow,
        }
    )
    errors = {n: r["errors"] for n, r in scenarios.items() if r["errors"]}
    nginx = results.get("proxy", {}).get("nginx")
    if nginx:
        for replicas, rows in nginx["replicas"].items():
            for n, r in rows.items():
                if r["errors"]:
                    errors[f"{n} (nginx ×{replicas})"] = r["errors"]
    checks.append(
        {
            "target": "no errors other than the expected 409s",
            "value": errors or 0,
            "met": not errors,
        }
    )
    life = results.get("lifecycle", {}).get("steady")
    if life:
        checks.append(
            {
                "target": "lifecycle: every event of every call delivered once, verified, in order",
                "value": life["check"],
                "met": life["check"]["ok"],
            }
        )
    held = results.get("checks", {})
    if held:
        checks.append(
            {
                "target": "the per-user limit holds under load (direct and behind nginx)",
                "value": held,
                "met": all(held.values()),
            }
        )
    return checks


def main(argv: list[str] | None = None) -> int:
    s = parse_args(argv)
    for tool in ("wrk", "pgbench"):
        if not shutil.which(tool):
            print(
                f"error: {tool} is not installed (`bash bench/install_tools.sh` as root)",
                file=sys.stderr,
            )
            return 2
    workdir = Path(tempfile.mkdtemp(prefix="clickcall-bench-"))
    procs = Processes(workdir, s.worker_class)
    ctx = Context(s, workdir, procs)
    ctx.results = {
        "machine": machine_facts(s),
        "baselines": {},
        "scenarios": {},
    }
    mode = "QUICK" if s.quick else "full"
    say(
        f"ClickCall benchmark ({mode}): {s.duration}s per run, {s.warmup}s warm-up, "
        f"work dir {workdir}"
    )
    if os.getloadavg()[0] > (os.cpu_count() or 1):
        say(
            f"note: load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores: "
            "the numbers will be noisy"
        )
    status = 0
    try:
        setup_databases(ctx)
        stack = start_stack(ctx)
        seed_data(ctx)
        procs.wait_ready(stack.all())
        say("all services ready")
        run_baselines(ctx, stack)
        run_scenarios(ctx, stack)
        run_proxy(ctx, stack)
        if not s.only or "lifecycle" in s.only:
            run_lifecycle(ctx, stack)
    except KeyboardInterrupt:
        say("interrupted")
        status = 130
    except BenchError as exc:
        say(f"FAILED: {exc}")
        status = 1
    except Exception as exc:  # e.g. PostgreSQL unreachable: say so, then clean up
        import traceback

        traceback.print_exc()
        say(f"FAILED: {type(exc).__name__}: {exc}")
        status = 1
    finally:
        procs.stop_all()
        for app in (ctx.auth_flask, ctx.call_flask):
            if app is not None:
                with app.app_context():
                    app.extensions["sqlalchemy"].engine.dispose()
        if not s.keep:
            for name in (AUTH_DB, CALLS_DB):
                try:
                    seeding.drop_database(s.postgres_url, name)
                except Exception as exc:
                    print(f"warning: dropping {name}: {exc}", file=sys.stderr)
            shutil.rmtree(workdir, ignore_errors=True)
    if status:
        return status
    ctx.results["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    ctx.results["machine"]["wall_time_s"] = round(time.monotonic() - T0, 1)
    ctx.results["targets"] = check_targets(ctx.results)
    s.out.write_text(json.dumps(ctx.results, indent=2) + "\n")
    print()
    print(table(ctx.results))
    print()
    for check in ctx.results["targets"]:
        mark = "met   " if check["met"] else "MISSED"
        print(f"  [{mark}] {check['target']}: {check['value']}")
    print()
    say(f"wrote {s.out.relative_to(ROOT) if s.out.is_relative_to(ROOT) else s.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
