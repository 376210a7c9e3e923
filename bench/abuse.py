"""Slow clients and many waiters against a real ``message-queue`` (README, "Failure
and abuse"): how ordinary requests fare beside them, and what the server does with
the connections. Not a timed test: it prints what it measured.

    python bench/abuse.py slow --connections 1000     # idle, half headers, kept alive, endless
    python bench/abuse.py waiters --connections 1000  # parked long-polls (wait=20)

It starts the server itself on a fresh SQLite file (``--database-url`` for another)
with the default settings, unless ``--server-env NAME=VALUE`` overrides some.
"""

import argparse
import os
import selectors
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import requests

ROOT = Path(__file__).resolve().parent.parent


def start_server(port: int, database_url: str, env: dict, workdir: str) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-m", "mq_project.cli", "--port", str(port)],
        cwd=workdir,
        env={
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "DATABASE_URL": database_url,
            "MQ_ACCESS_LOG": "0",
            **env,
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{port}/health", timeout=1).ok:
                return process
        except requests.RequestException:
            time.sleep(0.1)
    raise SystemExit("the server did not start")


def connect(port: int, data: bytes = b"") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    if data:
        sock.sendall(data)
    return sock


def ordinary_requests(url: str, count: int) -> list[float]:
    """Milliseconds of ``count`` send + next pairs on queue ``other``, each on a new connection."""
    times = []
    for n in range(count):
        for method, path, body in [
            ("POST", "/queues/other/message/new", {"payload": n}),
            ("GET", "/queues/other/message/next", None),
        ]:
            started = time.perf_counter()
            response = requests.request(method, url + path, json=body, timeout=30)
            times.append((time.perf_counter() - started) * 1000)
            assert response.status_code in (200, 201), response.text
    return times


def summary(times: list[float]) -> str:
    times = sorted(times)
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
    median = statistics.median(times)
    return f"{len(times)} requests: p50 {median:.1f} ms, p99 {p99:.1f} ms, max {times[-1]:.1f} ms"


def closed_within(sockets: list[socket.socket], seconds: float) -> tuple[int, float]:
    """How many of ``sockets`` the server closed within ``seconds``, and when the last was."""
    selector = selectors.DefaultSelector()
    for sock in sockets:
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
    started, closed, last = time.monotonic(), 0, 0.0
    while closed < len(sockets) and time.monotonic() - started < seconds:
        for key, _ in selector.select(timeout=0.1):
            try:
                data = key.fileobj.recv(65536)
            except ConnectionError:
                data = b""
            if not data:
                selector.unregister(key.fileobj)
                closed += 1
                last = time.monotonic() - started
    selector.close()
    return closed, last


def say(*parts) -> None:
    print(*parts, flush=True)  # noqa: T201


def slow(port: int, url: str, connections: int) -> None:
    group = connections // 4
    timeout = float(os.environ.get("MQ_CLIENT_TIMEOUT", 5))
    opened = time.monotonic()
    idle = [connect(port) for _ in range(group)]
    half = [connect(port, b"GET /message/next HTTP/1.1\r\nHost: x\r\n") for _ in range(group)]
    kept = [connect(port, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n") for _ in range(group)]
    for sock in kept:
        sock.recv(65536)
    endless = [
        connect(
            port,
            b"POST /message/new HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n" + b'{"payload": "',
        )
        for _ in range(group)
    ]
    say(f"{4 * group} connections open in {time.monotonic() - opened:.1f} s")
    say("ordinary requests beside them:", summary(ordinary_requests(url, 100)))
    for name, sockets in [("idle", idle), ("half headers", half), ("kept alive", kept)]:
        closed, last = closed_within(sockets, timeout + 10)
        say(f"{name}: {closed}/{len(sockets)} closed by the server, the last {last:.1f} s after")
    closed, _ = closed_within(endless, 2)
    say(f"endless bodies: {closed}/{len(endless)} closed by the server")
    for sock in idle + half + kept + endless:
        sock.close()


def waiters(port: int, url: str, connections: int, process: psutil.Process) -> None:
    polls = [
        connect(port, b"GET /message/next?wait=20 HTTP/1.1\r\nHost: x\r\n\r\n")
        for _ in range(connections)
    ]
    time.sleep(3)  # all parked
    group = [process, *process.children(recursive=True)]
    cpu = sum(p.cpu_times().user + p.cpu_times().system for p in group)
    time.sleep(8)
    cpu = sum(p.cpu_times().user + p.cpu_times().system for p in group) - cpu
    say(f"{connections} parked long-polls: server CPU {cpu / 8 * 100:.1f} % of a core over 8 s")
    say("ordinary requests beside them:", summary(ordinary_requests(url, 250)))
    for sock in polls:
        sock.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["slow", "waiters"])
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--port", type=int, default=19100)
    parser.add_argument("--database-url")
    parser.add_argument("--server-env", action="append", default=[])
    args = parser.parse_args()
    env = dict(item.split("=", 1) for item in args.server_env)
    os.environ.update(env)
    with tempfile.TemporaryDirectory() as workdir:
        database_url = args.database_url or f"sqlite:///{workdir}/abuse.sqlite3"
        process = start_server(args.port, database_url, env, workdir)
        url = f"http://127.0.0.1:{args.port}"
        try:
            if args.what == "slow":
                slow(args.port, url, args.connections)
            else:
                waiters(args.port, url, args.connections, psutil.Process(process.pid))
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)


if __name__ == "__main__":
    main()
