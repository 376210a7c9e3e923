"""Many consumers on several real server processes sharing one database: every
message is delivered exactly once while leases hold, and two consumers never
hold a valid lease on the same message when leases run out."""

import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from itertools import cycle

import pytest
import requests

from messages_app.models import Message

pytestmark = pytest.mark.django_db(transaction=True)

# Long enough that no lease runs out while the tests below are running.
NO_EXPIRY = {"timeout": 60}
# Bounds on every consumer loop and every request, far above what the tests need
# on 2 cores: a server that stops answering fails the test instead of hanging it.
DEADLINE_SECONDS = 60
REQUEST_TIMEOUT = 20


def route(server, queue: str | None, tail: str) -> str:
    return server.url + (f"/{tail}" if queue is None else f"/queues/{queue}/{tail}")


def send_all(servers, payloads: list, queue: str | None = None) -> dict[int, object]:
    """Send ``payloads`` through the servers in turn, from a few threads; {id: payload}."""
    local = threading.local()

    def send(job):
        server, payload = job
        if not hasattr(local, "session"):
            local.session = requests.Session()
        response = local.session.post(
            route(server, queue, "message/new"), json={"payload": payload}, timeout=REQUEST_TIMEOUT
        )
        assert response.status_code == 201, response.text
        return response.json()["id"], payload

    with ThreadPoolExecutor(max_workers=6) as pool:
        sent = dict(pool.map(send, zip(cycle(servers), payloads, strict=False)))
    assert len(sent) == len(payloads)
    return sent


@dataclass
class Delivery:
    id: int
    payload: object
    lease: str
    attempts: int
    lease_expires_at: float  # epoch seconds, as the server wrote it
    received_at: float
    done_status: int | None = None
    done_error: str | None = None
    done_sent_at: float | None = None
    done_received_at: float | None = None


def parse_time(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def claim(session, server, queue: str | None, params: dict) -> Delivery | None:
    response = session.get(
        route(server, queue, "message/next"), params=params, timeout=REQUEST_TIMEOUT
    )
    received_at = time.time()
    if response.status_code == 204:
        return None
    assert response.status_code == 200, response.text
    body = response.json()
    return Delivery(
        body["id"],
        body["payload"],
        body["lease"],
        body["attempts"],
        parse_time(body["lease_expires_at"]),
        received_at,
    )


def finish(session, server, queue: str | None, delivery: Delivery) -> None:
    delivery.done_sent_at = time.time()
    response = session.post(
        route(server, queue, f"message/{delivery.id}/status/done"),
        json={"lease": delivery.lease},
        timeout=REQUEST_TIMEOUT,
    )
    delivery.done_received_at = time.time()
    delivery.done_status = response.status_code
    if response.status_code != 200:
        delivery.done_error = response.json().get("error")


def run_threads(count: int, target) -> None:
    """Run ``target(index, failed)`` on ``count`` threads; re-raise the first failure.
    ``failed`` is set as soon as one thread fails, so the others can stop early."""
    failed = threading.Event()

    def run(index: int) -> None:
        try:
            target(index, failed)
        except BaseException:
            failed.set()
            raise

    with ThreadPoolExecutor(max_workers=count) as pool:
        futures = [pool.submit(run, index) for index in range(count)]
    for future in futures:
        future.result()


def drain(servers, consumers: int, queue: str | None = None) -> list[list[Delivery]]:
    """``consumers`` threads, spread over the servers, each with its own session,
    lease (long leases) and ack until the queue answers 204; the deliveries of each."""
    received: list[list[Delivery]] = [[] for _ in range(consumers)]

    def consume(index: int, failed: threading.Event) -> None:
        server = servers[index % len(servers)]
        session = requests.Session()
        deadline = time.monotonic() + DEADLINE_SECONDS
        while time.monotonic() < deadline and not failed.is_set():
            delivery = claim(session, server, queue, NO_EXPIRY)
            if delivery is None:
                return  # every message was sent before, and no lease runs out: nothing left
            finish(session, server, queue, delivery)
            received[index].append(delivery)
        if failed.is_set():
            return
        raise AssertionError(f"consumer {index} still busy after {DEADLINE_SECONDS} s")

    run_threads(consumers, consume)
    return received


def test_every_message_is_delivered_exactly_once_by_three_servers(server_factory):
    servers = server_factory.many(3)
    sent = send_all(servers, [{"n": n} for n in range(600)])

    received = drain(servers, consumers=24)

    deliveries = [d for per_consumer in received for d in per_consumer]
    delivered_ids = Counter(d.id for d in deliveries)
    assert [i for i, times in delivered_ids.items() if times > 1] == []  # no duplicates
    assert set(delivered_ids) == set(sent)  # none lost
    assert all(d.payload == sent[d.id] for d in deliveries)
    assert Counter(d.done_status for d in deliveries) == {200: len(sent)}
    assert not Message.objects.exists()


def test_consumers_of_named_queues_get_only_their_queue_exactly_once(server_factory):
    servers = server_factory.many(3)
    queues = ["alpha", "beta.v2", "gamma_3"]
    sent = {
        queue: send_all(servers, [f"{queue}:{n}" for n in range(150)], queue) for queue in queues
    }

    with ThreadPoolExecutor(max_workers=len(queues)) as pool:
        received = dict(zip(queues, pool.map(lambda q: drain(servers, 6, q), queues), strict=True))

    for queue in queues:
        deliveries = [d for per_consumer in received[queue] for d in per_consumer]
        assert sorted(d.id for d in deliveries) == sorted(sent[queue])
        assert all(d.payload == sent[queue][d.id] for d in deliveries)
        assert all(d.done_status == 200 for d in deliveries)
        # Each consumer got the oldest available message each time, so in id order.
        for per_consumer in received[queue]:
            ids = [d.id for d in per_consumer]
            assert ids == sorted(ids)
    assert not Message.objects.exists()


SHORT_LEASE = {"timeout": 0.2}


class ExpiryRun:
    """Consumers with 0.2 s leases. "Slow" consumers sit on their first delivery of a
    message past its lease, until another consumer has been given the message, and only
    then ack it: that ack must fail. The consumer holding the second delivery waits for
    that failed ack before acking itself (a few ms), so the stale ack meets a message
    that is still stored. Later deliveries are acked at once, so every message ends."""

    def __init__(self, servers, total: int):
        self.servers = servers
        self.total = total
        self.lock = threading.Lock()
        self.by_id: dict[int, list[Delivery]] = defaultdict(list)
        self.events: dict[tuple[str, int], threading.Event] = defaultdict(threading.Event)
        self.stalled: set[int] = set()
        self.acked = 0

    def event(self, name: str, message_id: int) -> threading.Event:
        with self.lock:
            return self.events[name, message_id]

    def all_acked(self) -> bool:
        with self.lock:
            return self.acked == self.total

    def consume(self, index: int, failed: threading.Event) -> None:
        slow = index < 4
        server = self.servers[index % len(self.servers)]
        session = requests.Session()
        deadline = time.monotonic() + DEADLINE_SECONDS
        while not self.all_acked() and not failed.is_set():
            assert time.monotonic() < deadline, f"consumer {index}: queue not empty in time"
            delivery = claim(session, server, None, SHORT_LEASE)
            if delivery is None:
                time.sleep(0.01)  # only leased messages left: one of them will come back
                continue
            with self.lock:
                self.by_id[delivery.id].append(delivery)
                stall = slow and delivery.attempts == 1
                if stall:
                    self.stalled.add(delivery.id)
                wait_for_stale_ack = delivery.attempts == 2 and delivery.id in self.stalled
            if delivery.attempts > 1:
                self.event("redelivered", delivery.id).set()
            if stall:
                self.event("redelivered", delivery.id).wait(timeout=10)
            if wait_for_stale_ack:
                self.event("stale ack done", delivery.id).wait(timeout=10)
            finish(session, server, None, delivery)
            if stall:
                self.event("stale ack done", delivery.id).set()
            if delivery.done_status == 200:
                with self.lock:
                    self.acked += 1


def test_two_consumers_never_hold_a_valid_lease_on_one_message(server_factory):
    servers = server_factory.many(3)
    sent = send_all(servers, list(range(120)))
    run = ExpiryRun(servers, len(sent))

    run_threads(12, run.consume)

    assert set(run.by_id) == set(sent)
    for message_id, deliveries in run.by_id.items():
        deliveries.sort(key=lambda d: d.attempts)
        assert [d.attempts for d in deliveries] == list(range(1, len(deliveries) + 1))
        assert len({d.lease for d in deliveries}) == len(deliveries)
        for earlier, later in zip(deliveries, deliveries[1:], strict=False):
            # The later claim ran before its response arrived; the earlier lease was
            # valid until its expiry: the claim must not have come first.
            assert later.received_at >= earlier.lease_expires_at, (message_id, earlier, later)
        # Exactly one ack succeeded: the last delivery's, as any ack deletes the message.
        *stale, last = deliveries
        assert last.done_status == 200, (message_id, last)
        for delivery in stale:
            assert delivery.done_status != 200, (message_id, delivery)
            if delivery.done_status == 404:  # only once the last delivery's ack had begun
                assert last.done_sent_at <= delivery.done_received_at, (message_id, delivery)
            else:
                assert (delivery.done_status, delivery.done_error) == (409, "stale_lease")
    stale_acks = [d for ds in run.by_id.values() for d in ds if d.done_status == 409]
    assert len(stale_acks) >= len(run.stalled) // 2, "the stale-lease path was barely exercised"
    assert not Message.objects.exists()
