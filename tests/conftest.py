"""Shared fixtures. The database is real: SQLite by default, PostgreSQL or
MariaDB when DATABASE_URL points at one (pytest-django creates ``test_<name>``)."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import pytest
import requests
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


def database_url() -> str:
    """A DATABASE_URL naming the database the tests run on, for server processes."""
    s = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{s['NAME']}"
    scheme = {"postgresql": "postgres", "mysql": "mysql"}[connection.vendor]
    auth = quote(s["USER"] or "") + (":" + quote(s["PASSWORD"]) if s["PASSWORD"] else "")
    return f"{scheme}://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or ''}/{s['NAME']}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """A real ``message-queue`` server process on the test database."""

    def __init__(self, **env: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "DATABASE_URL": database_url(),
            "PORT": str(self.port),
            "HOST": "127.0.0.1",
            **env,
        }
        self.process: subprocess.Popen | None = None

    def start(self) -> "Server":
        # Its own session, so a crash test can kill the server and its workers at once.
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mq_project.cli"],
            cwd=ROOT,
            env=self.env,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}")
            try:
                if requests.get(self.url + "/health", timeout=1).status_code == 200:
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        raise RuntimeError("server did not answer /health within 30 s")

    def kill(self) -> None:
        """``kill -9`` the server and all its worker processes."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def server_factory(transactional_db):
    """Start real server processes on the test database; all are stopped afterwards."""
    servers: list[Server] = []

    def start(**env: str) -> Server:
        server = Server(**env)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()


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
