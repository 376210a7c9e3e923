"""Slow, idle and waiting clients against a real server, with real sockets: they
must not keep ordinary requests from being answered, and the server closes
connections that send nothing for MQ_CLIENT_TIMEOUT seconds."""

import selectors
import socket

import pytest
import requests
from conftest import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

# Each group is more than the 128 threads a server process had before (issue 9).
GROUP = 150


def connect(server, data: bytes = b"") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    if data:
        sock.sendall(data)
    return sock


def read_response(sock: socket.socket) -> bytes:
    """One whole response with a Content-Length (or none, for a 204)."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def closed_by_server(sockets: list[socket.socket], timeout: float) -> int:
    """How many of ``sockets`` the server closes within ``timeout`` seconds."""
    selector = selectors.DefaultSelector()
    for sock in sockets:
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
    closed = 0

    def poll() -> bool:
        nonlocal closed
        for key, _ in selector.select(timeout=0.1):
            try:
                data = key.fileobj.recv(65536)
            except ConnectionError:
                data = b""
            if not data:
                selector.unregister(key.fileobj)
                closed += 1
        return closed == len(sockets)

    try:
        wait_until(poll, timeout, f"{len(sockets)} connections closed by the server")
    except AssertionError:
        pass
    selector.close()
    return closed


def assert_ordinary_requests_answered(server) -> None:
    sent = requests.post(server.url + "/message/new", json={"payload": "through"}, timeout=5)
    assert sent.status_code == 201
    taken = requests.get(server.url + "/message/next", timeout=5)
    assert taken.status_code == 200
    assert taken.json()["payload"] == "through"


@pytest.fixture
def sockets():
    opened: list[socket.socket] = []
    yield opened
    for sock in opened:
        sock.close()


def test_idle_and_dribbling_connections_are_closed_after_the_client_timeout(
    server_factory, sockets
):
    server = server_factory(MQ_WORKERS="1", MQ_CLIENT_TIMEOUT="1")
    idle = [connect(server) for _ in range(GROUP)]
    half_headers = [
        connect(server, b"GET /message/next HTTP/1.1\r\nHost: x\r\n") for _ in range(GROUP)
    ]
    kept_alive = [connect(server, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n") for _ in range(GROUP)]
    sockets.extend(idle + half_headers + kept_alive)
    for sock in kept_alive:
        assert read_response(sock).startswith(b"HTTP/1.1 200")

    assert_ordinary_requests_answered(server)

    assert closed_by_server(idle, 10) == GROUP
    assert closed_by_server(half_headers, 10) == GROUP
    assert closed_by_server(kept_alive, 10) == GROUP


def test_bodies_that_never_end_leave_ordinary_requests_answered(server_factory, sockets):
    server = server_factory(MQ_WORKERS="1")
    head = (
        b"POST /message/new HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 1000\r\n\r\n" + b'{"payload": "'
    )
    sockets.extend(connect(server, head) for _ in range(2 * GROUP))

    assert_ordinary_requests_answered(server)


def test_long_polls_beyond_the_old_thread_count_leave_ordinary_requests_answered(
    server_factory, sockets
):
    server = server_factory(MQ_WORKERS="1")
    polls: list[socket.socket] = []
    # A few dozen at a time: on MariaDB each arriving poll connects to claim, and
    # 300 at once would pass its max_connections (151 by default).
    while len(polls) < 2 * GROUP:
        polls.extend(
            connect(server, b"GET /message/next?wait=20 HTTP/1.1\r\nHost: x\r\n\r\n")
            for _ in range(30)
        )
        server.wait_for_waiting(len(polls))
    sockets.extend(polls)

    sent = requests.post(server.url + "/message/new", json={"payload": "one"}, timeout=5)

    assert sent.status_code == 201
    assert requests.get(server.url + "/health", timeout=5).status_code == 200
    selector = selectors.DefaultSelector()
    for sock in polls:
        selector.register(sock, selectors.EVENT_READ)
    ready = selector.select(timeout=10)
    assert len(ready) == 1  # exactly one poll got the message; the others still wait
    assert read_response(ready[0][0].fileobj).startswith(b"HTTP/1.1 200")
    selector.close()
    assert server.waiting() == 2 * GROUP - 1


def test_more_connections_than_granians_default_limit_leave_ordinary_requests_answered(
    server_factory, sockets
):
    # granian accepted at most 512 connections per process (with two processes)
    # and made the next ones wait, idle or not.
    server = server_factory(MQ_WORKERS="2", MQ_CLIENT_TIMEOUT="20")
    sockets.extend(connect(server) for _ in range(1100))

    assert_ordinary_requests_answered(server)
