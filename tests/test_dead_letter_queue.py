"""A queue's ``dead_letter_queue``: a message that dies there is moved to that
queue, ready, attempts reset, the queue it died in recorded, in the transaction
that stores its death: the claim's sweep, a give back, requeue_expired, or a
change of the queue's settings."""

import json

import pytest
from django.core.management import call_command

from messages_app import domain
from messages_app.models import Message, Queue

pytestmark = pytest.mark.django_db


def configure(api, queue: str, **fields):
    return api.client.put(f"/queues/{queue}", json.dumps(fields), content_type="application/json")


def with_target(api, queue: str = "jobs", target: str = "jobs-dead", max_attempts: int = 1):
    response = configure(api, queue, max_attempts=max_attempts, dead_letter_queue=target)
    assert response.status_code == 200, response.content
    return response.json()


def deliver(api, queue: str, **params) -> dict:
    response = api.next(queue, **params)
    assert response.status_code == 200, response.content
    return response.json()


def assert_moved(message_id: int, target: str = "jobs-dead", source: str = "jobs"):
    message = Message.objects.get(id=message_id)
    assert (message.queue_id, message.dead, message.attempts, message.lease) == (
        target,
        False,
        0,
        None,
    )
    assert message.dead_letter_source == source


def test_put_sets_the_dead_letter_queue_and_creates_it(api):
    body = with_target(api)
    assert body["dead_letter_queue"] == "jobs-dead"
    assert Queue.objects.get(name="jobs").dead_letter_queue_id == "jobs-dead"
    assert Queue.objects.filter(name="jobs-dead").exists()


def test_put_null_removes_the_dead_letter_queue(api):
    with_target(api)
    assert configure(api, "jobs", dead_letter_queue=None).json()["dead_letter_queue"] is None


@pytest.mark.parametrize("target", ["jobs", "bad name", 7])
def test_put_refuses_a_dead_letter_queue_that_cannot_be_one(api, stored, target):
    configure(api, "jobs", max_attempts=2)
    before = stored()
    response = configure(api, "jobs", dead_letter_queue=target)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_dead_letter_queue"
    assert stored() == before


def test_a_message_whose_last_lease_ran_out_is_moved_at_the_next_claim(api, clock):
    with_target(api)
    message_id = api.send("poison", queue="jobs")
    deliver(api, "jobs", timeout=5)
    clock.shift(5)
    assert api.next("jobs").status_code == 204
    assert_moved(message_id)
    moved = deliver(api, "jobs-dead")
    assert (moved["id"], moved["payload"], moved["attempts"]) == (message_id, "poison", 1)


def test_a_message_given_back_on_its_last_delivery_is_moved(api):
    with_target(api)
    message_id = api.send("poison", queue="jobs")
    lease = deliver(api, "jobs")["lease"]
    response = api.post(f"/queues/jobs/message/{message_id}/status/ready", {"lease": lease})
    assert response.json()["status"] == "dead"
    assert_moved(message_id)


def test_requeue_expired_moves_a_message_whose_last_lease_ran_out(api, clock):
    with_target(api)
    message_id = api.send("poison", queue="jobs")
    deliver(api, "jobs", timeout=5)
    clock.shift(5)
    call_command("requeue_expired")
    assert_moved(message_id)


def test_requeue_expired_leaves_dead_in_place_a_message_of_a_queue_without_target(api, clock):
    with_target(api)
    configure(api, "other", max_attempts=1)
    message_id = api.send("poison", queue="other")
    deliver(api, "other", timeout=5)
    clock.shift(5)
    call_command("requeue_expired")
    message = Message.objects.get(id=message_id)
    assert (message.queue_id, message.dead) == ("other", True)


def test_lowering_max_attempts_moves_the_messages_the_old_limit_killed(api, clock):
    with_target(api, max_attempts=1)
    message_id = api.send("poison", queue="jobs")
    deliver(api, "jobs", timeout=5)
    clock.shift(5)
    configure(api, "jobs", max_attempts=5)
    assert_moved(message_id)


def test_a_message_with_deliveries_left_is_not_moved(api, clock):
    with_target(api, max_attempts=2)
    message_id = api.send("poison", queue="jobs")
    deliver(api, "jobs", timeout=5)
    clock.shift(5)
    call_command("requeue_expired")
    assert Message.objects.get(id=message_id).queue_id == "jobs"


def test_the_claims_sweep_runs_at_most_once_a_second_per_queue(api, clock):
    with_target(api)
    first = api.send("one", queue="jobs")
    second = api.send("two", queue="jobs")
    deliver(api, "jobs", timeout=1)
    clock.shift(1)
    deliver(api, "jobs", timeout=0.5)  # sweeps ("one" is moved), then delivers "two"
    assert Message.objects.get(id=first).queue_id == "jobs-dead"
    clock.shift(0.5)
    assert api.next("jobs").status_code == 204  # "two" ran out, no sweep yet
    assert Message.objects.get(id=second).queue_id == "jobs"
    clock.shift(0.5)
    api.next("jobs")
    assert [first, second] == list(
        Message.objects.filter(queue_id="jobs-dead").values_list("id", flat=True)
    )


def test_the_native_queue_list_shows_the_dead_letter_queue(api):
    with_target(api)
    queues = {q["name"]: q for q in api.get("/queues").json()["queues"]}
    assert queues["jobs"]["dead_letter_queue"] == "jobs-dead"
    assert queues["jobs-dead"]["dead_letter_queue"] is None


def test_deleting_the_target_queue_leaves_the_source_without_one(api):
    with_target(api)
    domain.delete_queue("jobs-dead")
    assert Queue.objects.get(name="jobs").dead_letter_queue_id is None


def test_the_admin_sets_a_queues_dead_letter_queue(api, admin_client):
    api.send("x", queue="jobs")
    api.send("y", queue="jobs-dead")
    response = admin_client.post(
        "/admin/messages_app/queue/jobs/change/",
        {"timeout": "", "max_attempts": "2", "dead_letter_queue": "jobs-dead"},
    )
    assert response.status_code == 302
    assert Queue.objects.get(name="jobs").dead_letter_queue_id == "jobs-dead"


def test_the_admin_refuses_a_queue_as_its_own_dead_letter_queue(api, admin_client):
    api.send("x", queue="jobs")
    response = admin_client.post(
        "/admin/messages_app/queue/jobs/change/", {"timeout": "", "dead_letter_queue": "jobs"}
    )
    assert response.status_code == 200
    assert b"cannot be its own dead-letter queue" in response.content
    assert Queue.objects.get(name="jobs").dead_letter_queue_id is None
