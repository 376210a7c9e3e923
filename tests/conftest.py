"""Shared fixtures. The database is real: SQLite by default, PostgreSQL or
MariaDB when DATABASE_URL points at one (pytest-django creates ``test_<name>``)."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import ports
import pytest
import requests
from django.db import connection
from django.test.client import Client, ClientHandler

from mq_project.handlers import WithoutMiddleware, is_page

ROOT = Path(__file__).resolve().parent.parent

# The SQS tests' server and clients (tests/sqs_support.py).
pytest_plugins = ["sqs_support"]


def database_url() -> str:
    """A DATABASE_URL naming the database the tests run on, for server processes."""
    s = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{s['NAME']}"
    scheme = {"postgresql": "postgres", "mysql": "mysql"}[connection.vendor]
    auth = quote(s["USER"] or "") + (":" + quote(s["PASSWORD"]) if s["PASSWORD"] else "")
    return f"{scheme}://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or ''}/{s['NAME']}"


def free_port() -> int:
    """A free port for a server on the test database (``ports``)."""
    return ports.free_port(connection.vendor)


class Server:
    """A real ``message-queue`` server process on the test database.

    It runs in its own process group, so ``kill`` takes its granian workers too,
    as a crash of the machine or an OOM kill of the whole service would.
    """

    def __init__(self, **env: str):
        self.env = {**os.environ, "DATABASE_URL": database_url(), "HOST": "127.0.0.1", **env}
        self.process: subprocess.Popen | None = None
        self.port = 0
        self.url = ""

    def spawn(self) -> "Server":
        """Start the process without waiting for it (see ``wait_ready``)."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mq_project.cli"],
            cwd=ROOT,
            env={**self.env, "PORT": str(self.port)},
            start_new_session=True,
        )
        return self

    def wait_ready(self, timeout: float = 30) -> "Server":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}")
            try:
                if requests.get(self.url + "/health", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"server did not answer /health within {timeout:g} s")

    def start(self) -> "Server":
        return self.spawn().wait_ready()

    def process_metric(self, name: str, queue: str | None = None) -> int:
        """A per-process metric of /metrics (``mq_waiting_requests``,
        ``mq_long_poll_wakeups_total``), summed over queues or of one; start the
        server with ``MQ_WORKERS="1"`` for it to be the whole server's."""
        text = requests.get(self.url + "/metrics", timeout=5).text
        pattern = rf'^{name}\{{queue="([^"]*)"\}} (\S+)$'
        return sum(
            int(float(n)) for q, n in re.findall(pattern, text, re.MULTILINE) if queue in (None, q)
        )

    def waiting(self) -> int:
        return self.process_metric("mq_waiting_requests")

    def wait_for_waiting(self, count: int, timeout: float = 20) -> None:
        """Until ``count`` long-polls are parked in this (one-process) server."""
        wait_until(lambda: self.waiting() >= count, timeout, f"{count} waiting long-polls")

    def kill(self) -> None:
        """``kill -9`` the server and all its worker processes."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def terminate(self, timeout: float = 15) -> int:
        """SIGTERM to the main process, as a service manager sends it; its exit code."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def group_alive(self) -> bool:
        """Whether any process of the server's group (main or worker) is still running."""
        try:
            os.killpg(self.process.pid, 0)
        except ProcessLookupError:
            return False
        return True

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pass
        if self.group_alive():  # a worker outlived its parent: never leave one behind
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def wait_until(condition, timeout: float, what: str) -> None:
    """Until ``condition()`` is true, checked every 20 ms; fails after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout:g} s")
        time.sleep(0.02)


class ServerFactory:
    """``server_factory(**env)`` starts one server; ``server_factory.many(n, **env)``
    starts ``n`` at once. ``env`` overrides the environment (PENDING_TIMEOUT, ...)."""

    def __init__(self):
        self.servers: list[Server] = []

    def __call__(self, **env: str) -> Server:
        return self.many(1, **env)[0]

    def many(self, count: int, **env: str) -> list[Server]:
        servers = [Server(**env) for _ in range(count)]
        self.servers.extend(servers)
        for server in servers:
            server.spawn()
        for server in servers:
            try:
                server.wait_ready()
            except RuntimeError:
                # Most likely its port was taken between free_port() and the bind: once more.
                server.stop()
                server.start()
        return servers

    def stop_all(self) -> None:
        for server in self.servers:
            server.stop()


@pytest.fixture
def server_factory(transactional_db):
    """Start real server processes on the test database; all are stopped afterwards."""
    factory = ServerFactory()
    yield factory
    factory.stop_all()


class APIClientHandler(WithoutMiddleware, ClientHandler):
    pass


class RoutedClientHandler:
    """The test client's handler, routing as ``mq_project.wsgi`` does: the API's
    paths reach their views through no middleware, the pages through all of it."""

    def __init__(self, enforce_csrf_checks: bool = False):
        self.api = APIClientHandler(enforce_csrf_checks)
        self.pages = ClientHandler(enforce_csrf_checks)

    def __call__(self, environ):
        return (self.pages if is_page(environ["PATH_INFO"]) else self.api)(environ)


@pytest.fixture
def client():
    """Django's test client, with the production routing of API and pages."""
    client = Client()
    client.handler = RoutedClientHandler()
    return client


@pytest.fixture
def api(client):
    """The Django test client with JSON helpers: real views, real database."""
    return Api(client)


class Api:
    def __init__(self, client):
        self.client = client

    def post(self, url: str, data=None, **extra):
        if data is None:
            return self.client.post(url, **extra)
        return self.client.post(url, json.dumps(data), content_type="application/json", **extra)

    def get(self, url: str, **extra):
        return self.client.get(url, **extra)

    def send(self, payload, queue: str | None = None) -> int:
        response = self.post(_route(queue, "message/new"), {"payload": payload})
        assert response.status_code == 201, response.content
        return response.json()["id"]

    def next(self, queue: str | None = None, **params):
        return self.client.get(_route(queue, "message/next"), params)

    def done(self, message_id, lease: str | None = None, queue: str | None = None):
        body = None if lease is None else {"lease": lease}
        return self.post(_route(queue, f"message/{message_id}/status/done"), body)


def _route(queue: str | None, tail: str) -> str:
    return f"/{tail}" if queue is None else f"/queues/{queue}/{tail}"


@pytest.fixture(autouse=True)
def fresh_process_state():
    """Start each test as a freshly started server process would: nothing cached
    about queues from an earlier test, whose database has been rolled back since."""
    from messages_app import runtime

    runtime.reset()


@pytest.fixture(autouse=True)
def counters_flushed_by_hand(settings):
    """No background flush of the counters in the test process (it would write
    beside the test's transaction): tests call ``counters.flush()`` themselves.
    Server processes started by the tests flush as in production."""
    settings.MQ_COUNTERS_FLUSH = 0


@pytest.fixture
def clock(time_machine):
    """Time stands still (at a whole second, so stored times compare exactly) until
    the test moves it with ``clock.shift(seconds)``; read it with ``timezone.now()``."""
    from datetime import UTC, datetime

    time_machine.move_to(datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC), tick=False)
    return time_machine


@pytest.fixture
def stored():
    """A snapshot of every stored queue, message and idempotency key, to prove a
    request changed nothing."""
    from messages_app.models import IdempotencyKey, Message, Queue

    def snapshot() -> tuple[list[dict], ...]:
        return (
            list(Queue.objects.order_by("name").values()),
            list(Message.objects.values()),
            list(IdempotencyKey.objects.order_by("id").values()),
        )

    return snapshot


@pytest.fixture
def admin(clock, settings, request):
    """pytest-django's ``admin_client``, logged in quickly (a fast password hasher) and
    after the clock stopped, so its session is valid at the frozen time."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    return request.getfixturevalue("admin_client")
