"""Delay: a message sent with ``delay`` seconds is invisible until then, then
takes its FIFO place by id."""

from datetime import timedelta

import pytest
from contract import assert_error
from django.utils import timezone

from messages_app.models import Message

pytestmark = pytest.mark.django_db

SEVEN_DAYS = 7 * 24 * 60 * 60


def send(api, payload, queue: str | None = None, **fields):
    url = "/message/new" if queue is None else f"/queues/{queue}/message/new"
    return api.post(url, {"payload": payload, **fields})


def send_delayed(api, payload, delay, queue: str | None = None) -> int:
    response = send(api, payload, queue, delay=delay)
    assert response.status_code == 201, response.content
    return response.json()["id"]


def queue_counts(api, queue: str = "default") -> dict:
    body = api.get(f"/queues/{queue}").json()
    return {state: body[state] for state in ("ready", "delayed", "leased", "dead")}


def test_a_delayed_message_is_stored_visible_from_the_end_of_its_delay(api, clock):
    message_id = send_delayed(api, "later", 60)

    message = Message.objects.get(id=message_id)
    assert message.visible_at == timezone.now() + timedelta(seconds=60)
    assert message.lease is None
    assert message.attempts == 0
    assert message.state() == "delayed"


def test_a_delayed_message_is_not_delivered_before_its_delay_ends(api, clock):
    send_delayed(api, "later", 60)
    clock.shift(59)

    assert api.next().status_code == 204


def test_a_delayed_message_is_delivered_once_its_delay_ends(api, clock):
    message_id = send_delayed(api, "later", 60)
    clock.shift(60)

    response = api.next()

    assert response.status_code == 200
    assert response.json()["id"] == message_id
    assert response.json()["payload"] == "later"
    assert response.json()["attempts"] == 1


def test_messages_sent_later_without_delay_are_delivered_first(api, clock):
    send_delayed(api, "later", 60)
    now_id = send_delayed(api, "now", 0)

    assert api.next().json()["id"] == now_id


def test_once_its_delay_ends_a_message_comes_before_newer_messages(api, clock):
    delayed = send_delayed(api, "delayed", 10)
    newer = [send_delayed(api, n, 0) for n in range(2)]
    clock.shift(10)

    delivered = [api.next().json()["id"] for _ in range(3)]

    assert delivered == [delayed, *newer]


def test_a_delay_of_zero_is_no_delay(api):
    message_id = send_delayed(api, "now", 0)

    assert api.next().json()["id"] == message_id


def test_a_fractional_delay_is_accepted(api, clock):
    message_id = send_delayed(api, "soon", 0.5)

    assert Message.objects.get(id=message_id).visible_at == timezone.now() + timedelta(seconds=0.5)


def test_a_delay_of_15_minutes_works(api, clock):
    message_id = send_delayed(api, "later", 15 * 60)
    clock.shift(15 * 60 - 1)
    assert api.next().status_code == 204
    clock.shift(1)

    assert api.next().json()["id"] == message_id


def test_a_delay_of_seven_days_is_the_longest_accepted(api, clock):
    message_id = send_delayed(api, "next week", SEVEN_DAYS)
    clock.shift(SEVEN_DAYS)

    assert api.next().json()["id"] == message_id


def test_a_delayed_message_is_counted_as_delayed_until_its_delay_ends(api, clock):
    send_delayed(api, "later", 60)
    assert queue_counts(api) == {"ready": 0, "delayed": 1, "leased": 0, "dead": 0}
    clock.shift(60)

    assert queue_counts(api) == {"ready": 1, "delayed": 0, "leased": 0, "dead": 0}


def test_a_delay_on_a_named_queue_delays_that_queue(api, clock):
    message_id = send_delayed(api, "later", 30, queue="jobs")
    assert api.next(queue="jobs").status_code == 204
    clock.shift(30)

    assert api.next(queue="jobs").json()["id"] == message_id


def test_a_batch_sent_with_a_delay_is_all_delayed(api, clock):
    response = api.post("/messages/new", {"payloads": ["a", "b"], "delay": 30})
    ids = response.json()["ids"]
    assert api.get("/messages/next", data={"count": 10}).json() == {"messages": []}
    clock.shift(30)

    delivered = api.get("/messages/next", data={"count": 10}).json()["messages"]

    assert [m["id"] for m in delivered] == ids


def test_a_delay_given_as_a_null_is_no_delay(api):
    message_id = send(api, "now", delay=None).json()["id"]

    assert api.next().json()["id"] == message_id


@pytest.mark.parametrize(
    "delay",
    [-1, -0.001, "x", "", SEVEN_DAYS + 1, 1e300, True, [], {"s": 1}],
    ids=[
        "negative",
        "slightly negative",
        "text",
        "empty text",
        "more than seven days",
        "huge",
        "boolean",
        "list",
        "object",
    ],
)
def test_a_delay_out_of_range_or_not_a_number_is_refused_and_stores_nothing(api, stored, delay):
    before = stored()

    response = send(api, "x", delay=delay)

    assert_error(response, 400, "invalid_delay")
    assert stored() == before


@pytest.mark.parametrize("delay", [-1, "x", SEVEN_DAYS + 1])
def test_a_batch_with_a_bad_delay_is_refused_and_stores_nothing(api, stored, delay):
    before = stored()

    response = api.post("/messages/new", {"payloads": ["a", "b"], "delay": delay})

    assert_error(response, 400, "invalid_delay")
    assert stored() == before
