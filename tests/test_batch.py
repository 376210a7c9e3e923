"""Batch calls: send, receive and ack many messages in one request, in FIFO order,
with per-message results for acks; one short transaction per batch."""

import threading
from collections import Counter
from datetime import timedelta
from itertools import cycle

import pytest
import requests
from contract import assert_error
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from messages_app import runtime
from messages_app.models import Message

pytestmark = pytest.mark.django_db


def iso(moment) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def route(queue: str | None, tail: str) -> str:
    return f"/{tail}" if queue is None else f"/queues/{queue}/{tail}"


def send_batch(api, payloads, queue: str | None = None, **fields) -> list[int]:
    response = api.post(route(queue, "messages/new"), {"payloads": payloads, **fields})
    assert response.status_code == 201, response.content
    return response.json()["ids"]


def claim_batch(api, queue: str | None = None, **params) -> list[dict]:
    response = api.get(route(queue, "messages/next"), data=params)
    assert response.status_code == 200, response.content
    return response.json()["messages"]


def ack_batch(api, entries, queue: str | None = None):
    return api.post(route(queue, "messages/status/done"), {"messages": entries})


def entries_of(messages) -> list[dict]:
    return [{"id": m["id"], "lease": m["lease"]} for m in messages]


# Sending


def test_sending_a_batch_answers_201_with_the_ids_in_order(api):
    ids = send_batch(api, ["a", "b", "c"])

    assert len(ids) == 3
    assert ids == sorted(ids)
    assert list(Message.objects.order_by("id").values_list("id", flat=True)) == ids


def test_a_batch_keeps_each_payload_exactly_as_sent(api):
    payloads = [{"n": 1}, [1, "two"], "text", None, 12345678901234567890]

    ids = send_batch(api, payloads)

    delivered = claim_batch(api, count=10)
    assert [m["payload"] for m in delivered] == payloads
    assert [m["id"] for m in delivered] == ids


def test_a_batch_lands_behind_messages_already_waiting(api):
    first = api.send("first")

    ids = send_batch(api, ["second", "third"])

    assert [m["id"] for m in claim_batch(api, count=3)] == [first, *ids]


def test_a_batch_of_1000_payloads_is_accepted(api):
    ids = send_batch(api, list(range(1000)))

    assert len(ids) == len(set(ids)) == 1000
    assert Message.objects.count() == 1000


def test_a_batch_on_a_named_queue_goes_to_that_queue_only(api):
    ids = send_batch(api, ["x", "y"], queue="jobs")

    assert set(Message.objects.filter(queue_id="jobs").values_list("id", flat=True)) == set(ids)
    assert api.next().status_code == 204
    assert [m["id"] for m in claim_batch(api, queue="jobs", count=5)] == ids


@pytest.mark.parametrize(
    "body",
    [
        {"payloads": "not a list"},
        {"payloads": {"a": 1}},
        {"payloads": []},
        {"payloads": list(range(1001))},
        {"payload": ["a", "b"]},
        ["a", "b"],
    ],
    ids=["string", "object", "empty", "1001", "missing", "body not an object"],
)
def test_a_batch_that_is_not_1_to_1000_payloads_is_refused_and_stores_nothing(api, stored, body):
    before = stored()

    response = api.post("/messages/new", body)

    assert_error(response, 400, "invalid_payloads" if isinstance(body, dict) else "invalid_body")
    assert stored() == before


def test_a_batch_with_one_oversized_payload_stores_none_of_them(api, stored, settings):
    settings.MQ_MAX_PAYLOAD_BYTES = 10
    before = stored()

    response = api.post("/messages/new", {"payloads": ["ok", "x" * 50, "ok too"]})

    assert_error(response, 413, "too_large")
    assert stored() == before


def test_sending_a_batch_takes_as_many_queries_for_100_payloads_as_for_2(api):
    with CaptureQueriesContext(connection) as small:
        send_batch(api, ["a", "b"])
    with CaptureQueriesContext(connection) as large:
        send_batch(api, list(range(100)))

    assert len(large) == len(small)


# Receiving


def test_receiving_a_batch_leases_the_oldest_messages_in_fifo_order(api):
    ids = send_batch(api, list(range(5)))

    delivered = claim_batch(api, count=3)

    assert [m["id"] for m in delivered] == ids[:3]
    assert [m["payload"] for m in delivered] == [0, 1, 2]
    assert [m["id"] for m in claim_batch(api, count=3)] == ids[3:]


def test_each_message_of_a_batch_is_a_full_delivery(api, clock):
    send_batch(api, ["a", "b"])

    delivered = claim_batch(api, count=2)

    for message in delivered:
        assert list(message) == ["id", "payload", "lease", "lease_expires_at", "attempts"]
        assert message["attempts"] == 1
        assert message["lease_expires_at"] == iso(timezone.now() + timedelta(seconds=10))
        stored = Message.objects.get(id=message["id"])
        assert stored.lease == message["lease"]
        assert stored.state() == "leased"


def test_a_batch_receive_honours_the_timeout_parameter(api, clock):
    send_batch(api, ["a", "b"])

    delivered = claim_batch(api, count=2, timeout=90)

    expected = iso(timezone.now() + timedelta(seconds=90))
    assert [m["lease_expires_at"] for m in delivered] == [expected, expected]


def test_a_batch_receive_returns_what_there_is_when_fewer_are_waiting(api):
    ids = send_batch(api, ["a", "b"])

    assert [m["id"] for m in claim_batch(api, count=1000)] == ids


def test_a_batch_receive_on_an_empty_queue_is_an_empty_list(api):
    response = api.get("/messages/next", data={"count": 10})

    assert response.status_code == 200
    assert response.json() == {"messages": []}


def test_a_batch_receive_without_count_delivers_one_message(api):
    send_batch(api, ["a", "b"])

    assert len(claim_batch(api)) == 1


def test_a_batch_receive_skips_leased_messages(api):
    ids = send_batch(api, list(range(4)))
    api.next()

    assert [m["id"] for m in claim_batch(api, count=10)] == ids[1:]


def test_a_batch_receive_brings_back_expired_messages_first(api, clock):
    ids = send_batch(api, ["a", "b", "c"])
    claim_batch(api, count=1, timeout=5)
    clock.shift(6)

    delivered = claim_batch(api, count=3)

    assert [m["id"] for m in delivered] == ids
    assert [m["attempts"] for m in delivered] == [2, 1, 1]


def test_a_batch_receive_on_a_named_queue_takes_only_that_queue(api):
    send_batch(api, ["other"])
    ids = send_batch(api, ["mine", "mine too"], queue="jobs")

    assert [m["id"] for m in claim_batch(api, queue="jobs", count=10)] == ids


@pytest.mark.parametrize("count", ["0", "1001", "x", "-1", "1.5", "2e2"])
def test_a_count_that_is_not_1_to_1000_is_refused_and_leases_nothing(api, stored, count):
    send_batch(api, ["a"])
    before = stored()

    response = api.get("/messages/next", data={"count": count})

    assert_error(response, 400, "invalid_count")
    assert stored() == before


def test_receiving_a_batch_takes_as_many_queries_for_100_messages_as_for_2(api):
    send_batch(api, list(range(101)))

    runtime.reset()  # both claims read the queue's settings
    with CaptureQueriesContext(connection) as small:
        claim_batch(api, count=2)
    runtime.reset()
    with CaptureQueriesContext(connection) as large:
        claim_batch(api, count=99)

    assert len(large) == len(small)


# Acking


def test_acking_a_batch_processes_every_entry_and_deletes_the_messages(api):
    ids = send_batch(api, ["a", "b", "c"])
    delivered = claim_batch(api, count=3)

    response = ack_batch(api, entries_of(delivered))

    assert response.status_code == 200
    assert response.json() == {"processed": ids, "failed": []}
    assert not Message.objects.exists()


def test_acking_entries_from_different_deliveries_works_in_one_batch(api):
    ids = send_batch(api, ["a", "b", "c"])
    first = claim_batch(api, count=1)
    rest = claim_batch(api, count=2)

    response = ack_batch(api, entries_of(rest + first))

    assert response.json() == {"processed": [ids[1], ids[2], ids[0]], "failed": []}
    assert not Message.objects.exists()


def test_a_batch_of_1000_entries_each_from_its_own_delivery_is_acked(api):
    ids = send_batch(api, list(range(1000)))
    # A long lease: on a loaded machine 1000 claims can outlast the default 10 s,
    # and a message whose lease ran out would be claimed again.
    delivered = [claim_batch(api, count=1, timeout=600)[0] for _ in ids]
    assert len({m["lease"] for m in delivered}) == 1000

    response = ack_batch(api, entries_of(delivered))

    assert response.status_code == 200
    assert response.json() == {"processed": ids, "failed": []}
    assert not Message.objects.exists()


def test_entries_without_a_lease_are_accepted_for_messages_currently_delivered(api):
    ids = send_batch(api, ["a", "b"])
    claim_batch(api, count=2)

    response = ack_batch(api, [{"id": ids[0]}, {"id": ids[1], "lease": None}])

    assert response.json() == {"processed": ids, "failed": []}


def test_a_stale_lease_fails_alone_and_the_rest_are_processed(api, clock):
    ids = send_batch(api, ["a", "b", "c"])
    old = claim_batch(api, count=1, timeout=5)
    clock.shift(6)
    current = claim_batch(api, count=3)

    response = ack_batch(api, [*entries_of(current[1:]), *entries_of(old)])

    body = response.json()
    assert response.status_code == 200
    assert body["processed"] == ids[1:]
    assert [(f["id"], f["error"]) for f in body["failed"]] == [(ids[0], "stale_lease")]
    assert body["failed"][0]["detail"]
    assert list(Message.objects.values_list("id", flat=True)) == [ids[0]]
    assert Message.objects.get(id=ids[0]).lease == current[0]["lease"]


def test_an_unknown_id_fails_alone_as_not_found(api):
    ids = send_batch(api, ["a"])
    delivered = claim_batch(api, count=1)

    response = ack_batch(api, [{"id": 999999, "lease": "nope"}, *entries_of(delivered)])

    body = response.json()
    assert body["processed"] == ids
    assert [(f["id"], f["error"]) for f in body["failed"]] == [(999999, "not_found")]


def test_a_message_of_another_queue_fails_as_not_found(api):
    [other] = send_batch(api, ["a"], queue="other")
    delivered = claim_batch(api, queue="other")

    response = ack_batch(api, entries_of(delivered))

    assert response.json()["failed"][0]["id"] == other
    assert response.json()["failed"][0]["error"] == "not_found"
    assert Message.objects.filter(id=other).exists()


def test_a_message_never_delivered_fails_as_not_leased(api):
    [message_id] = send_batch(api, ["a"])

    response = ack_batch(api, [{"id": message_id, "lease": "0" * 32}])

    assert response.json()["processed"] == []
    assert response.json()["failed"][0]["error"] == "not_leased"
    assert Message.objects.filter(id=message_id).exists()


def test_a_batch_ack_on_a_named_queue_acks_that_queue(api):
    ids = send_batch(api, ["a", "b"], queue="jobs")
    delivered = claim_batch(api, queue="jobs", count=2)

    response = ack_batch(api, entries_of(delivered), queue="jobs")

    assert response.json() == {"processed": ids, "failed": []}
    assert not Message.objects.exists()


@pytest.mark.parametrize(
    "body, code",
    [
        ({"messages": "1,2"}, "invalid_messages"),
        ({"messages": []}, "invalid_messages"),
        ({"messages": [{"id": 1}] * 1001}, "invalid_messages"),
        ({"ids": [1]}, "invalid_messages"),
        ({"messages": [1]}, "invalid_messages"),
        ({"messages": [{"lease": "abc"}]}, "invalid_id"),
        ({"messages": [{"id": "1", "lease": "abc"}]}, "invalid_id"),
        ({"messages": [{"id": True, "lease": "abc"}]}, "invalid_id"),
        ({"messages": [{"id": 0, "lease": "abc"}]}, "invalid_id"),
        ({"messages": [{"id": 1.5, "lease": "abc"}]}, "invalid_id"),
        ({"messages": [{"id": 1, "lease": 5}]}, "invalid_lease"),
        ({"messages": [{"id": 1, "lease": ""}]}, "invalid_lease"),
        ([{"id": 1, "lease": "abc"}], "invalid_body"),
    ],
    ids=[
        "not a list",
        "empty",
        "1001 entries",
        "no messages field",
        "entry not an object",
        "no id",
        "string id",
        "boolean id",
        "zero id",
        "fractional id",
        "numeric lease",
        "empty lease",
        "body not an object",
    ],
)
def test_a_malformed_ack_batch_is_refused_and_deletes_nothing(api, stored, body, code):
    ids = send_batch(api, ["a", "b"])
    delivered = claim_batch(api, count=2)
    before = stored()
    if isinstance(body, dict) and isinstance(body.get("messages"), list) and body["messages"]:
        # A valid entry first: a malformed one must refuse the whole batch.
        body = {"messages": [*entries_of(delivered), *body["messages"]]}

    response = api.post("/messages/status/done", body)

    assert_error(response, 400, code)
    assert stored() == before
    assert list(Message.objects.values_list("id", flat=True)) == ids


def test_a_batch_naming_one_message_twice_is_refused_and_deletes_nothing(api, stored):
    send_batch(api, ["a", "b"])
    first, second = claim_batch(api, count=2)
    before = stored()

    response = api.post(
        "/messages/status/done",
        {
            "messages": [
                {"id": first["id"], "lease": first["lease"]},
                {"id": second["id"], "lease": second["lease"]},
                {"id": first["id"], "lease": second["lease"]},
            ]
        },
    )

    assert_error(response, 400, "invalid_messages")
    assert stored() == before


def test_acking_a_batch_takes_as_many_queries_for_100_messages_as_for_2(api):
    send_batch(api, list(range(102)))
    small_batch = claim_batch(api, count=2)
    large_batch = claim_batch(api, count=100)

    with CaptureQueriesContext(connection) as small:
        ack_batch(api, entries_of(small_batch))
    with CaptureQueriesContext(connection) as large:
        ack_batch(api, entries_of(large_batch))

    assert len(large) == len(small)
    assert not Message.objects.exists()


# Several server processes


@pytest.mark.django_db(transaction=True)
def test_batch_claims_by_many_consumers_on_two_servers_never_overlap_and_lose_nothing(
    server_factory,
):
    servers = server_factory.many(2)
    sent = []
    for start in range(0, 600, 200):
        response = requests.post(
            servers[0].url + "/messages/new", json={"payloads": list(range(start, start + 200))}
        )
        assert response.status_code == 201
        sent += response.json()["ids"]
    claimed: list[list[int]] = []
    acked: list[int] = []
    failures: list[object] = []
    lock = threading.Lock()
    urls = cycle(server.url for server in servers)

    def consume(base: str) -> None:
        with requests.Session() as session:
            try:
                while True:
                    response = session.get(
                        base + "/messages/next", params={"count": 50, "timeout": 60}, timeout=30
                    )
                    if response.status_code != 200:
                        raise AssertionError(f"next: {response.status_code} {response.text}")
                    messages = response.json()["messages"]
                    if not messages:
                        return
                    with lock:
                        claimed.append([m["id"] for m in messages])
                    done = session.post(
                        base + "/messages/status/done",
                        json={"messages": entries_of(messages)},
                        timeout=30,
                    )
                    if done.status_code != 200:
                        raise AssertionError(f"done: {done.status_code} {done.text}")
                    with lock:
                        acked.extend(done.json()["processed"])
                        failures.extend(done.json()["failed"])
            except Exception as exc:  # reported by the assertion below
                with lock:
                    failures.append(repr(exc))

    threads = [threading.Thread(target=consume, args=(next(urls),)) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert not any(thread.is_alive() for thread in threads)
    assert failures == []
    every_claim = Counter(message_id for batch in claimed for message_id in batch)
    assert [m for m, n in every_claim.items() if n > 1] == []
    assert sorted(every_claim) == sorted(sent)
    assert sorted(acked) == sorted(sent)
    assert all(batch == sorted(batch) for batch in claimed)
    assert not Message.objects.exists()
