"""Lease control: extend a lease (heartbeat) with ``POST .../message/<id>/lease``,
give a message back at once, optionally with a delay, with
``POST .../message/<id>/status/ready``. Both check the lease token."""

from datetime import timedelta

import pytest
from contract import assert_error
from django.core.management import call_command
from django.utils import timezone

from messages_app.models import Message

pytestmark = pytest.mark.django_db


def iso(moment) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def route(queue: str | None, tail: str) -> str:
    return f"/{tail}" if queue is None else f"/queues/{queue}/{tail}"


def extend(api, message_id, body, queue: str | None = None):
    return api.post(route(queue, f"message/{message_id}/lease"), body)


def give_back(api, message_id, body=None, queue: str | None = None):
    return api.post(route(queue, f"message/{message_id}/status/ready"), body)


def deliver(api, queue: str | None = None, **params) -> dict:
    response = api.next(queue, **params)
    assert response.status_code == 200, response.content
    return response.json()


# Extending a lease


def test_extending_a_lease_answers_with_its_new_expiry(api, clock):
    message_id = api.send("work")
    lease = deliver(api)["lease"]
    clock.shift(5)

    response = extend(api, message_id, {"lease": lease, "timeout": 30})

    assert response.status_code == 200
    assert response.json() == {
        "id": message_id,
        "lease": lease,
        "lease_expires_at": iso(timezone.now() + timedelta(seconds=30)),
    }


def test_an_extended_lease_is_stored_with_the_same_token(api, clock):
    message_id = api.send("work")
    lease = deliver(api)["lease"]

    extend(api, message_id, {"lease": lease, "timeout": 30})

    message = Message.objects.get(id=message_id)
    assert message.lease == lease
    assert message.visible_at == timezone.now() + timedelta(seconds=30)
    assert message.attempts == 1


def test_an_extended_lease_keeps_the_message_from_other_consumers(api, clock):
    message_id = api.send("work")
    lease = deliver(api)["lease"]  # 10 s by default
    clock.shift(8)
    extend(api, message_id, {"lease": lease, "timeout": 30})
    clock.shift(20)

    assert api.next().status_code == 204
    assert api.done(message_id, lease).status_code == 200


def test_an_extended_lease_still_ends(api, clock):
    message_id = api.send("work")
    lease = deliver(api)["lease"]
    extend(api, message_id, {"lease": lease, "timeout": 30})
    clock.shift(30)

    redelivered = deliver(api)

    assert redelivered["id"] == message_id
    assert redelivered["attempts"] == 2


def test_a_lease_can_be_shortened(api, clock):
    message_id = api.send("work")
    lease = deliver(api, timeout=60)["lease"]
    extend(api, message_id, {"lease": lease, "timeout": 1})
    clock.shift(1)

    assert deliver(api)["id"] == message_id


def test_extending_without_a_timeout_gives_the_default_lease_again(api, clock):
    message_id = api.send("work")
    lease = deliver(api)["lease"]
    clock.shift(5)

    response = extend(api, message_id, {"lease": lease})

    assert response.json()["lease_expires_at"] == iso(timezone.now() + timedelta(seconds=10))


def test_extending_without_a_timeout_uses_the_queues_own_lease_length(api, clock):
    api.client.put("/queues/jobs", '{"timeout": 120}', content_type="application/json")
    message_id = api.send("work", queue="jobs")
    lease = deliver(api, queue="jobs")["lease"]
    clock.shift(5)

    response = extend(api, message_id, {"lease": lease}, queue="jobs")

    assert response.json()["lease_expires_at"] == iso(timezone.now() + timedelta(seconds=120))


def test_a_lease_can_be_extended_on_a_named_queue(api, clock):
    message_id = api.send("work", queue="jobs")
    lease = deliver(api, queue="jobs")["lease"]

    response = extend(api, message_id, {"lease": lease, "timeout": 30}, queue="jobs")

    assert response.status_code == 200
    assert Message.objects.get(id=message_id).visible_at == timezone.now() + timedelta(seconds=30)


def test_extending_with_a_stale_lease_is_409_and_changes_nothing(api, clock, stored):
    message_id = api.send("work")
    old = deliver(api, timeout=5)["lease"]
    clock.shift(5)
    deliver(api)
    before = stored()

    response = extend(api, message_id, {"lease": old, "timeout": 60})

    assert_error(response, 409, "stale_lease")
    assert stored() == before


def test_extending_a_message_nobody_holds_is_409(api, stored):
    message_id = api.send("work")
    before = stored()

    response = extend(api, message_id, {"lease": "0" * 32, "timeout": 60})

    assert_error(response, 409, "not_leased")
    assert stored() == before


def test_extending_an_unknown_message_is_404(api):
    assert_error(extend(api, 999999, {"lease": "0" * 32, "timeout": 60}), 404, "not_found")


def test_extending_a_message_of_another_queue_is_404(api):
    message_id = api.send("work", queue="other")
    lease = deliver(api, queue="other")["lease"]

    assert_error(extend(api, message_id, {"lease": lease, "timeout": 60}), 404, "not_found")


def test_a_lease_that_ran_out_can_be_extended_while_nobody_else_took_the_message(api, clock):
    message_id = api.send("work")
    lease = deliver(api, timeout=5)["lease"]
    clock.shift(6)

    response = extend(api, message_id, {"lease": lease, "timeout": 60})

    assert response.status_code == 200
    assert api.next().status_code == 204


def test_a_lease_cleared_by_requeue_expired_can_no_longer_be_extended(api, clock, stored):
    message_id = api.send("work")
    lease = deliver(api, timeout=5)["lease"]
    clock.shift(6)
    call_command("requeue_expired")
    before = stored()

    response = extend(api, message_id, {"lease": lease, "timeout": 60})

    assert_error(response, 409, "not_leased")
    assert stored() == before


@pytest.mark.parametrize(
    "body, code",
    [
        ({"lease": "L", "timeout": 0}, "invalid_timeout"),
        ({"lease": "L", "timeout": -1}, "invalid_timeout"),
        ({"lease": "L", "timeout": "x"}, "invalid_timeout"),
        ({"lease": "L", "timeout": 12 * 60 * 60 + 1}, "invalid_timeout"),
        ({"lease": "L", "timeout": True}, "invalid_timeout"),
        ({"lease": 5, "timeout": 30}, "invalid_lease"),
        ({"lease": "", "timeout": 30}, "invalid_lease"),
        (["L"], "invalid_body"),
    ],
    ids=[
        "zero timeout",
        "negative timeout",
        "text timeout",
        "timeout over 12 hours",
        "boolean timeout",
        "numeric lease",
        "empty lease",
        "body not an object",
    ],
)
def test_a_bad_extend_request_is_400_and_changes_nothing(api, stored, body, code):
    message_id = api.send("work")
    lease = deliver(api)["lease"]
    if isinstance(body, dict) and body["lease"] == "L":
        body = {**body, "lease": lease}
    before = stored()

    response = extend(api, message_id, body)

    assert_error(response, 400, code)
    assert stored() == before


def test_extending_a_message_id_that_is_not_a_number_is_400(api):
    assert_error(extend(api, "abc", {"lease": "0" * 32, "timeout": 5}), 400, "invalid_id")


# Giving a message back


def test_giving_a_message_back_makes_it_ready_at_once(api):
    message_id = api.send("work")
    lease = deliver(api)["lease"]

    response = give_back(api, message_id, {"lease": lease})

    assert response.status_code == 200
    assert response.json() == {"id": message_id, "status": "ready"}
    message = Message.objects.get(id=message_id)
    assert message.lease is None
    assert message.state() == "ready"


def test_a_message_given_back_is_delivered_again_before_newer_messages(api):
    message_id = api.send("first")
    newer = api.send("second")
    lease = deliver(api)["lease"]
    give_back(api, message_id, {"lease": lease})

    redelivered = deliver(api)

    assert redelivered["id"] == message_id
    assert redelivered["attempts"] == 2
    assert redelivered["lease"] != lease
    assert deliver(api)["id"] == newer


def test_a_message_given_back_with_a_delay_waits_that_long(api, clock):
    message_id = api.send("work")
    lease = deliver(api)["lease"]

    response = give_back(api, message_id, {"lease": lease, "delay": 30})

    assert response.json() == {"id": message_id, "status": "delayed"}
    assert Message.objects.get(id=message_id).state() == "delayed"
    clock.shift(29)
    assert api.next().status_code == 204
    clock.shift(1)
    assert deliver(api)["id"] == message_id


def test_a_message_given_back_can_no_longer_be_acked_with_the_old_lease(api):
    message_id = api.send("work")
    lease = deliver(api)["lease"]
    give_back(api, message_id, {"lease": lease})

    response = api.done(message_id, lease)

    assert_error(response, 409, "not_leased")
    assert Message.objects.filter(id=message_id).exists()


def test_a_message_can_be_given_back_without_a_lease_while_delivered(api):
    message_id = api.send("work")
    deliver(api)

    response = give_back(api, message_id)

    assert response.json() == {"id": message_id, "status": "ready"}


def test_a_message_can_be_given_back_on_a_named_queue(api):
    message_id = api.send("work", queue="jobs")
    lease = deliver(api, queue="jobs")["lease"]

    response = give_back(api, message_id, {"lease": lease}, queue="jobs")

    assert response.json() == {"id": message_id, "status": "ready"}
    assert deliver(api, queue="jobs")["id"] == message_id


def test_giving_back_with_a_stale_lease_is_409_and_changes_nothing(api, clock, stored):
    message_id = api.send("work")
    old = deliver(api, timeout=5)["lease"]
    clock.shift(5)
    deliver(api)
    before = stored()

    response = give_back(api, message_id, {"lease": old})

    assert_error(response, 409, "stale_lease")
    assert stored() == before


def test_giving_back_a_message_twice_is_409_the_second_time(api, stored):
    message_id = api.send("work")
    lease = deliver(api)["lease"]
    give_back(api, message_id, {"lease": lease})
    before = stored()

    response = give_back(api, message_id, {"lease": lease})

    assert_error(response, 409, "not_leased")
    assert stored() == before


def test_giving_back_an_unknown_message_is_404(api):
    assert_error(give_back(api, 999999, {"lease": "0" * 32}), 404, "not_found")


def test_giving_back_the_last_allowed_delivery_makes_the_message_dead(api):
    api.client.put("/queues/jobs", '{"max_attempts": 1}', content_type="application/json")
    message_id = api.send("work", queue="jobs")
    lease = deliver(api, queue="jobs")["lease"]

    response = give_back(api, message_id, {"lease": lease}, queue="jobs")

    assert response.json() == {"id": message_id, "status": "dead"}
    assert Message.objects.get(id=message_id).dead
    assert api.next(queue="jobs").status_code == 204


@pytest.mark.parametrize(
    "body, code",
    [
        ({"lease": "L", "delay": -1}, "invalid_delay"),
        ({"lease": "L", "delay": "x"}, "invalid_delay"),
        ({"lease": "L", "delay": 7 * 24 * 60 * 60 + 1}, "invalid_delay"),
        ({"lease": 5}, "invalid_lease"),
        ({"lease": ""}, "invalid_lease"),
        (["L"], "invalid_body"),
    ],
    ids=[
        "negative delay",
        "text delay",
        "delay over seven days",
        "numeric lease",
        "empty lease",
        "body not an object",
    ],
)
def test_a_bad_give_back_request_is_400_and_changes_nothing(api, stored, body, code):
    message_id = api.send("work")
    lease = deliver(api)["lease"]
    if isinstance(body, dict) and body["lease"] == "L":
        body = {**body, "lease": lease}
    before = stored()

    response = give_back(api, message_id, body)

    assert_error(response, 400, code)
    assert stored() == before
