"""Private PostgreSQL and Redis servers that a test may kill and restart (no tests here).

The system services on 5432/6379 are shared with other people, so the restart tests start their
own instances from the installed binaries, on free loopback ports, with their data in a temp dir,
and stop them afterwards. A restart is a hard kill followed by a start on the same port and data,
as when the machine running the service reboots or the process crashes.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from tests.test_jobs_helpers import free_port, wait_until
from tests.test_scale_helpers import port_open

PG_BIN = Path("/usr/lib/postgresql/15/bin")
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def postgres_binaries_problem() -> str | None:
    """Why a private PostgreSQL cannot be started here, or None when it can."""
    for name in ("initdb", "postgres", "pg_ctl"):
        if not (PG_BIN / name).exists() and not shutil.which(name):
            return f"no {name} binary (PostgreSQL server package) for a private instance"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root without a 'postgres' user to own a private PostgreSQL"
    return None


def redis_binary_problem() -> str | None:
    return None if Path(REDIS_SERVER).exists() else "no redis-server binary for a private broker"


def _pg(name: str) -> str:
    return str(PG_BIN / name) if (PG_BIN / name).exists() else str(shutil.which(name))


def _as_postgres_user(args: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: drop to the system 'postgres' user when we are root."""
    if os.geteuid() != 0:
        return args
    return ["setpriv", "--reuid=postgres", "--regid=postgres", "--clear-groups", *args]


@dataclass
class PrivatePostgres:
    """One PostgreSQL cluster in `datadir` listening on 127.0.0.1:`port` (trust auth)."""

    datadir: Path
    port: int
    log: Path
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        args = [
            _pg("postgres"),
            "-D",
            str(self.datadir),
            "-p",
            str(self.port),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            f"unix_socket_directories={self.datadir}",
            "-c",
            "fsync=off",  # a throwaway cluster: durability across a crash is not under test
            "-c",
            "max_connections=300",
        ]
        handle = self.log.open("ab")
        self.proc = subprocess.Popen(
            _as_postgres_user(args), stdout=handle, stderr=subprocess.STDOUT
        )
        handle.close()
        wait_until(self._accepting, 60, interval=0.2)

    def _accepting(self) -> bool:
        assert self.proc is not None and self.proc.poll() is None, self.log.read_text()[-2000:]
        import psycopg

        try:
            with psycopg.connect(
                f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", connect_timeout=2
            ):
                return True
        except psycopg.OperationalError:
            return False

    def kill(self) -> None:
        """SIGKILL of the postmaster and its backends: every connection drops at once."""
        assert self.proc is not None
        children = _children(self.proc.pid)
        self.proc.kill()
        self.proc.wait(timeout=30)
        for pid in children:
            _kill_quietly(pid)
        wait_until(lambda: not port_open(("127.0.0.1", self.port)), 30)
        (self.datadir / "postmaster.pid").unlink(missing_ok=True)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # fast shutdown
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


@contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    root = Path(tempfile.mkdtemp(prefix="olps-pg-"))
    datadir = root / "data"
    datadir.mkdir()
    if os.geteuid() == 0:
        record = pwd.getpwnam("postgres")
        for path in (root, datadir):
            os.chown(path, record.pw_uid, record.pw_gid)
    log = root / "postgres.log"
    init = _as_postgres_user(
        [_pg("initdb"), "-D", str(datadir), "-U", "postgres", "-A", "trust", "--no-sync"]
    )
    subprocess.run(init, check=True, capture_output=True, timeout=120)
    server = PrivatePostgres(datadir, free_port(), log)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class PrivateRedis:
    """A redis-server with append-only persistence (as deploy/docker-compose.yml runs it)."""

    workdir: Path
    port: int
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = [
            REDIS_SERVER,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.workdir),
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--save",
            "",
            "--logfile",
            str(self.workdir / "redis.log"),
        ]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        wait_until(self._accepting, 30, interval=0.1)

    def _accepting(self) -> bool:
        assert self.proc is not None and self.proc.poll() is None
        import redis

        try:
            return bool(redis.Redis(port=self.port, socket_connect_timeout=1).ping())
        except redis.RedisError:
            return False

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


@contextmanager
def private_redis() -> Iterator[PrivateRedis]:
    workdir = Path(tempfile.mkdtemp(prefix="olps-redis-"))
    server = PrivateRedis(workdir, free_port())
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def _children(pid: int) -> list[int]:
    from tests.test_jobs_helpers import descendants

    return sorted(descendants(pid))


def _kill_quietly(pid: int) -> None:
    with suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def restart_pause(seconds: float) -> None:
    """How long a component stays down: long enough for every client to notice."""
    time.sleep(seconds)


RABBIT_SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")


def rabbitmq_binary_problem() -> str | None:
    if not RABBIT_SERVER.exists():
        return f"no {RABBIT_SERVER} for a private RabbitMQ node"
    return None


@dataclass
class PrivateRabbit:
    """A RabbitMQ node of its own (name, ports, data) beside any system one; it registers with
    the machine's epmd, which is left alone."""

    workdir: Path
    port: int
    name: str
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    def start(self) -> None:
        (self.workdir / "enabled_plugins").write_text("[].\n")
        (self.workdir / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.port}\nloopback_users = none\n"
        )
        env = {
            **os.environ,
            "HOME": str(self.workdir),  # its own Erlang cookie
            "RABBITMQ_NODENAME": f"{self.name}@localhost",
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(free_port()),
            "RABBITMQ_MNESIA_BASE": str(self.workdir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.workdir / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.workdir / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(self.workdir / "rabbitmq"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.workdir / "advanced.config"),
            "RABBITMQ_CONF_ENV_FILE": str(self.workdir / "rabbitmq-env.conf"),
            "RABBITMQ_PID_FILE": str(self.workdir / "pid"),
        }
        log = (self.workdir / "server.log").open("ab")
        self.proc = subprocess.Popen(
            [str(RABBIT_SERVER)], env=env, cwd=self.workdir, stdout=log, stderr=log,
            start_new_session=True,
        )  # fmt: skip
        log.close()
        wait_until(self._accepting, 120, interval=0.5)

    def _accepting(self) -> bool:
        assert self.proc is not None and self.proc.poll() is None
        import kombu

        try:
            with kombu.Connection(self.url, connect_timeout=2) as connection:
                connection.connect()
                return True
        except Exception:
            return False

    def kill(self) -> None:
        """SIGKILL of the node (beam) and its launcher; epmd is not ours and stays."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        wait_until(lambda: not port_open(("127.0.0.1", self.port)), 30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.kill()


@contextmanager
def private_rabbitmq() -> Iterator[PrivateRabbit]:
    workdir = Path(tempfile.mkdtemp(prefix="olps-rabbit-"))
    server = PrivateRabbit(workdir, free_port(), f"olps{os.getpid()}x{free_port()}")
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
