"""GET /message/next: the oldest available message, leased to one consumer until
its lease ends; then it is available again, ahead of newer messages."""

from datetime import timedelta

import pytest
from django.utils import timezone

from messages_app.models import Message

pytestmark = pytest.mark.django_db


def iso(moment) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def test_messages_are_delivered_oldest_first(api):
    ids = [api.send(n) for n in range(3)]

    delivered = [api.next().json()["id"] for _ in range(3)]

    assert delivered == ids


def test_a_delivery_has_id_payload_lease_expiry_and_attempts(api):
    message_id = api.send({"task": 1})

    response = api.next()

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert list(body) == ["id", "payload", "lease", "lease_expires_at", "attempts"]
    assert (body["id"], body["payload"], body["attempts"]) == (message_id, {"task": 1}, 1)
    assert isinstance(body["lease"], str) and body["lease"]


def test_the_lease_is_stored_on_the_message(api, clock):
    message_id = api.send("x")

    body = api.next().json()

    message = Message.objects.get(id=message_id)
    assert message.lease == body["lease"]
    assert iso(message.visible_at) == body["lease_expires_at"]
    assert message.attempts == 1
    assert message.state() == "leased"


def test_a_lease_lasts_PENDING_TIMEOUT_milliseconds_by_default(api, clock):
    api.send("x")

    body = api.next().json()

    assert body["lease_expires_at"] == iso(timezone.now() + timedelta(seconds=10))


def test_PENDING_TIMEOUT_sets_the_default_lease(api, clock, settings):
    settings.PENDING_TIMEOUT = 2500
    api.send("x")

    body = api.next().json()

    assert body["lease_expires_at"] == iso(timezone.now() + timedelta(seconds=2.5))


@pytest.mark.parametrize("timeout, seconds", [("30", 30), ("0.5", 0.5), ("43200", 43200)])
def test_the_timeout_parameter_sets_this_lease_in_seconds(api, clock, timeout, seconds):
    message_id = api.send("x")

    body = api.next(timeout=timeout).json()

    expires = timezone.now() + timedelta(seconds=seconds)
    assert body["lease_expires_at"] == iso(expires)
    assert Message.objects.get(id=message_id).visible_at == expires


def test_a_leased_message_is_not_delivered_to_a_second_consumer(api):
    message_id = api.send("only one")
    first = api.next().json()

    second = api.next()

    assert second.status_code == 204
    message = Message.objects.get(id=message_id)
    assert (message.lease, message.attempts) == (first["lease"], 1)


def test_a_second_consumer_gets_the_next_message_instead(api):
    first_id, second_id = api.send(1), api.send(2)
    api.next()

    assert api.next().json()["id"] == second_id
    assert Message.objects.get(id=first_id).attempts == 1


def test_a_message_stays_leased_until_its_lease_ends(api, clock):
    api.send("x")
    api.next()

    clock.shift(timedelta(seconds=10) - timedelta(milliseconds=1))

    assert api.next().status_code == 204


def test_a_message_whose_lease_expired_is_delivered_again(api, clock):
    message_id = api.send("x")
    api.next()

    clock.shift(10)
    again = api.next()

    assert again.status_code == 200
    assert (again.json()["id"], again.json()["attempts"]) == (message_id, 2)
    assert Message.objects.get(id=message_id).lease == again.json()["lease"]


def test_an_expired_message_comes_back_before_newer_messages(api, clock):
    older = api.send("older")
    api.next()
    newer = api.send("newer")

    clock.shift(11)

    assert api.next().json()["id"] == older
    assert api.next().json()["id"] == newer


def test_each_delivery_has_a_new_lease_token(api, clock):
    api.send("x")
    leases = []
    for _ in range(3):
        leases.append(api.next().json()["lease"])
        clock.shift(11)

    assert len(set(leases)) == 3


def test_attempts_counts_deliveries(api, clock):
    message_id = api.send("x")
    for _ in range(3):
        api.next()
        clock.shift(11)

    assert api.next().json()["attempts"] == 4
    assert Message.objects.get(id=message_id).attempts == 4


def test_a_message_is_delivered_at_most_MQ_MAX_ATTEMPTS_times(api, clock, settings):
    settings.MQ_MAX_ATTEMPTS = 2
    api.send("poison")
    for _ in range(2):
        assert api.next().status_code == 200
        clock.shift(11)

    assert api.next().status_code == 204


def test_next_on_an_empty_queue_is_204_with_no_body_and_no_content_type(api):
    response = api.next()

    assert response.status_code == 204
    assert response.content == b""
    assert "Content-Type" not in response


def test_next_once_everything_is_done_is_204(api):
    message_id = api.send("x")
    api.next()
    api.done(message_id)

    assert api.next().status_code == 204


def test_a_head_request_does_not_lease_a_message(api, stored):
    api.send("x")
    before = stored()

    response = api.client.head("/message/next")

    assert response.status_code < 500
    assert stored() == before
