"""The ``message-queue`` command itself, run as a real process: its options,
refusing an address in use, its log, static files, and the secret file."""

import os
import re
import signal
import stat
import subprocess
import sys

import pytest
import requests
from conftest import ROOT, database_url, free_port, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ")


def command(*args: str, cwd=ROOT, env=None, **kwargs) -> subprocess.CompletedProcess:
    """Run ``message-queue ARGS`` to its end."""
    return subprocess.run(
        [sys.executable, "-m", "mq_project.cli", *args],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        **kwargs,
    )


class Logged:
    """A ``message-queue`` process whose log (stdout and stderr) goes to a file."""

    def __init__(self, tmp_path, *args: str, **env: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tmp_path / "server.log"
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "mq_project.cli", *args],
                cwd=ROOT,
                env={**os.environ, "DATABASE_URL": database_url(), "PORT": str(self.port), **env},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(self) -> "Logged":
        def answers() -> bool:
            assert self.process.poll() is None, self.log.read_text()
            try:
                return requests.get(self.url + "/health", timeout=1).status_code == 200
            except requests.RequestException:
                return False

        wait_until(answers, 30, "answer on /health")
        return self

    def stop(self) -> list[str]:
        """SIGTERM, as a service manager stops it; the lines it logged."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=15)
        return self.log.read_text().splitlines()

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


@pytest.fixture
def logged(tmp_path):
    started: list[Logged] = []

    def start(*args: str, **env: str) -> Logged:
        server = Logged(tmp_path, *args, **env)
        started.append(server)
        return server

    yield start
    for server in started:
        server.kill()


def test_help_prints_the_options_and_starts_nothing(tmp_path):
    result = command("--help", cwd=tmp_path)

    assert result.returncode == 0
    assert result.stdout.startswith("usage: message-queue")
    for option in ("--host", "--port", "--workers", "--threads", "--version"):
        assert option in result.stdout
    assert list(tmp_path.iterdir()) == []  # no database, no secret file: nothing ran


def test_version_prints_the_version_and_starts_nothing(tmp_path):
    result = command("--version", cwd=tmp_path)

    assert result.returncode == 0
    assert result.stdout.strip() == "message-queue 0.1.0"
    assert list(tmp_path.iterdir()) == []


def test_a_second_server_on_the_same_address_fails_at_once(server_factory):
    first = server_factory()

    result = command(env={"DATABASE_URL": database_url(), "PORT": str(first.port)})

    assert result.returncode != 0
    assert f"cannot listen on 127.0.0.1:{first.port}: Address already in use" in result.stderr
    assert requests.get(first.url + "/health", timeout=5).status_code == 200


def test_flags_override_the_environment(logged):
    other = free_port()
    server = logged("--port", str(other), "--workers", "1", "--threads", "7", PORT="1")
    server.url = f"http://127.0.0.1:{other}"
    server.wait_ready()

    lines = server.stop()

    started = f"serving on {server.url} (1 processes, up to 7 threads each)"
    assert any(started in line for line in lines), lines


def access_lines(lines: list[str]) -> list[str]:
    """The access lines but those of wait_ready's polls of /health."""
    return [line for line in lines if " INFO access: " in line and "/health" not in line]


def test_every_log_line_has_a_time_and_every_request_an_access_line(logged):
    server = logged().wait_ready()
    requests.post(server.url + "/message/new", json={"payload": 1}, timeout=5)
    requests.get(server.url + "/message/next", timeout=5)
    requests.get(server.url + "/nowhere", timeout=5)
    expected = [
        r'"POST /message/new" 201 [\d.]+ ms$',
        r'"GET /message/next" 200 [\d.]+ ms$',
        r'"GET /nowhere" 404 [\d.]+ ms$',
    ]
    # A request's line is written before its answer is sent; the log is read
    # until all three are there all the same (another process writes the file).
    wait_until(lambda: len(access_lines(server.log.read_text().splitlines())) >= 3, 10, "lines")

    lines = server.stop()

    assert lines and all(TIMESTAMP.match(line) for line in lines), lines
    assert "serving on" in lines[0]
    assert any("stopped serving" in line for line in lines)
    access = access_lines(lines)
    assert len(access) == 3, access
    for pattern in expected:
        assert any(re.search(pattern, line) for line in access), (pattern, access)


def test_a_line_break_in_a_path_does_not_start_a_log_line(logged):
    server = logged().wait_ready()
    requests.get(server.url + "/forged%0A2026-01-01%2000:00:00,000%20INFO%20x", timeout=5)
    wait_until(lambda: access_lines(server.log.read_text().splitlines()), 10, "the line")

    lines = server.stop()

    assert all(TIMESTAMP.match(line) for line in lines), lines
    assert any('"GET /forged\\n2026-01-01 00:00:00,000 INFO x" 404' in line for line in lines)


def test_the_access_log_can_be_turned_off(logged):
    server = logged(MQ_ACCESS_LOG="0").wait_ready()
    requests.get(server.url + "/message/next", timeout=5)

    lines = server.stop()

    assert not [line for line in lines if " INFO access: " in line]
    assert any("stopped serving" in line for line in lines)


def assert_static_files_served(url: str) -> None:
    css = requests.get(url + "/static/admin/css/base.css", timeout=5)
    assert css.status_code == 200
    assert css.headers["Content-Type"].startswith("text/css")
    docs = requests.get(url + "/api/docs/", timeout=5)
    assert docs.status_code == 200
    scripts = re.findall(r'src="(/static/[^"]+\.js)"', docs.text)
    assert scripts
    for script in scripts:
        response = requests.get(url + script, timeout=5)
        assert response.status_code == 200, script
        assert b"function" in response.content


def test_message_queue_serves_static_files_without_debug(server_factory):
    server = server_factory(DEBUG="0")

    assert_static_files_served(server.url)


def test_runserver_serves_static_files_without_debug():
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": database_url(), "DEBUG": "0"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:

        def answers() -> bool:
            assert process.poll() is None
            try:
                return requests.get(url + "/health", timeout=1).status_code == 200
            except requests.RequestException:
                return False

        wait_until(answers, 30, "runserver answering")
        assert_static_files_served(url)
    finally:
        process.terminate()
        process.wait(timeout=15)


def test_the_secret_file_is_created_readable_by_its_owner_only(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("SECRET_KEY", None)
    subprocess.run(
        [sys.executable, "-c", "import mq_project.settings"], cwd=tmp_path, env=env, check=True
    )

    secret = tmp_path / "message-queue.secret"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert len(secret.read_text()) >= 50
