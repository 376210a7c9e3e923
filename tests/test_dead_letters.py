"""Dead letters: a message is delivered at most ``max_attempts`` times; when its
last allowed delivery's lease runs out or it is given back, it is dead: never
delivered again, counted and listed, until a redrive makes it ready again."""

import json
from datetime import datetime

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from messages_app.models import Message

pytestmark = pytest.mark.django_db


def configure(api, queue: str, **fields):
    response = api.client.put(
        f"/queues/{queue}", json.dumps(fields), content_type="application/json"
    )
    assert response.status_code == 200, response.content
    return response.json()


def deliver(api, queue: str | None = None, **params) -> dict:
    response = api.next(queue, **params)
    assert response.status_code == 200, response.content
    return response.json()


def let_lease_run_out(api, clock, queue: str | None = None) -> dict:
    """Deliver the next message with a 5 s lease, then let the lease run out."""
    delivered = deliver(api, queue, timeout=5)
    clock.shift(5)
    return delivered


def counts(api, queue: str) -> dict:
    body = api.get(f"/queues/{queue}").json()
    return {state: body[state] for state in ("ready", "delayed", "leased", "dead")}


def oldest_created_at(api, queue: str) -> datetime:
    return datetime.fromisoformat(api.get(f"/queues/{queue}").json()["oldest_created_at"])


def make_dead(api, clock, queue: str = "jobs", payload="poison") -> int:
    """A message on ``queue`` (max_attempts 1) whose one delivery's lease ran out."""
    configure(api, queue, max_attempts=1)
    message_id = api.send(payload, queue=queue)
    let_lease_run_out(api, clock, queue)
    return message_id


def redrive(api, queue: str):
    return api.post(f"/queues/{queue}/redrive")


# Becoming dead


def test_a_message_is_delivered_at_most_max_attempts_times(api, clock):
    configure(api, "jobs", max_attempts=2)
    message_id = api.send("poison", queue="jobs")

    attempts = [let_lease_run_out(api, clock, "jobs")["attempts"] for _ in range(2)]

    assert attempts == [1, 2]
    assert api.next(queue="jobs").status_code == 204
    assert Message.objects.filter(id=message_id).exists()


def test_a_dead_message_is_never_delivered_again(api, clock):
    make_dead(api, clock)

    clock.shift(3600)

    assert api.next(queue="jobs").status_code == 204
    assert api.get("/queues/jobs/messages/next", data={"count": 10}).json() == {"messages": []}


def test_a_dead_message_does_not_hold_up_the_messages_behind_it(api, clock):
    configure(api, "jobs", max_attempts=1)
    api.send("poison", queue="jobs")
    behind = api.send("fine", queue="jobs")
    let_lease_run_out(api, clock, "jobs")

    assert deliver(api, "jobs")["id"] == behind


def test_a_message_is_not_dead_while_its_last_lease_runs(api, clock):
    configure(api, "jobs", max_attempts=1)
    message_id = api.send("work", queue="jobs")
    lease = deliver(api, "jobs", timeout=60)["lease"]
    clock.shift(59)

    assert counts(api, "jobs") == {"ready": 0, "delayed": 0, "leased": 1, "dead": 0}
    assert api.done(message_id, lease, queue="jobs").status_code == 200


def test_a_dead_message_is_counted_as_dead(api, clock):
    make_dead(api, clock)

    assert counts(api, "jobs") == {"ready": 0, "delayed": 0, "leased": 0, "dead": 1}


def test_a_dead_message_is_counted_in_the_queue_list(api, clock):
    make_dead(api, clock)

    [jobs] = [q for q in api.get("/queues").json()["queues"] if q["name"] == "jobs"]

    assert jobs["dead"] == 1
    assert jobs["ready"] == 0


def test_a_dead_message_is_counted_in_info_and_listed_on_its_queues_page(api, clock):
    message_id = make_dead(api, clock)

    overview = api.get("/info")
    page = api.get("/info/jobs")

    [jobs] = [row.stats for row in overview.context["rows"] if row.stats.name == "jobs"]
    assert jobs.dead == 1
    assert [m.id for m in page.context["dead_letters"]] == [message_id]
    assert [(m.id, m.state) for m in page.context["browse"]] == [(message_id, "dead")]
    assert b'class="dead">dead<' in page.content


def test_a_dead_message_is_listed_under_the_admins_dead_filter(api, clock, admin_client):
    message_id = make_dead(api, clock)
    api.send("alive", queue="jobs")

    response = admin_client.get("/admin/messages_app/message/", {"state": "dead"})

    assert [m.id for m in response.context["cl"].result_list] == [message_id]


def test_a_message_given_back_on_its_last_delivery_is_dead(api):
    configure(api, "jobs", max_attempts=1)
    message_id = api.send("poison", queue="jobs")
    lease = deliver(api, "jobs")["lease"]

    response = api.post(f"/queues/jobs/message/{message_id}/status/ready", {"lease": lease})

    assert response.json()["status"] == "dead"
    assert counts(api, "jobs")["dead"] == 1
    assert api.next(queue="jobs").status_code == 204


def test_a_message_given_back_before_its_last_delivery_is_not_dead(api):
    configure(api, "jobs", max_attempts=2)
    message_id = api.send("work", queue="jobs")
    lease = deliver(api, "jobs")["lease"]

    response = api.post(f"/queues/jobs/message/{message_id}/status/ready", {"lease": lease})

    assert response.json()["status"] == "ready"
    assert deliver(api, "jobs")["attempts"] == 2


def test_a_dead_message_cannot_be_acked_with_its_last_lease_once_stored_dead(api, clock):
    configure(api, "jobs", max_attempts=1)
    message_id = api.send("poison", queue="jobs")
    lease = deliver(api, "jobs")["lease"]
    api.post(f"/queues/jobs/message/{message_id}/status/ready", {"lease": lease})

    response = api.done(message_id, lease, queue="jobs")

    assert response.status_code == 409
    assert response.json()["error"] == "message_dead"
    assert Message.objects.filter(id=message_id).exists()


def test_MQ_MAX_ATTEMPTS_is_the_default_limit(api, clock, settings):
    settings.MQ_MAX_ATTEMPTS = 3
    api.send("poison")

    attempts = [let_lease_run_out(api, clock)["attempts"] for _ in range(3)]

    assert attempts == [1, 2, 3]
    assert api.next().status_code == 204
    assert counts(api, "default")["dead"] == 1


def test_deliveries_are_unlimited_when_nothing_sets_a_limit(api, clock, settings):
    settings.MQ_MAX_ATTEMPTS = None
    api.send("again and again")

    attempts = [let_lease_run_out(api, clock)["attempts"] for _ in range(25)]

    assert attempts == list(range(1, 26))
    assert counts(api, "default")["dead"] == 0


def test_a_queues_max_attempts_overrides_MQ_MAX_ATTEMPTS(api, clock, settings):
    settings.MQ_MAX_ATTEMPTS = 1
    configure(api, "jobs", max_attempts=3)
    api.send("work", queue="jobs")

    attempts = [let_lease_run_out(api, clock, "jobs")["attempts"] for _ in range(3)]

    assert attempts == [1, 2, 3]
    assert api.next(queue="jobs").status_code == 204


def test_a_queues_limit_applies_to_that_queue_only(api, clock):
    configure(api, "jobs", max_attempts=1)
    api.send("other queue")
    let_lease_run_out(api, clock)

    assert deliver(api)["attempts"] == 2


def test_raising_max_attempts_does_not_bring_a_dead_message_back(api, clock):
    make_dead(api, clock)

    configure(api, "jobs", max_attempts=5)

    assert api.next(queue="jobs").status_code == 204
    assert counts(api, "jobs")["dead"] == 1


def test_requeue_expired_stores_a_spent_message_as_dead(api, clock, capsys):
    message_id = make_dead(api, clock)

    call_command("requeue_expired")

    message = Message.objects.get(id=message_id)
    assert message.dead
    assert message.lease is None
    assert "1 message(s) dead" in capsys.readouterr().out
    assert counts(api, "jobs")["dead"] == 1
    assert api.next(queue="jobs").status_code == 204


def test_requeue_expired_leaves_messages_with_deliveries_left_alive(api, clock, capsys):
    configure(api, "jobs", max_attempts=2)
    message_id = api.send("work", queue="jobs")
    let_lease_run_out(api, clock, "jobs")

    call_command("requeue_expired")

    assert not Message.objects.get(id=message_id).dead
    assert "1 expired lease(s) requeued, 0 message(s) dead" in capsys.readouterr().out
    assert deliver(api, "jobs")["attempts"] == 2


# Redrive


def test_redrive_answers_with_the_number_of_messages_redriven(api, clock):
    make_dead(api, clock)

    response = redrive(api, "jobs")

    assert response.status_code == 200
    assert response.json() == {"queue": "jobs", "redriven": 1}


def test_a_redriven_message_is_delivered_again_with_attempts_reset(api, clock):
    message_id = make_dead(api, clock)
    redrive(api, "jobs")

    delivered = deliver(api, "jobs")

    assert delivered["id"] == message_id
    assert delivered["payload"] == "poison"
    assert delivered["attempts"] == 1


def test_a_redriven_message_is_stored_ready_with_no_attempts(api, clock):
    message_id = make_dead(api, clock)
    call_command("requeue_expired")

    redrive(api, "jobs")

    message = Message.objects.get(id=message_id)
    assert (message.dead, message.lease, message.attempts) == (False, None, 0)
    assert message.state() == "ready"
    assert counts(api, "jobs") == {"ready": 1, "delayed": 0, "leased": 0, "dead": 0}


def test_a_redriven_message_takes_its_place_by_id(api, clock):
    dead = make_dead(api, clock)
    newer = api.send("newer", queue="jobs")
    redrive(api, "jobs")

    assert [deliver(api, "jobs")["id"] for _ in range(2)] == [dead, newer]


def test_redrive_leaves_ready_and_leased_messages_alone(api, clock):
    configure(api, "jobs", max_attempts=1)
    dead = api.send("poison", queue="jobs")
    leased = api.send("leased", queue="jobs")
    ready = api.send("ready", queue="jobs")
    let_lease_run_out(api, clock, "jobs")
    lease = deliver(api, "jobs", timeout=60)["lease"]

    response = redrive(api, "jobs")

    assert response.json()["redriven"] == 1
    message = Message.objects.get(id=leased)
    assert (message.lease, message.attempts) == (lease, 1)
    assert Message.objects.get(id=ready).attempts == 0
    assert deliver(api, "jobs")["id"] == dead


def test_redrive_touches_only_its_own_queue(api, clock):
    make_dead(api, clock, queue="jobs")
    other = make_dead(api, clock, queue="other")

    response = redrive(api, "jobs")

    assert response.json()["redriven"] == 1
    assert api.next(queue="other").status_code == 204
    assert Message.objects.get(id=other).attempts == 1


def test_redriving_a_queue_with_nothing_dead_redrives_nothing(api):
    api.send("fine", queue="jobs")

    response = redrive(api, "jobs")

    assert response.json() == {"queue": "jobs", "redriven": 0}


def test_redriving_a_bad_queue_name_is_400(api):
    response = redrive(api, "bad name!")

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_queue_name"


def test_the_redrive_command_redrives_a_queue(api, clock, capsys):
    message_id = make_dead(api, clock)

    call_command("redrive", "jobs")

    assert "1 dead message(s) of jobs redriven" in capsys.readouterr().out
    assert deliver(api, "jobs")["id"] == message_id


def test_the_redrive_command_refuses_an_unknown_queue(api):
    with pytest.raises(CommandError, match="no queue named"):
        call_command("redrive", "nope")


def test_the_admin_redrive_action_redrives_a_queues_dead_messages(api, clock, admin_client):
    message_id = make_dead(api, clock)

    response = admin_client.post(
        "/admin/messages_app/queue/",
        {"action": "redrive_queues", "_selected_action": ["jobs"]},
        follow=True,
    )

    assert response.status_code == 200
    assert "1 dead message(s) redriven" in response.content.decode()
    assert deliver(api, "jobs")["id"] == message_id


def test_a_message_dead_by_its_last_lease_running_out_is_not_the_queues_oldest(api, clock):
    configure(api, "jobs", max_attempts=1)
    api.send("poison", queue="jobs")
    clock.shift(60)
    api.send("fine", queue="jobs")
    sent_at = timezone.now()
    let_lease_run_out(api, clock, "jobs")

    before_housekeeping = oldest_created_at(api, "jobs")
    call_command("requeue_expired")

    assert before_housekeeping == sent_at
    assert oldest_created_at(api, "jobs") == sent_at
