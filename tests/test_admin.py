"""The Django admin as the operators' console: messages and queues listed with
filters and search, state changed only through actions, rows never edited by hand."""

import re
from datetime import timedelta

import pytest
import requests
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from messages_app.models import Message, Queue

pytestmark = pytest.mark.django_db

MESSAGES = "/admin/messages_app/message/"
QUEUES = "/admin/messages_app/queue/"


@pytest.fixture
def one_of_each_state(api, clock) -> dict[str, int]:
    """A message in every state, all in the queue ``jobs``; their ids by state."""
    ids = {state: api.send(state, queue="jobs") for state in ("leased", "ready", "delayed", "dead")}
    api.next(queue="jobs")
    Message.objects.filter(id=ids["delayed"]).update(visible_at=timezone.now() + timedelta(hours=1))
    Message.objects.filter(id=ids["dead"]).update(dead=True)
    return ids


def listed_ids(response) -> list[int]:
    assert response.status_code == 200
    return sorted(message.id for message in response.context["cl"].result_list)


def act(admin, url: str, action: str, ids, **confirmed):
    form = {"action": action, "_selected_action": [str(i) for i in ids], **confirmed}
    return admin.post(url, form, follow=True)


def confirmed(admin, url: str, action: str, ids):
    """An action that asks first: asked, then confirmed as its page's form does."""
    return act(admin, url, action, ids, post="yes")


def test_the_admin_needs_a_logged_in_staff_user(client):
    response = client.get(MESSAGES)

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_the_message_list_shows_every_message_with_its_state(admin, one_of_each_state):
    response = admin.get(MESSAGES)

    assert listed_ids(response) == sorted(one_of_each_state.values())
    for state in one_of_each_state:
        assert f'<td class="field-state">{state}</td>' in response.content.decode()


@pytest.mark.parametrize("state", ["ready", "leased", "delayed", "dead"])
def test_the_state_filter_lists_only_messages_in_that_state(admin, one_of_each_state, state):
    response = admin.get(MESSAGES, {"state": state})

    assert listed_ids(response) == [one_of_each_state[state]]


def test_the_queue_filter_lists_only_that_queues_messages(admin, api):
    api.send("e", queue="emails")
    jobs = api.send("j", queue="jobs")

    response = admin.get(MESSAGES, {"queue__name__exact": "jobs"})

    assert listed_ids(response) == [jobs]


def test_search_finds_messages_by_payload_text(admin, api):
    api.send("the needle")
    api.send("hay")
    needle = Message.objects.get(payload__contains="needle").id

    assert listed_ids(admin.get(MESSAGES, {"q": "needle"})) == [needle]


def test_search_finds_a_message_by_its_id(admin, api):
    ids = [api.send("no digits here") for _ in range(3)]

    assert listed_ids(admin.get(MESSAGES, {"q": str(ids[1])})) == [ids[1]]


@pytest.mark.parametrize("term", ["no such text", "<script>", "%", "_", "'; --", "é"])
def test_search_for_text_in_no_payload_lists_nothing(admin, api, term):
    api.send("x")

    assert listed_ids(admin.get(MESSAGES, {"q": term})) == []


def test_search_for_a_nul_character_answers_a_page(admin, api):
    api.send("x")

    assert admin.get(MESSAGES, {"q": "\x00"}).status_code == 200


def test_the_message_list_is_a_fixed_number_of_queries(admin, api):
    def queries_for_the_list() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert admin.get(MESSAGES).status_code == 200
        return len(queries)

    api.send("first")
    few = queries_for_the_list()
    for n in range(30):
        api.send(n, queue=f"q{n % 5}")

    assert queries_for_the_list() == few


def test_requeue_makes_a_leased_message_deliverable_now(admin, api, one_of_each_state):
    leased = one_of_each_state["leased"]

    response = act(admin, MESSAGES, "requeue_messages", [leased])

    assert "1 message(s) requeued." in response.content.decode()
    message = Message.objects.get(id=leased)
    assert (message.lease, message.visible_at, message.state()) == (None, timezone.now(), "ready")
    assert api.next(queue="jobs").json()["id"] == leased


def test_requeue_makes_a_delayed_message_deliverable_now(admin, one_of_each_state):
    delayed = one_of_each_state["delayed"]

    act(admin, MESSAGES, "requeue_messages", [delayed])

    assert Message.objects.get(id=delayed).state() == "ready"


def test_requeue_leaves_dead_messages_dead(admin, one_of_each_state, stored):
    before = stored()

    act(admin, MESSAGES, "requeue_messages", [one_of_each_state["dead"]])

    assert stored() == before


def test_requeue_changes_only_the_selected_messages(admin, api, clock):
    first, second = api.send(1), api.send(2)
    api.next()
    api.next()

    act(admin, MESSAGES, "requeue_messages", [first])

    assert Message.objects.get(id=second).state() == "leased"


def test_redrive_makes_a_dead_message_ready_with_its_attempts_reset(admin, api, clock):
    message_id = api.send("x")
    api.next()
    Message.objects.filter(id=message_id).update(dead=True)

    response = act(admin, MESSAGES, "redrive_messages", [message_id])

    assert "1 dead message(s) redriven." in response.content.decode()
    message = Message.objects.get(id=message_id)
    assert (message.state(), message.attempts, message.lease) == ("ready", 0, None)
    assert api.next().json()["id"] == message_id


def test_redrive_leaves_live_messages_alone(admin, one_of_each_state, stored):
    live = [one_of_each_state[state] for state in ("ready", "leased", "delayed")]
    before = stored()

    act(admin, MESSAGES, "redrive_messages", live)

    assert stored() == before


def test_the_state_filter_counts_a_message_whose_last_lease_ran_out_as_dead(
    admin, api, clock, settings
):
    settings.MQ_MAX_ATTEMPTS = 1
    message_id = api.send("poison")
    api.next()
    clock.shift(11)

    assert listed_ids(admin.get(MESSAGES, {"state": "dead"})) == [message_id]
    assert listed_ids(admin.get(MESSAGES, {"state": "ready"})) == []


def test_requeue_of_a_message_with_no_attempts_left_keeps_it_dead(admin, api, clock, settings):
    settings.MQ_MAX_ATTEMPTS = 1
    message_id = api.send("poison")
    api.next()

    act(admin, MESSAGES, "requeue_messages", [message_id])

    assert Message.objects.get(id=message_id).state() == "dead"
    assert listed_ids(admin.get(MESSAGES, {"state": "dead"})) == [message_id]


def test_purge_deletes_the_selected_messages_for_good(admin, one_of_each_state):
    purged = [one_of_each_state["ready"], one_of_each_state["dead"]]

    response = confirmed(admin, MESSAGES, "purge_messages", purged)

    assert "2 message(s) purged." in response.content.decode()
    assert sorted(Message.objects.values_list("id", flat=True)) == sorted(
        [one_of_each_state["leased"], one_of_each_state["delayed"]]
    )


def test_a_message_can_be_viewed_but_not_changed(admin, api, stored):
    message_id = api.send("original")
    url = f"{MESSAGES}{message_id}/change/"
    before = stored()

    view = admin.get(url)
    change = admin.post(url, {"payload": '"edited"', "attempts": "5", "dead": "on"})

    assert view.status_code == 200
    assert "original" in view.content.decode()
    assert change.status_code == 403
    assert stored() == before


def readonly_field(page: str, name: str) -> str:
    """The text of a read-only field on an admin change page."""
    found = re.search(rf'field-{name}\b.*?<div class="readonly">(.*?)</div>', page, re.DOTALL)
    assert found, f"no read-only field {name}"
    return found.group(1).strip()


def test_a_message_page_shows_its_computed_state_and_effective_settings(
    admin, api, clock, settings
):
    settings.MQ_MAX_ATTEMPTS = 1
    message_id = api.send("poison")
    api.next()
    clock.shift(11)  # dead by the clock; its stored flag is not set yet

    page = admin.get(f"{MESSAGES}{message_id}/change/").content.decode()

    assert readonly_field(page, "state") == "dead"
    assert readonly_field(page, "max_attempts") == "1"
    assert readonly_field(page, "timeout") == "10"
    assert "field-dead" not in page


def test_the_message_list_shows_the_effective_max_attempts(admin, api, settings):
    api.client.put("/queues/jobs", '{"max_attempts": 3}', content_type="application/json")
    api.send("x", queue="jobs")
    api.send("y")

    page = admin.get(MESSAGES).content.decode()

    assert re.findall(r'<td class="field-max_attempts">([^<]*)</td>', page) == ["3", "unlimited"]


def test_messages_cannot_be_added_or_deleted_by_hand(admin, api, stored):
    message_id = api.send("x")
    before = stored()

    assert admin.get(f"{MESSAGES}add/").status_code == 403
    assert admin.post(f"{MESSAGES}{message_id}/delete/", {"post": "yes"}).status_code == 403
    assert stored() == before


def queue_counts(queue) -> tuple[int, int, int, int]:
    return (queue.ready, queue.leased, queue.delayed, queue.dead)


def test_the_queue_list_shows_each_queue_with_its_counts_by_state(admin, one_of_each_state, api):
    api.send("x", queue="emails")

    response = admin.get(QUEUES)

    assert response.status_code == 200
    counts = {q.name: queue_counts(q) for q in response.context["cl"].result_list}
    assert counts == {"emails": (1, 0, 0, 0), "jobs": (1, 1, 1, 1)}


def test_purging_a_queue_deletes_its_messages_only(admin, api):
    api.send("x", queue="jobs")
    keep = api.send("y", queue="emails")

    response = confirmed(admin, QUEUES, "purge_queues", ["jobs"])

    assert "1 message(s) purged." in response.content.decode()
    assert list(Message.objects.values_list("id", flat=True)) == [keep]
    assert Queue.objects.filter(name="jobs").exists()


def test_the_queue_list_counts_a_message_whose_last_lease_ran_out_as_dead(
    admin, api, clock, settings
):
    settings.MQ_MAX_ATTEMPTS = 1
    api.send("poison", queue="jobs")
    api.next(queue="jobs")
    clock.shift(11)

    (jobs,) = admin.get(QUEUES).context["cl"].result_list

    assert queue_counts(jobs) == (0, 0, 0, 1)


def test_redriving_a_queue_makes_its_dead_messages_ready(admin, api, one_of_each_state):
    other = api.send("x", queue="emails")
    Message.objects.filter(id=other).update(dead=True)

    response = act(admin, QUEUES, "redrive_queues", ["jobs"])

    assert "1 dead message(s) redriven." in response.content.decode()
    assert Message.objects.get(id=one_of_each_state["dead"]).state() == "ready"
    assert Message.objects.get(id=other).dead


def test_an_operator_logs_in_through_a_real_server(server_factory, django_user_model):
    """The production server gives the pages their middleware (sessions, CSRF,
    logins) while the API goes without it (mq_project/handlers.py)."""
    django_user_model.objects.create_superuser("operator", password="secret-words")
    server = server_factory()
    session = requests.Session()
    form = session.get(server.url + "/admin/login/")
    assert form.status_code == 200
    assert form.headers["X-Frame-Options"] == "DENY"
    logged_in = session.post(
        server.url + "/admin/login/?next=/info",
        data={
            "username": "operator",
            "password": "secret-words",
            "csrfmiddlewaretoken": session.cookies["csrftoken"],
        },
        headers={"Referer": server.url + "/admin/login/"},
    )
    assert logged_in.status_code == 200
    assert logged_in.url == server.url + "/info"
    assert "message-queue: overview" in logged_in.text
    assert "Site administration" in session.get(server.url + "/admin/").text
    sent = session.post(server.url + "/message/new", json={"payload": 1})
    assert sent.status_code == 201
    assert "Set-Cookie" not in sent.headers


def going(response) -> str:
    """What the confirmation page says will go."""
    assert response.status_code == 200
    return re.search(r'<p class="going"><strong>([^<]*)</strong>', response.content.decode())[1]


def test_purging_messages_asks_first_saying_how_many_will_go(admin, one_of_each_state, stored):
    before = stored()

    response = act(admin, MESSAGES, "purge_messages", one_of_each_state.values())

    assert going(response) == "4 messages will be deleted for good."
    assert 'name="post" value="yes"' in response.content.decode()
    assert stored() == before


def test_purging_a_queue_asks_first_saying_how_many_will_go(admin, one_of_each_state, stored):
    before = stored()

    response = act(admin, QUEUES, "purge_queues", ["jobs"])

    assert going(response) == "4 messages will be deleted for good."
    assert "<li>jobs: 4 message(s)</li>" in response.content.decode()
    assert stored() == before


def test_deleting_a_queue_with_messages_asks_first_then_deletes_it_through_the_domain(
    admin, api, stored
):
    for n in range(3):
        api.send(n, queue="jobs")
    keep = api.send("y", queue="emails")
    before = stored()

    asked = act(admin, QUEUES, "delete_queues", ["jobs"])
    assert going(asked) == "3 messages will be deleted for good."
    assert stored() == before

    response = confirmed(admin, QUEUES, "delete_queues", ["jobs"])

    assert "1 queue(s) deleted with 3 message(s)." in response.content.decode()
    assert list(Queue.objects.values_list("name", flat=True)) == ["emails"]
    assert list(Message.objects.values_list("id", flat=True)) == [keep]


def test_queues_and_messages_link_to_their_console_page(admin, api):
    message_id = api.send("x", queue="jobs")

    queues = admin.get(QUEUES).content.decode()
    messages = admin.get(MESSAGES).content.decode()
    queue_page = admin.get(f"{QUEUES}jobs/change/").content.decode()
    message_page = admin.get(f"{MESSAGES}{message_id}/change/").content.decode()

    assert '<a href="/info/jobs">console</a>' in queues
    assert '<a href="/info/jobs">jobs</a>' in messages
    for page in (queue_page, message_page):
        assert re.search(r'<a href="/info/jobs" class="viewsitelink">', page), page
