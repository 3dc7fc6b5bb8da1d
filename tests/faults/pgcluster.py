"""A throwaway PostgreSQL cluster (``initdb`` + ``pg_ctl``) that the fault tests may stop,
crash and restart at will — never the shared server.

``initdb`` refuses to run as root, so when we are root the cluster belongs to the
``postgres`` OS user (``runuser -u postgres``) and lives in a private folder under the
system temp dir (pytest's own temp dirs are mode 0700 and unreadable for ``postgres``).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from tests.e2e.servers import free_port

PG_VERSION_DEFAULT = "15"


def find_pg_bin() -> Path | None:
    """``$FAULTS_PG_BIN`` when set (and only it), else ``/usr/lib/postgresql/15/bin``, else
    the newest ``/usr/lib/postgresql/*/bin``, else the folder of ``initdb`` on the PATH."""
    candidates: list[str] = []
    if os.environ.get("FAULTS_PG_BIN"):
        candidates.append(os.environ["FAULTS_PG_BIN"])
    else:
        candidates.append(f"/usr/lib/postgresql/{PG_VERSION_DEFAULT}/bin")
        candidates += sorted(
            glob.glob("/usr/lib/postgresql/*/bin"),
            key=lambda p: int(p.split("/")[-2]) if p.split("/")[-2].isdigit() else 0,
            reverse=True,
        )
        initdb = shutil.which("initdb")
        if initdb:
            candidates.append(str(Path(initdb).parent))
    for candidate in candidates:
        path = Path(candidate)
        if (path / "initdb").is_file() and (path / "pg_ctl").is_file():
            return path
    return None


def unavailable_reason() -> str | None:
    """Why no throwaway cluster can be made here, or ``None`` when one can."""
    if find_pg_bin() is None:
        return "PostgreSQL server binaries (initdb, pg_ctl) not found; set FAULTS_PG_BIN"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no 'postgres' OS user to own the cluster"
        if shutil.which("runuser") is None:
            return "running as root and 'runuser' is missing"
    return None


class PgCluster:
    """One cluster on 127.0.0.1:<free port>; ``stop``/``start``/``crash`` for the faults."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="clickcall-faults-pg-"))
        self.datadir = self.root / "data"
        self.logfile = self.root / "postgres.log"
        self.port = free_port()
        self.as_postgres = os.geteuid() == 0
        self.user = "postgres"
        self.running = False
        if self.as_postgres:
            entry = pwd.getpwnam("postgres")
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        os.chmod(self.root, 0o700)

    # -- process plumbing -------------------------------------------------------------
    def _run(self, *args: str, timeout: float = 60, check: bool = True) -> str:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self.as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        proc = subprocess.run(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=timeout,
            cwd=self.root,
            text=True,
        )
        if check and proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}")
        return proc.stdout

    def init(self) -> None:
        self._run(
            "initdb",
            "-D",
            str(self.datadir),
            "--auth=trust",
            "-U",
            self.user,
            "--encoding=UTF8",
            "--no-locale",
            "--no-sync",
        )
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.root}'",
            "max_connections": "200",
            # Durability against an OS crash is not under test: a killed or stopped server
            # (the faults here) still keeps every acknowledged commit.
            "fsync": "off",
            "full_page_writes": "off",
            "shared_buffers": "32MB",
            "log_min_messages": "warning",
            "log_min_error_statement": "panic",
        }
        with open(self.datadir / "postgresql.conf", "a") as conf:
            conf.write("\n# clickcall fault-injection suite\n")
            for name, value in settings.items():
                conf.write(f"{name} = {value}\n")

    def start(self) -> None:
        self._run(
            "pg_ctl", "-D", str(self.datadir), "-l", str(self.logfile), "-w", "-t", "60", "start"
        )
        self.running = True

    def stop(self, mode: str = "fast") -> None:
        """``fast`` ends every session (clients see the connection closed); ``immediate`` is a
        crash: no checkpoint, WAL replay on the next start."""
        self._run("pg_ctl", "-D", str(self.datadir), "-w", "-t", "60", "-m", mode, "stop")
        self.running = False

    def destroy(self) -> None:
        if self.running:
            try:
                self.stop("immediate")
            except Exception:
                pass
        shutil.rmtree(self.root, ignore_errors=True)

    # -- URLs ---------------------------------------------------------------------------
    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{dbname}"

    def dsn(self, dbname: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user={self.user} dbname={dbname}"

    def wait_ready(self, timeout: float = 30) -> None:
        import psycopg2

        deadline = time.monotonic() + timeout
        while True:
            try:
                psycopg2.connect(self.dsn(), connect_timeout=2).close()
                return
            except psycopg2.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def log(self) -> str:
        try:
            return self.logfile.read_text(errors="replace")
        except OSError:
            return ""
