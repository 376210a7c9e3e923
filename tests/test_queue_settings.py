"""Per-queue settings: ``GET/PUT /queues/<name>`` for ``timeout`` (the default
lease, seconds) and ``max_attempts``, with the queue's counts; editable in the
admin too."""

import json
import time
from datetime import timedelta

import pytest
import requests
from contract import assert_error
from django.utils import timezone

from messages_app.models import Message, Queue

pytestmark = pytest.mark.django_db


SETTINGS_AND_COUNTS = [
    "name",
    "timeout",
    "max_attempts",
    "dead_letter_queue",
    "ready",
    "delayed",
    "leased",
    "dead",
    "oldest_created_at",
]


def iso(moment) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def put(api, queue: str, body):
    return api.client.put(f"/queues/{queue}", json.dumps(body), content_type="application/json")


def deliver(api, queue: str | None = None, **params) -> dict:
    response = api.next(queue, **params)
    assert response.status_code == 200, response.content
    return response.json()


# Reading


def test_a_queue_never_used_reads_as_defaults_and_zero_counts(api):
    response = api.get("/queues/fresh")

    assert response.status_code == 200
    assert response.json() == {
        "name": "fresh",
        "timeout": None,
        "max_attempts": None,
        "dead_letter_queue": None,
        "ready": 0,
        "delayed": 0,
        "leased": 0,
        "dead": 0,
        "oldest_created_at": None,
    }


def test_reading_a_queue_never_used_does_not_create_it(api):
    api.get("/queues/fresh")

    assert not Queue.objects.filter(name="fresh").exists()


def test_a_queue_reads_with_its_counts_by_state(api, clock):
    put(api, "jobs", {"max_attempts": 1})
    first = api.send("leased", queue="jobs")
    api.send("ready", queue="jobs")
    api.post("/queues/jobs/message/new", {"payload": "delayed", "delay": 60})
    deliver(api, "jobs", timeout=30)
    api.send("elsewhere", queue="other")

    body = api.get("/queues/jobs").json()

    assert list(body) == SETTINGS_AND_COUNTS
    assert (body["ready"], body["delayed"], body["leased"], body["dead"]) == (1, 1, 1, 0)
    assert body["oldest_created_at"] == iso(Message.objects.get(id=first).created_at)


def test_the_queue_list_shows_each_queues_settings(api):
    put(api, "jobs", {"timeout": 30, "max_attempts": 4})
    api.send("x")

    queues = {q["name"]: q for q in api.get("/queues").json()["queues"]}

    assert list(queues["jobs"]) == SETTINGS_AND_COUNTS
    assert (queues["jobs"]["timeout"], queues["jobs"]["max_attempts"]) == (30, 4)
    assert (queues["default"]["timeout"], queues["default"]["max_attempts"]) == (None, None)


# Changing


def test_putting_settings_answers_with_the_queue_as_read(api):
    response = put(api, "jobs", {"timeout": 30, "max_attempts": 5})

    assert response.status_code == 200
    assert response.json() == {**api.get("/queues/jobs").json(), "timeout": 30, "max_attempts": 5}


def test_putting_settings_stores_them_on_the_queue(api):
    put(api, "jobs", {"timeout": 2.5, "max_attempts": 5})

    queue = Queue.objects.get(name="jobs")
    assert (queue.timeout, queue.max_attempts) == (2.5, 5)


def test_putting_settings_creates_a_queue_never_used(api):
    put(api, "fresh", {"timeout": 30})

    assert "fresh" in [q["name"] for q in api.get("/queues").json()["queues"]]


def test_putting_one_setting_leaves_the_other_as_it_was(api):
    put(api, "jobs", {"timeout": 30, "max_attempts": 5})

    response = put(api, "jobs", {"max_attempts": 2})

    assert (response.json()["timeout"], response.json()["max_attempts"]) == (30, 2)


def test_putting_null_puts_a_setting_back_to_its_default(api):
    put(api, "jobs", {"timeout": 30, "max_attempts": 5})

    response = put(api, "jobs", {"timeout": None, "max_attempts": None})

    assert (response.json()["timeout"], response.json()["max_attempts"]) == (None, None)
    queue = Queue.objects.get(name="jobs")
    assert (queue.timeout, queue.max_attempts) == (None, None)


def test_putting_an_empty_object_changes_nothing(api):
    put(api, "jobs", {"timeout": 30, "max_attempts": 5})

    response = put(api, "jobs", {})

    assert (response.json()["timeout"], response.json()["max_attempts"]) == (30, 5)


# Their effect


def test_a_queues_timeout_is_its_default_lease(api, clock):
    put(api, "jobs", {"timeout": 90})
    api.send("x", queue="jobs")

    delivered = deliver(api, "jobs")

    assert delivered["lease_expires_at"] == iso(timezone.now() + timedelta(seconds=90))


def test_a_queues_timeout_applies_to_batch_receives(api, clock):
    put(api, "jobs", {"timeout": 90})
    api.post("/queues/jobs/messages/new", {"payloads": ["a", "b"]})

    messages = api.get("/queues/jobs/messages/next", data={"count": 2}).json()["messages"]

    expected = iso(timezone.now() + timedelta(seconds=90))
    assert [m["lease_expires_at"] for m in messages] == [expected, expected]


def test_the_timeout_parameter_still_overrides_the_queues_timeout(api, clock):
    put(api, "jobs", {"timeout": 90})
    api.send("x", queue="jobs")

    delivered = deliver(api, "jobs", timeout=5)

    assert delivered["lease_expires_at"] == iso(timezone.now() + timedelta(seconds=5))


def test_a_queues_timeout_applies_to_that_queue_only(api, clock):
    put(api, "jobs", {"timeout": 90})
    api.send("x")

    delivered = deliver(api)

    assert delivered["lease_expires_at"] == iso(timezone.now() + timedelta(seconds=10))


def test_a_queue_whose_timeout_is_put_back_to_null_uses_PENDING_TIMEOUT(api, clock, settings):
    settings.PENDING_TIMEOUT = 4000
    put(api, "jobs", {"timeout": 90})
    put(api, "jobs", {"timeout": None})
    api.send("x", queue="jobs")

    delivered = deliver(api, "jobs")

    assert delivered["lease_expires_at"] == iso(timezone.now() + timedelta(seconds=4))


def test_a_queues_max_attempts_limits_its_deliveries(api, clock):
    put(api, "jobs", {"max_attempts": 1})
    api.send("x", queue="jobs")
    deliver(api, "jobs", timeout=5)
    clock.shift(5)

    assert api.next(queue="jobs").status_code == 204
    assert api.get("/queues/jobs").json()["dead"] == 1


def test_lowering_max_attempts_counts_spent_messages_as_dead(api, clock):
    api.send("x", queue="jobs")
    for _ in range(3):
        deliver(api, "jobs", timeout=5)
        clock.shift(5)

    response = put(api, "jobs", {"max_attempts": 2})

    assert response.json()["dead"] == 1
    assert api.next(queue="jobs").status_code == 204


# Bad requests


@pytest.mark.parametrize(
    "body",
    [
        {"max_attempts": 0},
        {"max_attempts": -1},
        {"max_attempts": "x"},
        {"max_attempts": "3"},
        {"max_attempts": 1.5},
        {"max_attempts": 2.0},
        {"max_attempts": True},
        {"max_attempts": [3]},
    ],
    ids=["zero", "negative", "text", "numeric text", "fraction", "float", "boolean", "list"],
)
def test_a_max_attempts_that_is_not_a_whole_number_from_1_is_refused(api, stored, body):
    put(api, "jobs", {"timeout": 30, "max_attempts": 5})
    before = stored()

    response = put(api, "jobs", body)

    assert_error(response, 400, "invalid_max_attempts")
    assert stored() == before


@pytest.mark.parametrize(
    "timeout",
    [0, -1, "x", "", 12 * 60 * 60 + 1, True, [30]],
    ids=["zero", "negative", "text", "empty text", "over 12 hours", "boolean", "list"],
)
def test_a_timeout_that_is_not_a_positive_number_of_seconds_is_refused(api, stored, timeout):
    put(api, "jobs", {"timeout": 30, "max_attempts": 5})
    before = stored()

    response = put(api, "jobs", {"timeout": timeout})

    assert_error(response, 400, "invalid_timeout")
    assert stored() == before


def test_a_bad_setting_refuses_the_whole_request(api, stored):
    put(api, "jobs", {"timeout": 30, "max_attempts": 5})
    before = stored()

    response = put(api, "jobs", {"timeout": 60, "max_attempts": 0})

    assert_error(response, 400, "invalid_max_attempts")
    assert stored() == before


def test_a_bad_setting_on_a_queue_never_used_does_not_create_it(api):
    response = put(api, "fresh", {"max_attempts": 0})

    assert response.status_code == 400
    assert not Queue.objects.filter(name="fresh").exists()


def test_settings_that_are_not_a_json_object_are_refused(api, stored):
    before = stored()

    response = put(api, "jobs", [{"timeout": 30}])

    assert_error(response, 400, "invalid_body")
    assert stored() == before


def test_settings_of_a_bad_queue_name_are_refused(api, stored):
    before = stored()

    response = put(api, "bad name!", {"timeout": 30})

    assert_error(response, 400, "invalid_queue_name")
    assert stored() == before


# The admin


def test_the_admin_changes_a_queues_settings(api, clock, admin_client):
    api.send("x", queue="jobs")

    response = admin_client.post(
        "/admin/messages_app/queue/jobs/change/", {"timeout": "45", "max_attempts": "3"}
    )

    assert response.status_code == 302
    assert api.get("/queues/jobs").json()["timeout"] == 45
    assert deliver(api, "jobs")["lease_expires_at"] == iso(timezone.now() + timedelta(seconds=45))


def test_raising_max_attempts_keeps_a_decided_death(api, clock):
    put(api, "jobs", {"max_attempts": 1})
    api.send("poison", queue="jobs")
    deliver(api, "jobs")
    clock.shift(11)  # its only allowed delivery's lease ran out: dead

    put(api, "jobs", {"max_attempts": 5})

    assert api.get("/queues/jobs").json()["dead"] == 1
    assert api.next("jobs").status_code == 204


def test_raising_max_attempts_in_the_admin_keeps_a_decided_death(api, clock, admin_client):
    put(api, "jobs", {"max_attempts": 1})
    api.send("poison", queue="jobs")
    deliver(api, "jobs")
    clock.shift(11)

    response = admin_client.post(
        "/admin/messages_app/queue/jobs/change/", {"timeout": "", "max_attempts": "5"}
    )

    assert response.status_code == 302
    assert Queue.objects.get(name="jobs").max_attempts == 5
    assert api.get("/queues/jobs").json()["dead"] == 1
    assert api.next("jobs").status_code == 204


def test_a_setting_changed_in_the_admin_applies_at_once_in_its_process(api, clock, admin_client):
    put(api, "jobs", {"timeout": 1})  # this process now knows the queue's lease as 1 s
    api.send("x", queue="jobs")

    admin_client.post("/admin/messages_app/queue/jobs/change/", {"timeout": "45"})

    assert deliver(api, "jobs")["lease_expires_at"] == iso(timezone.now() + timedelta(seconds=45))


def test_a_queue_added_in_the_admin_is_served_by_the_api(api, admin_client):
    response = admin_client.post(
        "/admin/messages_app/queue/add/", {"name": "jobs.v2", "timeout": "30"}
    )

    assert response.status_code == 302
    body = api.get("/queues/jobs.v2").json()
    assert (body["name"], body["timeout"], body["max_attempts"]) == ("jobs.v2", 30, None)


@pytest.mark.parametrize("name", ["bad name!", "a/b", "ünïcode"])
def test_the_admin_refuses_a_queue_name_the_api_refuses(admin_client, stored, name):
    before = stored()

    response = admin_client.post("/admin/messages_app/queue/add/", {"name": name})

    assert response.status_code == 200  # the form again, with its error
    assert "a queue name is 1-80 letters" in response.content.decode()
    assert stored() == before


@pytest.mark.parametrize(
    "field, value",
    [("max_attempts", "0"), ("timeout", "0"), ("timeout", "-5")],
    ids=["max_attempts 0", "timeout 0", "negative timeout"],
)
def test_the_admin_refuses_settings_the_api_refuses(api, admin_client, field, value):
    put(api, "jobs", {"timeout": 30, "max_attempts": 5})

    response = admin_client.post(
        "/admin/messages_app/queue/jobs/change/",
        {"timeout": "30", "max_attempts": "5", field: value},
    )

    assert response.status_code == 200  # the form again, with its error
    queue = Queue.objects.get(name="jobs")
    assert (queue.timeout, queue.max_attempts) == (30, 5)


# Several server processes


@pytest.mark.django_db(transaction=True)
def test_a_setting_changed_on_one_server_applies_on_another_within_seconds(server_factory):
    first, second = server_factory.many(2)
    requests.post(second.url + "/queues/jobs/message/new", json={"payload": 1})
    requests.get(second.url + "/queues/jobs/messages/next", params={"count": 1, "timeout": 1})

    assert requests.put(first.url + "/queues/jobs", json={"max_attempts": 1}).status_code == 200
    time.sleep(2)  # past the lease, and past any per-process cache of the settings

    responses = [requests.get(second.url + "/queues/jobs/message/next") for _ in range(4)]
    assert [r.status_code for r in responses] == [204] * 4
