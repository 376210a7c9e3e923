"""POST /message/<id>/status/done: the holder of the current delivery finishes a
message and it is gone; anyone else gets 404 or 409 and nothing changes."""

import pytest
from contract import assert_error

from messages_app.models import Message

pytestmark = pytest.mark.django_db


def test_done_answers_processed_and_the_message_is_gone(api):
    message_id = api.send("x")
    api.next()

    response = api.done(message_id)

    assert response.status_code == 200
    assert response.json() == {"id": message_id, "status": "processed"}
    assert not Message.objects.filter(id=message_id).exists()


def test_done_with_the_current_lease_succeeds(api):
    message_id = api.send("x")
    lease = api.next().json()["lease"]

    response = api.done(message_id, lease=lease)

    assert response.status_code == 200
    assert not Message.objects.filter(id=message_id).exists()


def test_the_lease_may_be_given_in_the_query_string(api):
    message_id = api.send("x")
    lease = api.next().json()["lease"]

    response = api.post(f"/message/{message_id}/status/done?lease={lease}")

    assert response.status_code == 200
    assert not Message.objects.filter(id=message_id).exists()


def test_done_leaves_the_other_messages_alone(api):
    first, second = api.send(1), api.send(2)
    api.next()

    api.done(first)

    assert list(Message.objects.values_list("id", flat=True)) == [second]


def test_done_with_a_stale_lease_is_409_and_changes_nothing(api, clock, stored):
    message_id = api.send("x")
    stale = api.next().json()["lease"]
    clock.shift(11)
    current = api.next().json()["lease"]
    before = stored()

    response = api.done(message_id, lease=stale)

    assert_error(response, 409, "stale_lease")
    assert stored() == before
    assert Message.objects.get(id=message_id).lease == current


def test_the_new_holder_can_still_finish_after_a_stale_done(api, clock):
    message_id = api.send("x")
    stale = api.next().json()["lease"]
    clock.shift(11)
    current = api.next().json()["lease"]
    api.done(message_id, lease=stale)

    assert api.done(message_id, lease=current).status_code == 200
    assert not Message.objects.filter(id=message_id).exists()


def test_done_with_an_unknown_lease_is_409(api, stored):
    message_id = api.send("x")
    api.next()
    before = stored()

    response = api.done(message_id, lease="0" * 32)

    assert_error(response, 409, "stale_lease")
    assert stored() == before


def test_done_without_a_lease_on_a_delivered_message_succeeds(api, clock):
    message_id = api.send("x")
    api.next()
    clock.shift(9)

    assert api.done(message_id).status_code == 200
    assert not Message.objects.filter(id=message_id).exists()


def test_done_without_a_lease_once_the_lease_expired_is_409(api, clock, stored):
    message_id = api.send("x")
    api.next()
    clock.shift(10)
    before = stored()

    response = api.done(message_id)

    assert_error(response, 409, "lease_expired")
    assert stored() == before


def test_done_with_its_lease_after_expiry_succeeds_while_nobody_else_took_it(api, clock):
    message_id = api.send("x")
    lease = api.next().json()["lease"]
    clock.shift(11)

    assert api.done(message_id, lease=lease).status_code == 200
    assert not Message.objects.filter(id=message_id).exists()


def test_done_on_a_message_never_delivered_is_409(api, stored):
    message_id = api.send("x")
    before = stored()

    response = api.done(message_id)

    assert_error(response, 409, "not_leased")
    assert stored() == before
    assert Message.objects.get(id=message_id).state() == "ready"


def test_done_with_a_lease_on_a_message_never_delivered_is_409(api, stored):
    message_id = api.send("x")
    before = stored()

    response = api.done(message_id, lease="0" * 32)

    assert_error(response, 409, "not_leased")
    assert stored() == before


def test_done_on_a_dead_message_is_409(api, stored):
    message_id = api.send("x")
    api.next()
    Message.objects.filter(id=message_id).update(dead=True)
    before = stored()

    response = api.done(message_id)

    assert_error(response, 409, "message_dead")
    assert stored() == before


def test_done_on_an_unknown_id_is_404(api, stored):
    api.send("x")
    api.next()
    before = stored()

    response = api.done(999999)

    assert_error(response, 404, "not_found")
    assert stored() == before


def test_done_twice_is_404_the_second_time(api):
    message_id = api.send("x")
    api.next()
    api.done(message_id)

    assert_error(api.done(message_id), 404, "not_found")


def test_done_on_a_message_of_another_queue_is_404(api, stored):
    message_id = api.send("x", queue="jobs")
    api.next(queue="jobs")
    before = stored()

    response = api.done(message_id)

    assert_error(response, 404, "not_found")
    assert stored() == before


@pytest.mark.parametrize("raw_id", ["abc", "-1", "1.5", "1e3", "0x10", "١٢", "9" * 19])
def test_done_on_an_id_that_is_not_a_positive_integer_is_400(api, stored, raw_id):
    api.send("x")
    api.next()
    before = stored()

    response = api.post(f"/message/{raw_id}/status/done")

    assert_error(response, 400, "invalid_id")
    assert stored() == before


@pytest.mark.parametrize("body", [{"lease": 5}, {"lease": ""}, {"lease": ["a"]}, {"lease": True}])
def test_done_with_a_lease_that_is_not_a_token_string_is_400(api, stored, body):
    message_id = api.send("x")
    api.next()
    before = stored()

    response = api.post(f"/message/{message_id}/status/done", body)

    assert_error(response, 400, "invalid_lease")
    assert stored() == before


def test_done_with_a_lease_holding_a_nul_character_is_refused_not_a_server_error(api):
    message_id = api.send("x")
    api.next()

    response = api.done(message_id, lease="\x00")

    # PostgreSQL refuses a NUL in text; inside the test's transaction that error
    # would spoil any query after it, so what is stored is not checked here.
    assert response.status_code in (400, 409)
    assert response["Content-Type"] == "application/json"
