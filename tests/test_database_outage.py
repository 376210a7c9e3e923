"""A database outage, and a database short of connections, against real server
processes: the test starts a throwaway database server of its own (its own
data directory and port).

An outage: it takes the database away while ``message-queue`` runs, and
brings it back: PostgreSQL is killed and started again; MariaDB is frozen
(SIGSTOP: the kernel still accepts connections, nothing answers them, as with
a database host that hangs) and thawed. While it is away every request
answers ``503 database_unavailable`` within a bound set by MQ_DB_TIMEOUT;
once it is back every server process serves again, without a restart.

A burst: many more requests at once than the database's ``max_connections``
each wait for one of the process's MQ_DB_CONNECTIONS connections, and all are
served.

The SQLite suite runs the PostgreSQL and the MariaDB case, each server
database's suite its own."""

import os
import shutil
import signal
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from glob import glob
from pathlib import Path

import pytest
import requests
from conftest import Server, free_port, wait_until
from django.db import connection

pytestmark = pytest.mark.django_db(transaction=True)

DB_TIMEOUT = 2
# Fresh connections per check, so that both server processes are asked.
ROUNDS = 12


class Throwaway:
    """A database server in a temporary directory, on its own port."""

    user = ""

    def __init__(self, max_connections: int = 100):
        self.max_connections = max_connections
        self.dir = Path(tempfile.mkdtemp(prefix="mq-outage-"))
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        if os.geteuid() == 0:
            shutil.chown(self.dir, self.user)

    def run(self, *argv: str) -> None:
        subprocess.run(argv, check=True, capture_output=True, timeout=120, **self.as_user())

    def as_user(self) -> dict:
        return {"user": self.user, "group": self.user} if os.geteuid() == 0 else {}

    def start(self) -> None:
        self.process = subprocess.Popen(
            self.server_argv(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            **self.as_user(),
        )
        wait_until(self.answers, 60, f"{self.user} answering on port {self.port}")

    def answers(self) -> bool:
        assert self.process.poll() is None, f"the database server exited: {self.process.returncode}"
        try:
            self.query("SELECT 1")
        except Exception:
            return False
        return True

    def take_away(self) -> None:
        self.process.send_signal(signal.SIGQUIT)
        self.process.wait(timeout=30)

    def bring_back(self) -> None:
        self.start()

    def remove(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()  # a fast shutdown: its own processes end too
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


class PostgreSQL(Throwaway):
    # take_away: an immediate shutdown, the postmaster ends every connection at
    # once, as a crash does.
    user = "postgres"

    def __init__(self, **limits):
        super().__init__(**limits)
        bin_dir = sorted(glob("/usr/lib/postgresql/*/bin"))[-1]
        self.bin = Path(bin_dir)
        self.run(str(self.bin / "initdb"), "-D", str(self.dir / "data"), "-U", "postgres",
                 "--auth=trust", "--no-sync")  # fmt: skip
        self.start()
        self.query("CREATE DATABASE mq_outage")
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/mq_outage"

    def server_argv(self) -> list[str]:
        data, port = str(self.dir / "data"), str(self.port)
        return [str(self.bin / "postgres"), "-D", data, "-p", port, "-k", str(self.dir),
                "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
                "-c", f"max_connections={self.max_connections}",
                "-c", "superuser_reserved_connections=0"]  # fmt: skip

    def query(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(
            host="127.0.0.1", port=self.port, user="postgres", dbname="postgres",
            autocommit=True, connect_timeout=2,
        ) as conn:  # fmt: skip
            conn.execute(sql)


class MariaDB(Throwaway):
    user = "mysql"

    def take_away(self) -> None:
        self.process.send_signal(signal.SIGSTOP)

    def bring_back(self) -> None:
        self.process.send_signal(signal.SIGCONT)
        wait_until(self.answers, 60, f"{self.user} answering on port {self.port}")

    def __init__(self, **limits):
        super().__init__(**limits)
        self.run("mariadb-install-db", "--no-defaults", f"--datadir={self.dir / 'data'}",
                 "--auth-root-authentication-method=normal", "--skip-test-db")  # fmt: skip
        self.start()
        self.query("CREATE DATABASE mq_outage")
        self.url = f"mysql://root@127.0.0.1:{self.port}/mq_outage"

    def server_argv(self) -> list[str]:
        return ["mariadbd", "--no-defaults", f"--datadir={self.dir / 'data'}",
                f"--port={self.port}", f"--socket={self.dir / 'mariadb.sock'}",
                "--bind-address=127.0.0.1", "--skip-log-bin",
                f"--max-connections={self.max_connections}"]  # fmt: skip

    def query(self, sql: str) -> None:
        import MySQLdb

        conn = MySQLdb.connect(host="127.0.0.1", port=self.port, user="root", connect_timeout=2)
        try:
            conn.cursor().execute(sql)
        finally:
            conn.close()


KINDS = {"postgresql": PostgreSQL, "mariadb": MariaDB}
# The suite's own database decides: the SQLite suite runs both.
RUN = {"sqlite": ["postgresql", "mariadb"], "postgresql": ["postgresql"], "mysql": ["mariadb"]}


@pytest.fixture(params=RUN[connection.vendor])
def database(request):
    throwaway = KINDS[request.param]()
    yield throwaway
    throwaway.remove()


def send(server: Server) -> requests.Response:
    return requests.post(server.url + "/message/new", json={"payload": "x"}, timeout=DB_TIMEOUT + 8)


def test_an_outage_is_503_within_the_timeout_and_every_process_serves_once_it_is_back(
    database,
):
    server = Server(DATABASE_URL=database.url, MQ_WORKERS="2", MQ_DB_TIMEOUT=str(DB_TIMEOUT))
    try:
        server.start()
        assert send(server).status_code == 201

        database.take_away()
        for _ in range(3):
            response = send(server)  # raises if no answer within its timeout
            assert response.status_code == 503
            assert response.json()["error"] == "database_unavailable"
        assert requests.get(server.url + "/health", timeout=DB_TIMEOUT + 8).status_code == 503

        database.bring_back()
        statuses: list[int] = []

        def serving() -> bool:
            statuses.append(send(server).status_code)
            return statuses[-ROUNDS:] == [201] * ROUNDS

        wait_until(serving, 30, f"{ROUNDS} sends in a row answered 201")
        assert set(statuses) <= {201, 503}
        taken = requests.get(server.url + "/messages/next?count=100", timeout=10).json()
        # The one sent before the outage, and every one answered 201 since; no 503 stored one.
        assert len(taken["messages"]) == 1 + statuses.count(201)
    finally:
        server.stop()


# The throwaway database's max_connections, and each burst's concurrent requests.
SMALL = 6
BURST = 48


@pytest.fixture(params=RUN[connection.vendor])
def small_database(request):
    throwaway = KINDS[request.param](max_connections=SMALL)
    yield throwaway
    throwaway.remove()


def test_a_burst_past_the_databases_max_connections_waits_for_connections_and_is_served(
    small_database,
):
    # Room to spare below SMALL: PostgreSQL's long-poll watcher has its own connection.
    server = Server(
        DATABASE_URL=small_database.url, MQ_WORKERS="1", MQ_DB_CONNECTIONS=str(SMALL - 2),
        MQ_DB_TIMEOUT="20",
    )  # fmt: skip
    try:
        server.start()
        with ThreadPoolExecutor(BURST) as pool:
            sends = list(pool.map(lambda _: send(server).status_code, range(3 * BURST)))
            polls = list(pool.map(
                lambda _: requests.get(server.url + "/message/next?wait=1", timeout=30).status_code,
                range(BURST),
            ))  # fmt: skip
        assert sends == [201] * (3 * BURST)
        assert polls == [200] * BURST
        ready = requests.get(server.url + "/queues", timeout=10).json()
        counts = [(q["name"], q["ready"], q["leased"]) for q in ready["queues"]]
        assert counts == [("default", 2 * BURST, BURST)]
    finally:
        server.stop()
