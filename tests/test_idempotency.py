"""Idempotent producers: a send with a key already used on that queue within the
dedup window answers 200 with the first message's id and stores nothing new."""

import threading
from collections import Counter

import pytest
import requests
from contract import assert_error
from django.core.management import call_command

from messages_app.models import IdempotencyKey, Message

pytestmark = pytest.mark.django_db


def send(api, payload, key=None, queue: str | None = None, **fields):
    body = {"payload": payload, **fields}
    if key is not None:
        body["key"] = key
    return api.post("/message/new" if queue is None else f"/queues/{queue}/message/new", body)


def test_a_send_with_a_new_key_answers_201_and_stores_the_message(api):
    response = send(api, "a", key="order-1")

    assert response.status_code == 201
    message = Message.objects.get()
    assert response.json() == {"id": message.id}
    assert IdempotencyKey.objects.get().message_id == message.id


def test_a_repeated_key_answers_200_with_the_first_id_and_stores_nothing(api):
    first = send(api, "a", key="order-1").json()["id"]

    response = send(api, "a", key="order-1")

    assert response.status_code == 200
    assert response.json() == {"id": first}
    assert list(Message.objects.values_list("id", flat=True)) == [first]
    assert IdempotencyKey.objects.count() == 1


def test_a_repeated_key_keeps_the_first_payload(api):
    send(api, "first", key="k")

    send(api, "second", key="k")

    assert api.next().json()["payload"] == "first"


def test_a_repeated_key_does_not_apply_its_own_delay(api):
    send(api, "a", key="k")

    send(api, "a", key="k", delay=600)

    assert api.next().status_code == 200


def test_different_keys_store_different_messages(api):
    first = send(api, "a", key="k1")
    second = send(api, "a", key="k2")

    assert (first.status_code, second.status_code) == (201, 201)
    assert first.json()["id"] != second.json()["id"]
    assert Message.objects.count() == 2


def test_sends_without_a_key_are_never_deduplicated(api):
    first = send(api, "same")
    second = send(api, "same")

    assert (first.status_code, second.status_code) == (201, 201)
    assert Message.objects.count() == 2


def test_keys_that_differ_only_in_case_are_different_keys(api):
    first = send(api, "a", key="Order-1")
    second = send(api, "b", key="order-1")

    assert (first.status_code, second.status_code) == (201, 201)
    assert Message.objects.count() == 2


def test_keys_that_differ_only_by_a_trailing_space_are_different_keys(api):
    first = send(api, "a", key="order-1")
    second = send(api, "b", key="order-1 ")

    assert (first.status_code, second.status_code) == (201, 201)
    assert Message.objects.count() == 2


def test_a_key_is_per_queue(api):
    default = send(api, "a", key="k")
    jobs = send(api, "a", key="k", queue="jobs")

    assert (default.status_code, jobs.status_code) == (201, 201)
    assert Message.objects.get(queue_id="jobs").id == jobs.json()["id"]


def test_a_repeated_key_on_a_named_queue_answers_200_there(api):
    first = send(api, "a", key="k", queue="jobs").json()["id"]

    response = send(api, "a", key="k", queue="jobs")

    assert response.status_code == 200
    assert response.json() == {"id": first}
    assert Message.objects.count() == 1


def test_the_key_of_a_done_message_still_counts_within_the_window(api):
    first = send(api, "a", key="k").json()["id"]
    delivered = api.next().json()
    assert api.done(first, delivered["lease"]).status_code == 200

    response = send(api, "a", key="k")

    assert response.status_code == 200
    assert response.json() == {"id": first}
    assert not Message.objects.exists()


def test_the_key_of_a_leased_message_counts_too(api):
    first = send(api, "a", key="k").json()["id"]
    api.next()

    response = send(api, "a", key="k")

    assert response.json() == {"id": first}
    assert api.next().status_code == 204


def test_a_key_is_remembered_until_the_end_of_the_dedup_window(api, clock):
    first = send(api, "a", key="k").json()["id"]
    clock.shift(299)

    response = send(api, "a", key="k")

    assert response.status_code == 200
    assert response.json() == {"id": first}


def test_a_key_can_be_used_again_after_the_dedup_window(api, clock):
    first = send(api, "a", key="k").json()["id"]
    clock.shift(301)

    response = send(api, "b", key="k")

    assert response.status_code == 201
    assert response.json()["id"] != first
    assert Message.objects.count() == 2
    assert IdempotencyKey.objects.get().message_id == response.json()["id"]


def test_MQ_DEDUP_WINDOW_sets_the_window_in_seconds(api, clock, settings):
    settings.MQ_DEDUP_WINDOW = 30
    send(api, "a", key="k")
    clock.shift(29)
    assert send(api, "a", key="k").status_code == 200
    clock.shift(2)

    assert send(api, "a", key="k").status_code == 201


def test_requeue_expired_drops_keys_older_than_the_window(api, clock, capsys):
    send(api, "a", key="old")
    clock.shift(200)
    send(api, "a", key="recent")
    clock.shift(101)

    call_command("requeue_expired")

    assert list(IdempotencyKey.objects.values_list("key", flat=True)) == ["recent"]
    assert "1 idempotency key(s) dropped" in capsys.readouterr().out


def test_requeue_expired_keeps_keys_within_the_window(api, clock, capsys):
    send(api, "a", key="k")
    clock.shift(299)

    call_command("requeue_expired")

    assert IdempotencyKey.objects.count() == 1
    assert "0 idempotency key(s) dropped" in capsys.readouterr().out


def test_a_key_of_200_characters_is_accepted(api):
    key = "é" * 199 + "🎉"

    response = send(api, "a", key=key)

    assert response.status_code == 201
    assert IdempotencyKey.objects.get().key == key
    assert send(api, "a", key=key).status_code == 200


@pytest.mark.parametrize(
    "key",
    ["", "k" * 201, 5, True, ["k"], {"k": 1}],
    ids=["empty", "201 characters", "number", "boolean", "list", "object"],
)
def test_a_key_that_is_not_1_to_200_characters_is_refused_and_stores_nothing(api, stored, key):
    before = stored()

    response = send(api, "a", key=key)

    assert_error(response, 400, "invalid_key")
    assert stored() == before
    assert not IdempotencyKey.objects.exists()


def test_a_refused_send_does_not_use_up_its_key(api, settings):
    settings.MQ_MAX_PAYLOAD_BYTES = 10
    assert send(api, "x" * 50, key="k").status_code == 413

    response = send(api, "small", key="k")

    assert response.status_code == 201
    assert Message.objects.get().id == response.json()["id"]


@pytest.mark.django_db(transaction=True)
def test_concurrent_sends_with_one_key_on_two_servers_store_one_message(server_factory):
    servers = server_factory.many(2)
    senders = 16
    results: dict[str, list[tuple[int, object]]] = {}
    lock = threading.Lock()

    for round_ in range(3):
        key = f"order-{round_}"
        start = threading.Barrier(senders)

        def send_once(n: int, key: str = key, start: threading.Barrier = start) -> None:
            url = servers[n % 2].url + "/queues/jobs/message/new"
            start.wait()
            try:
                response = requests.post(url, json={"payload": n, "key": key}, timeout=30)
                outcome = (response.status_code, response.json())
            except Exception as exc:  # reported by the assertions below
                outcome = (0, repr(exc))
            with lock:
                results.setdefault(key, []).append(outcome)

        threads = [threading.Thread(target=send_once, args=(n,)) for n in range(senders)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)

    for key, outcomes in results.items():
        statuses = Counter(status for status, _ in outcomes)
        assert statuses == {201: 1, 200: senders - 1}, (key, outcomes)
        ids = {body["id"] for _, body in outcomes}
        assert len(ids) == 1
        assert IdempotencyKey.objects.get(key=key).message_id == ids.pop()
    assert Message.objects.count() == 3
    assert IdempotencyKey.objects.count() == 3
