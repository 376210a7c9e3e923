"""``manage.py requeue_expired``: housekeeping for cron that clears leases which
have run out and prints one line; delivery is correct whether or not it runs."""

from io import StringIO

import pytest
from django.core.management import call_command

from messages_app.models import Message

pytestmark = pytest.mark.django_db


def requeue_expired() -> str:
    out = StringIO()
    call_command("requeue_expired", stdout=out)
    return out.getvalue()


def test_it_clears_a_lease_that_ran_out(api, clock):
    message_id = api.send("x")
    api.next()
    clock.shift(11)

    requeue_expired()

    message = Message.objects.get(id=message_id)
    assert (message.lease, message.state(), message.attempts) == (None, "ready", 1)


def test_it_prints_one_line_with_how_many_leases_it_cleared(api, clock):
    for n in range(2):
        api.send(n)
        api.next()
    clock.shift(11)

    output = requeue_expired()

    assert output.count("\n") == 1
    assert output.startswith("2 expired lease")


def test_with_nothing_expired_it_prints_zero(api):
    api.send("x")

    assert requeue_expired().startswith("0 expired lease")


def test_it_leaves_live_leases_alone(api, clock, stored):
    api.send("x")
    api.next()
    clock.shift(9)
    before = stored()

    requeue_expired()

    assert stored() == before


def test_it_leaves_ready_and_never_delivered_messages_alone(api, stored):
    api.send("x")
    before = stored()

    requeue_expired()

    assert stored() == before


def test_a_requeued_message_is_delivered_next_at_its_place(api, clock):
    older = api.send("older")
    api.next()
    newer = api.send("newer")
    clock.shift(11)

    requeue_expired()

    assert Message.objects.get(id=older).lease is None  # stored as ready before any claim
    first = api.next().json()
    assert (first["id"], first["attempts"]) == (older, 2)
    assert api.next().json()["id"] == newer


def test_the_old_lease_cannot_finish_a_requeued_message(api, clock, stored):
    message_id = api.send("x")
    lease = api.next().json()["lease"]
    clock.shift(11)
    requeue_expired()
    before = stored()

    response = api.done(message_id, lease=lease)

    assert response.status_code == 409
    assert stored() == before


def test_delivery_of_an_expired_message_does_not_need_it(api, clock):
    message_id = api.send("x")
    api.next()
    clock.shift(11)

    assert api.next().json()["id"] == message_id


def test_it_dead_letters_a_message_whose_last_allowed_lease_ran_out(api, clock, settings):
    settings.MQ_MAX_ATTEMPTS = 1
    message_id = api.send("poison")
    api.next()
    clock.shift(11)

    requeue_expired()

    assert Message.objects.get(id=message_id).state() == "dead"
