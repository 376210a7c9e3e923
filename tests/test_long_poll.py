"""Long polling: ``next?wait=<seconds>`` (up to 20) answers as soon as a message is
available, whichever server process it was sent to, and 204 at the deadline."""

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor

import pytest
import requests
from conftest import wait_until
from contract import assert_error
from django.test import Client

from messages_app import runtime
from messages_app.store import sqlite

pytestmark = pytest.mark.django_db

# Bounds far above what a wake-up takes; they only catch a poll that was never woken.
WAIT = 10
PROMPTLY = 2.0


class Poll:
    """A long-poll running in a thread: ``result()`` is (status, body, seconds
    from the start of the request to its answer, monotonic time of the answer)."""

    pool = ThreadPoolExecutor(max_workers=32)

    def __init__(self, url: str, timeout: float = 60, **params):
        self.future: Future = self.pool.submit(self._run, url, params, timeout)

    @staticmethod
    def _run(url: str, params: dict, timeout: float):
        started = time.monotonic()
        response = requests.get(url, params=params, timeout=timeout)
        answered = time.monotonic()
        body = response.json() if response.content else None
        return response.status_code, body, answered - started, answered

    def result(self):
        return self.future.result(timeout=60)


ONE_PROCESS = {"MQ_WORKERS": "1"}  # so that /metrics shows every waiting long-poll


# In-process


def test_a_long_poll_answers_at_once_when_a_message_is_waiting(api):
    message_id = api.send("ready")
    started = time.monotonic()

    response = api.next(wait=20)

    assert response.status_code == 200
    assert response.json()["id"] == message_id
    assert time.monotonic() - started < PROMPTLY


def test_a_batch_long_poll_answers_at_once_with_what_is_waiting(api):
    ids = [api.send(n) for n in range(3)]

    response = api.get("/messages/next", data={"count": 10, "wait": 20})

    assert [m["id"] for m in response.json()["messages"]] == ids


def test_a_wait_of_zero_does_not_wait(api):
    started = time.monotonic()

    response = api.next(wait=0)

    assert response.status_code == 204
    assert time.monotonic() - started < PROMPTLY


@pytest.mark.django_db(transaction=True)
def test_a_long_poll_joining_polls_that_wait_unwoken_waits_without_a_query(
    django_assert_num_queries,
):
    # The first poll's claim found nothing, and nothing woke it since: any message
    # that became deliverable would have (the watcher looks at least every second).
    first = threading.Thread(target=Client().get, args=("/message/next", {"wait": 3}))
    first.start()
    waiters = runtime.current().waiters
    wait_until(lambda: waiters.waiting()["default"] == 1, 10, "the first poll waiting")

    with django_assert_num_queries(0):
        response = Client().get("/message/next", {"wait": 0.2})

    assert response.status_code == 204
    first.join()


@pytest.mark.parametrize("wait", ["21", "-1", "x", "20.5", "1e9", "nan"])
def test_a_wait_that_is_not_0_to_20_seconds_is_refused_and_leases_nothing(api, stored, wait):
    api.send("x")
    before = stored()

    response = api.next(wait=wait)

    assert_error(response, 400, "invalid_wait")
    assert stored() == before


@pytest.mark.parametrize("wait", ["21", "-1", "x"])
def test_a_batch_wait_that_is_not_0_to_20_seconds_is_refused(api, stored, wait):
    api.send("x")
    before = stored()

    response = api.get("/messages/next", data={"count": 5, "wait": wait})

    assert_error(response, 400, "invalid_wait")
    assert stored() == before


# Real server processes sharing one database


@pytest.mark.django_db(transaction=True)
def test_a_long_poll_on_one_server_wakes_when_another_server_gets_a_message(
    server_factory, record_property
):
    consumer_side, producer_side = server_factory.many(2, **ONE_PROCESS)
    poll = Poll(consumer_side.url + "/message/next", wait=WAIT)
    consumer_side.wait_for_waiting(1)

    sent_at = time.monotonic()
    sent = requests.post(producer_side.url + "/message/new", json={"payload": "wake up"})

    status, body, _, answered = poll.result()
    record_property("wake_latency_across_servers_s", round(answered - sent_at, 3))
    assert status == 200
    assert body["id"] == sent.json()["id"]
    assert body["payload"] == "wake up"
    assert answered - sent_at < PROMPTLY


@pytest.mark.parametrize("inotify", [True, False], ids=["inotify", "ticking"])
def test_a_change_feed_learns_of_another_process_s_send_without_waiting_a_tick(
    server_factory, monkeypatch, inotify
):
    """The watcher's feed returns as soon as another process sends: on SQLite
    the send's write to the database's WAL file wakes it (where inotify is
    missing it reads every 50 ms); on PostgreSQL the NOTIFY; on MariaDB its
    probe every 0.1 s. The idle tick is made long, so a feed that would only
    see the send at its tick is caught."""
    monkeypatch.setattr(sqlite, "IDLE_TICK_SECONDS", 60)
    if not inotify:
        monkeypatch.setattr(sqlite, "INotify", None)
    server = server_factory()
    feed = runtime.current().store.change_feed()
    sending = []

    def send():
        sending.append(time.monotonic())
        requests.post(server.url + "/message/new", json={"payload": "x"})

    threading.Timer(0.5, send).start()
    try:
        started = time.monotonic()
        while time.monotonic() - started < 10:
            changed = bool(feed.changes()) or feed.everything_changed
            if changed and sending:
                break
        seen_after = time.monotonic() - sending[0]
    finally:
        feed.close()

    assert changed
    assert seen_after < PROMPTLY


@pytest.mark.django_db(transaction=True)
def test_a_long_poll_wakes_when_its_own_server_gets_a_message(server_factory, record_property):
    server = server_factory(**ONE_PROCESS)
    poll = Poll(server.url + "/queues/jobs/message/next", wait=WAIT)
    server.wait_for_waiting(1)

    sent_at = time.monotonic()
    requests.post(server.url + "/queues/jobs/message/new", json={"payload": "wake up"})

    status, body, _, answered = poll.result()
    record_property("wake_latency_same_process_s", round(answered - sent_at, 3))
    assert status == 200
    assert body["payload"] == "wake up"
    assert answered - sent_at < PROMPTLY


@pytest.mark.django_db(transaction=True)
def test_a_batch_long_poll_wakes_when_another_server_gets_a_batch(server_factory):
    consumer_side, producer_side = server_factory.many(2, **ONE_PROCESS)
    poll = Poll(consumer_side.url + "/queues/jobs/messages/next", count=10, wait=WAIT)
    consumer_side.wait_for_waiting(1)

    sent_at = time.monotonic()
    sent = requests.post(
        producer_side.url + "/queues/jobs/messages/new", json={"payloads": ["a", "b", "c"]}
    )

    status, body, _, answered = poll.result()
    assert status == 200
    assert body["messages"]
    assert {m["id"] for m in body["messages"]} <= set(sent.json()["ids"])
    assert answered - sent_at < PROMPTLY


@pytest.mark.django_db(transaction=True)
def test_a_long_poll_wakes_when_a_message_is_given_back_on_another_server(server_factory):
    consumer_side, producer_side = server_factory.many(2, **ONE_PROCESS)
    requests.post(producer_side.url + "/message/new", json={"payload": "retry me"})
    held = requests.get(producer_side.url + "/message/next", params={"timeout": 60}).json()
    poll = Poll(consumer_side.url + "/message/next", wait=WAIT)
    consumer_side.wait_for_waiting(1)

    given_at = time.monotonic()
    requests.post(
        producer_side.url + f"/message/{held['id']}/status/ready", json={"lease": held["lease"]}
    )

    status, body, _, answered = poll.result()
    assert status == 200
    assert (body["id"], body["attempts"]) == (held["id"], 2)
    assert answered - given_at < PROMPTLY


@pytest.mark.django_db(transaction=True)
def test_a_long_poll_wakes_when_a_lease_runs_out(server_factory, record_property):
    consumer_side, producer_side = server_factory.many(2)
    requests.post(producer_side.url + "/message/new", json={"payload": "abandoned"})
    leased_at = time.monotonic()
    held = requests.get(producer_side.url + "/message/next", params={"timeout": 1}).json()

    status, body, _, answered = Poll(consumer_side.url + "/message/next", wait=WAIT).result()

    record_property("wake_after_lease_end_s", round(answered - leased_at - 1, 3))
    assert status == 200
    assert (body["id"], body["attempts"]) == (held["id"], 2)
    assert 0.9 <= answered - leased_at < 1 + PROMPTLY


@pytest.mark.django_db(transaction=True)
def test_a_long_poll_wakes_when_a_delay_ends(server_factory, record_property):
    consumer_side, producer_side = server_factory.many(2)
    sent_at = time.monotonic()
    sent = requests.post(
        producer_side.url + "/message/new", json={"payload": "later", "delay": 1}
    ).json()

    status, body, _, answered = Poll(consumer_side.url + "/message/next", wait=WAIT).result()

    record_property("wake_after_delay_end_s", round(answered - sent_at - 1, 3))
    assert status == 200
    assert body["id"] == sent["id"]
    assert 0.9 <= answered - sent_at < 1 + PROMPTLY


@pytest.mark.django_db(transaction=True)
def test_a_long_poll_with_nothing_to_deliver_ends_with_204_at_its_deadline(server_factory):
    server = server_factory()

    status, body, took, _ = Poll(server.url + "/message/next", wait=1).result()

    assert (status, body) == (204, None)
    assert 0.9 <= took < 1 + PROMPTLY


@pytest.mark.django_db(transaction=True)
def test_a_batch_long_poll_with_nothing_to_deliver_ends_with_an_empty_list(server_factory):
    server = server_factory()

    status, body, took, _ = Poll(server.url + "/messages/next", count=10, wait=1).result()

    assert (status, body) == (200, {"messages": []})
    assert 0.9 <= took < 1 + PROMPTLY


@pytest.mark.django_db(transaction=True)
def test_a_long_poll_is_not_woken_by_a_message_on_another_queue(server_factory):
    consumer_side, producer_side = server_factory.many(2, **ONE_PROCESS)
    quiet = Poll(consumer_side.url + "/queues/quiet/message/next", wait=2)
    busy = Poll(consumer_side.url + "/queues/busy/message/next", wait=WAIT)
    consumer_side.wait_for_waiting(2)

    requests.post(producer_side.url + "/queues/busy/message/new", json={"payload": "not yours"})

    assert busy.result()[0] == 200  # the server saw the other server's send
    status, _, took, _ = quiet.result()
    assert (status, took >= 1.9) == (204, True)
    assert consumer_side.process_metric("mq_long_poll_wakeups_total", "quiet") == 0
    assert consumer_side.process_metric("mq_long_poll_wakeups_total", "busy") >= 1


@pytest.mark.django_db(transaction=True)
def test_one_message_goes_to_exactly_one_of_many_waiting_polls(server_factory):
    servers = server_factory.many(2, **ONE_PROCESS)
    polls = [Poll(servers[n % 2].url + "/message/next", wait=3) for n in range(6)]
    for server in servers:
        server.wait_for_waiting(3)

    requests.post(servers[0].url + "/message/new", json={"payload": "only one"})

    statuses = sorted(poll.result()[0] for poll in polls)
    assert statuses == [200, 204, 204, 204, 204, 204]


@pytest.mark.django_db(transaction=True)
def test_a_batch_of_messages_wakes_as_many_waiting_polls(server_factory):
    consumer_side, producer_side = server_factory.many(2, **ONE_PROCESS)
    polls = [Poll(consumer_side.url + "/message/next", wait=WAIT) for _ in range(5)]
    consumer_side.wait_for_waiting(5)

    sent_at = time.monotonic()
    sent = requests.post(producer_side.url + "/messages/new", json={"payloads": list(range(5))})

    results = [poll.result() for poll in polls]
    assert [status for status, *_ in results] == [200] * 5
    assert sorted(body["id"] for _, body, *_ in results) == sent.json()["ids"]
    assert max(answered for *_, answered in results) - sent_at < PROMPTLY


@pytest.mark.django_db(transaction=True)
def test_200_waiting_polls_neither_fail_nor_starve_other_requests(server_factory, record_property):
    server = server_factory()
    waiting = ThreadPoolExecutor(max_workers=200)
    polls = [
        waiting.submit(
            requests.get,
            server.url + "/queues/idle/message/next",
            params={"wait": 5 + n % 6},
            timeout=60,
        )
        for n in range(200)
    ]
    time.sleep(1.5)  # every poll connected and parked
    short: list[tuple[str, int | str, float]] = []
    lock = threading.Lock()
    stop = time.monotonic() + 3

    def call(session, method: str, path: str, **kwargs):
        started = time.monotonic()
        try:
            response = session.request(method, server.url + path, timeout=10, **kwargs)
            outcome = response.status_code
        except requests.RequestException as exc:
            outcome = repr(exc)
        with lock:
            short.append((path, outcome, time.monotonic() - started))
        return response if isinstance(outcome, int) else None

    def produce():
        with requests.Session() as session:
            while time.monotonic() < stop:
                call(session, "POST", "/queues/busy/message/new", json={"payload": "work"})

    def consume():
        with requests.Session() as session:
            while time.monotonic() < stop:
                response = call(session, "GET", "/queues/busy/message/next")
                if response is not None and response.status_code == 200:
                    message = response.json()
                    call(
                        session,
                        "POST",
                        f"/queues/busy/message/{message['id']}/status/done",
                        json={"lease": message["lease"]},
                    )

    workers = [threading.Thread(target=f) for f in (produce, produce, consume, consume)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)
    waiting.shutdown(wait=True)

    record_property("short_requests", len(short))
    record_property("slowest_short_request_s", round(max(took for *_, took in short), 3))
    assert len(short) > 20
    assert [(path, outcome) for path, outcome, _ in short if outcome not in (200, 201, 204)] == []
    assert sorted({poll.result().status_code for poll in polls}) == [204]
