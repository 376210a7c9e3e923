"""A server killed with ``kill -9`` loses nothing that was acknowledged to a client,
a new server on the same database carries on where it stopped, and SIGTERM stops
a server cleanly."""

import threading
import time
from dataclasses import dataclass
from datetime import datetime

import pytest
import requests

from messages_app.models import Message

pytestmark = pytest.mark.django_db(transaction=True)

REQUEST_TIMEOUT = 20
# Short enough to wait for, long enough that a new server may start before it ends.
LEASE_SECONDS = 1.5


@dataclass
class Crash:
    """The state a killed server left behind, and a new server on the same database."""

    server: object
    acked: int
    leased: dict[int, datetime]  # id: lease end
    ready: list[int]
    payloads: dict[int, str]


@pytest.fixture
def crash(server_factory) -> Crash:
    """Six messages on a server: one acked, two leased for 1.5 s, three ready; then
    ``kill -9`` of the server and all its workers, and a new server."""
    first = server_factory()
    payloads = {}
    for n in range(6):
        sent = requests.post(
            first.url + "/message/new", json={"payload": f"m{n}"}, timeout=REQUEST_TIMEOUT
        )
        assert sent.status_code == 201
        payloads[sent.json()["id"]] = f"m{n}"

    acked = next_message(first, timeout=60)
    done = requests.post(
        first.url + f"/message/{acked['id']}/status/done",
        json={"lease": acked["lease"]},
        timeout=REQUEST_TIMEOUT,
    )
    assert done.status_code == 200
    leased = [next_message(first, timeout=LEASE_SECONDS) for _ in range(2)]

    first.kill()
    second = server_factory()
    return Crash(
        server=second,
        acked=acked["id"],
        leased={m["id"]: datetime.fromisoformat(m["lease_expires_at"]) for m in leased},
        ready=sorted(set(payloads) - {acked["id"]} - {m["id"] for m in leased}),
        payloads=payloads,
    )


def next_message(server, **params) -> dict | None:
    response = requests.get(server.url + "/message/next", params=params, timeout=REQUEST_TIMEOUT)
    if response.status_code == 204:
        return None
    assert response.status_code == 200, response.text
    return {**response.json(), "received_at": datetime.now().astimezone()}


def take_all(server, count: int, within: float) -> list[dict]:
    """Lease (for long) and ack messages until ``count`` came, polling while none is
    available, for at most ``within`` seconds."""
    taken = []
    deadline = time.monotonic() + within
    while len(taken) < count and time.monotonic() < deadline:
        message = next_message(server, timeout=60)
        if message is None:
            time.sleep(0.05)
            continue
        done = requests.post(
            server.url + f"/message/{message['id']}/status/done",
            json={"lease": message["lease"]},
            timeout=REQUEST_TIMEOUT,
        )
        assert done.status_code == 200, done.text
        taken.append(message)
    return taken


def test_a_message_acked_before_the_kill_stays_gone(crash):
    stored = set(Message.objects.values_list("id", flat=True))
    assert stored == set(crash.payloads) - {crash.acked}

    taken = take_all(crash.server, count=len(stored), within=LEASE_SECONDS + 10)
    assert crash.acked not in {m["id"] for m in taken}


def test_ready_messages_survive_the_kill_and_are_delivered_in_order(crash):
    taken = take_all(crash.server, count=len(crash.payloads) - 1, within=LEASE_SECONDS + 10)

    ready = [m for m in taken if m["id"] in crash.ready]
    assert [m["id"] for m in ready] == crash.ready
    assert [m["payload"] for m in ready] == [crash.payloads[i] for i in crash.ready]
    assert all(m["attempts"] == 1 for m in ready)


def test_leased_messages_come_back_once_their_lease_ends(crash):
    taken = take_all(crash.server, count=len(crash.payloads) - 1, within=LEASE_SECONDS + 10)

    back = {m["id"]: m for m in taken if m["id"] in crash.leased}
    assert set(back) == set(crash.leased)
    for message_id, lease_end in crash.leased.items():
        assert back[message_id]["received_at"] >= lease_end
        assert back[message_id]["attempts"] == 2
        assert back[message_id]["payload"] == crash.payloads[message_id]
    assert not Message.objects.exists()


def test_every_send_answered_201_before_a_kill_is_stored(server_factory):
    server = server_factory()
    confirmed: list[int] = []
    unexpected: list[object] = []
    killed = threading.Event()

    def produce() -> None:
        session = requests.Session()
        for n in range(2000):  # bounded; the kill ends it far sooner
            try:
                response = session.post(
                    server.url + "/message/new", json={"payload": n}, timeout=REQUEST_TIMEOUT
                )
            except requests.RequestException as error:
                if not killed.is_set():
                    unexpected.append(error)
                return
            if response.status_code != 201:
                unexpected.append(response.text)
                return
            confirmed.append(response.json()["id"])

    producers = [threading.Thread(target=produce) for _ in range(4)]
    for producer in producers:
        producer.start()
    deadline = time.monotonic() + 20
    while len(confirmed) < 200 and time.monotonic() < deadline and not unexpected:
        time.sleep(0.01)
    killed.set()
    server.kill()
    for producer in producers:
        producer.join(timeout=REQUEST_TIMEOUT + 5)

    assert unexpected == []
    assert len(confirmed) >= 200
    stored = set(Message.objects.values_list("id", flat=True))
    assert set(confirmed) <= stored


def test_sigterm_stops_the_server_cleanly(server_factory):
    server = server_factory()
    started = time.monotonic()

    exit_code = server.terminate(timeout=10)

    assert exit_code == 0
    assert time.monotonic() - started < 5
    assert not server.group_alive()


def test_sigterm_stops_the_server_while_a_long_poll_waits(server_factory):
    server = server_factory(MQ_WORKERS="1")
    answers = []

    def long_poll() -> None:
        try:
            response = requests.get(
                server.url + "/message/next", params={"wait": 20}, timeout=REQUEST_TIMEOUT + 10
            )
            answers.append(response.status_code)
        except requests.ConnectionError as error:
            answers.append(error)

    poller = threading.Thread(target=long_poll)
    poller.start()
    server.wait_for_waiting(1)
    started = time.monotonic()

    exit_code = server.terminate(timeout=30)
    stopped_after = time.monotonic() - started
    poller.join(timeout=REQUEST_TIMEOUT + 15)

    assert answers, "the waiting request got neither an answer nor a closed connection"
    assert exit_code == 0
    assert stopped_after < 5
    assert not server.group_alive()
