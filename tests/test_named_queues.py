"""Named queues: every message route under /queues/<name>/, each queue on its own,
the seed routes being the queue ``default``; GET /queues lists them with counts."""

from datetime import datetime, timedelta

import pytest
from django.utils import timezone

from messages_app.models import Message, Queue

pytestmark = pytest.mark.django_db


def test_a_message_sent_to_a_named_queue_is_stored_in_it(api):
    response = api.post("/queues/jobs/message/new", {"payload": "x"})

    assert response.status_code == 201
    assert Message.objects.get(id=response.json()["id"]).queue_id == "jobs"
    assert Queue.objects.filter(name="jobs").exists()


def test_the_full_cycle_works_on_a_named_queue(api):
    message_id = api.send({"n": 1}, queue="jobs")

    delivered = api.next(queue="jobs").json()
    done = api.done(message_id, lease=delivered["lease"], queue="jobs")

    assert (delivered["id"], delivered["payload"]) == (message_id, {"n": 1})
    assert done.json() == {"id": message_id, "status": "processed"}
    assert not Message.objects.filter(id=message_id).exists()


def test_a_named_queue_does_not_deliver_messages_of_another_queue(api):
    api.send("for emails", queue="emails")

    assert api.next(queue="jobs").status_code == 204
    assert Message.objects.get().attempts == 0


def test_the_default_queue_does_not_deliver_messages_of_named_queues(api):
    api.send("for jobs", queue="jobs")

    assert api.next().status_code == 204


def test_a_named_queue_does_not_deliver_messages_of_the_default_queue(api):
    api.send("for default")

    assert api.next(queue="jobs").status_code == 204


def test_the_seed_routes_are_the_queue_named_default(api):
    message_id = api.send("x")

    assert api.next(queue="default").json()["id"] == message_id
    assert api.done(message_id, queue="default").status_code == 200


def test_each_queue_keeps_its_own_order(api):
    a1, b1, a2, b2 = (
        api.send("a1", queue="a"),
        api.send("b1", queue="b"),
        api.send("a2", queue="a"),
        api.send("b2", queue="b"),
    )

    assert [api.next(queue="b").json()["id"] for _ in range(2)] == [b1, b2]
    assert [api.next(queue="a").json()["id"] for _ in range(2)] == [a1, a2]


def test_done_through_another_queue_is_404_and_changes_nothing(api, stored):
    message_id = api.send("x", queue="jobs")
    api.next(queue="jobs")
    before = stored()

    response = api.done(message_id, queue="emails")

    assert response.status_code == 404
    assert stored() == before


def test_next_on_a_never_used_queue_is_204_and_creates_nothing(api):
    response = api.next(queue="never-used")

    assert response.status_code == 204
    assert response.content == b""
    assert not Queue.objects.filter(name="never-used").exists()


@pytest.mark.parametrize("name", ["q" * 80, "a", "with-dash_under.dot", "MiXeD123"])
def test_queue_names_of_letters_digits_dash_underscore_and_dot_are_accepted(api, name):
    message_id = api.send("x", queue=name)

    assert api.next(queue=name).json()["id"] == message_id
    assert Message.objects.get(id=message_id).queue_id == name


def test_queue_names_are_case_sensitive(api):
    api.send("lower", queue="jobs")

    assert api.next(queue="Jobs").status_code == 204
    assert Message.objects.get().attempts == 0


def test_queues_lists_every_queue_with_its_counts(api, clock):
    api.send("ready", queue="jobs")
    api.send("leased", queue="emails")
    api.next(queue="emails")
    api.send("ready")

    assert listed(api) == [
        queue_json("default", ready=1),
        queue_json("emails", leased=1),
        queue_json("jobs", ready=1),
    ]


def queue_json(name: str, ready=0, leased=0, delayed=0, dead=0, oldest=True) -> dict:
    return {
        "name": name,
        "ready": ready,
        "delayed": delayed,
        "leased": leased,
        "dead": dead,
        "oldest_created_at": timezone.now() if oldest else None,
    }


COUNTS = ("name", "ready", "delayed", "leased", "dead", "oldest_created_at")


def listed(api) -> list[dict]:
    """GET /queues: each queue's name, counts and oldest message (as a datetime)."""
    response = api.get("/queues")
    assert response.status_code == 200
    queues = [{key: queue[key] for key in COUNTS} for queue in response.json()["queues"]]
    for queue in queues:
        if queue["oldest_created_at"] is not None:
            queue["oldest_created_at"] = datetime.fromisoformat(queue["oldest_created_at"])
    return queues


def test_queues_counts_every_state(api, clock):
    ids = [api.send(n, queue="jobs") for n in range(6)]
    api.next(queue="jobs")  # ids[0] leased
    Message.objects.filter(id=ids[1]).update(dead=True)
    Message.objects.filter(id__in=ids[2:4]).update(visible_at=timezone.now() + timedelta(hours=1))

    (jobs,) = listed(api)

    assert (jobs["ready"], jobs["leased"], jobs["delayed"], jobs["dead"]) == (2, 1, 2, 1)


def test_a_message_whose_lease_expired_counts_as_ready(api, clock):
    api.send("x", queue="jobs")
    api.next(queue="jobs")
    clock.shift(11)

    (jobs,) = listed(api)

    assert (jobs["ready"], jobs["leased"]) == (1, 0)


def test_a_message_out_of_attempts_counts_as_dead_once_its_last_lease_expires(api, clock, settings):
    settings.MQ_MAX_ATTEMPTS = 1
    api.send("poison", queue="jobs")
    api.next(queue="jobs")
    clock.shift(11)

    (jobs,) = listed(api)

    assert (jobs["ready"], jobs["leased"], jobs["dead"]) == (0, 0, 1)


def test_a_queue_stays_listed_with_zero_counts_once_emptied(api):
    message_id = api.send("x", queue="jobs")
    api.next(queue="jobs")
    api.done(message_id, queue="jobs")

    assert listed(api) == [queue_json("jobs", oldest=False)]


def test_queues_is_an_empty_list_before_anything_is_sent(api):
    assert api.get("/queues").json() == {"queues": []}


def test_queues_reports_the_oldest_message_time(api, clock):
    api.send("first", queue="jobs")
    sent_at = timezone.now()
    clock.shift(60)
    api.send("second", queue="jobs")

    (jobs,) = listed(api)

    assert jobs["oldest_created_at"] == sent_at
