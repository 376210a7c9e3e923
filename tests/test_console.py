"""/info/<name>: one queue's page (counts, settings, leases in flight, dead
letters, a non-destructive paged browse) and the staff's actions on it, each
through the domain, with CSRF."""

import json
import re
from datetime import timedelta

import pytest
from conftest import RoutedClientHandler
from contract import assert_error
from django.utils import timezone
from test_info import Page, store

from messages_app import domain, runtime
from messages_app.models import Message, Queue

pytestmark = pytest.mark.django_db


def queue_page(client, queue: str = "jobs", query: str = "") -> Page:
    response = client.get(f"/info/{queue}{query}")
    assert response.status_code == 200, response.content
    return Page(response.content.decode())


def count(parsed: Page, state: str) -> int:
    return int(re.search(rf'id="count-{state}">(\d+)<', parsed.html).group(1))


def table(parsed: Page, first_header: str, second_header: str) -> list[dict]:
    """The page's table whose first two columns have these headers."""
    found = [t for t in parsed.tables if t and list(t[0])[:2] == [first_header, second_header]]
    return found[0] if found else []


def text_of(response) -> str:
    """A page's text as a reader sees it: no tags, spaces collapsed."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", response.content.decode()))


def browsed_ids(parsed: Page) -> list[int]:
    return [int(row["id"]) for row in table(parsed, "id", "state")]


def dead_message(api, queue: str = "jobs", payload="gone") -> int:
    message_id = api.send(payload, queue=queue)
    Message.objects.filter(id=message_id).update(dead=True, attempts=3)
    return message_id


# The page.


def test_the_queue_page_shows_its_counts_by_state(api, clock):
    ids = [api.send(n, queue="jobs") for n in range(4)]
    api.next(queue="jobs")
    Message.objects.filter(id=ids[1]).update(dead=True)
    Message.objects.filter(id=ids[2]).update(visible_at=timezone.now() + timedelta(hours=1))

    parsed = queue_page(api.client)

    assert [count(parsed, s) for s in ("ready", "leased", "delayed", "dead", "total")] == [
        1,
        1,
        1,
        1,
        4,
    ]


def test_a_queue_never_used_is_404_json(client):
    assert_error(client.get("/info/never-used"), 404, "not_found")


def test_a_name_no_queue_can_have_is_404_json(client):
    assert_error(client.get("/info/%3Cscript%3E"), 404, "not_found")


def test_the_queue_page_shows_the_effective_settings_and_where_they_come_from(api, settings):
    settings.PENDING_TIMEOUT = 10000
    settings.MQ_MAX_ATTEMPTS = None
    api.client.put("/queues/jobs", '{"max_attempts": 4}', content_type="application/json")

    rows = table(queue_page(api.client), "setting", "in effect")

    assert [(r["setting"], r["in effect"], r["from"]) for r in rows] == [
        ("lease timeout", "10 s", "the default, PENDING_TIMEOUT"),
        ("max attempts", "4", "this queue"),
    ]


def test_the_queue_page_lists_leases_in_flight_with_attempts_and_time_left(api, clock):
    first = api.send("a", queue="jobs")
    second = api.send("b", queue="jobs")
    api.next(queue="jobs", timeout=60)
    clock.shift(timedelta(seconds=10))
    api.next(queue="jobs", timeout=30)

    leases = table(queue_page(api.client), "message", "attempts")

    # The lease ending soonest first.
    assert leases == [
        {"message": str(second), "attempts": "1", "time left": "30 s"},
        {"message": str(first), "attempts": "1", "time left": "50 s"},
    ]


def test_the_queue_page_lists_recent_dead_letters_newest_first(api):
    older = dead_message(api, payload={"n": 1})
    newer = dead_message(api, payload={"n": 2})
    api.send("alive", queue="jobs")

    dead = table(queue_page(api.client), "id", "attempts")

    assert [(r["id"], r["attempts"]) for r in dead] == [(str(newer), "3"), (str(older), "3")]
    assert dead[0]["payload"] == '{\n  "n": 2\n}'


def test_a_message_past_its_last_delivery_is_listed_as_dead(api, clock):
    api.client.put("/queues/jobs", '{"max_attempts": 1}', content_type="application/json")
    message_id = api.send("x", queue="jobs")
    api.next(queue="jobs", timeout=1)
    clock.shift(timedelta(seconds=2))

    parsed = queue_page(api.client)

    assert [r["id"] for r in table(parsed, "id", "attempts")] == [str(message_id)]
    assert count(parsed, "dead") == 1


def test_the_browse_shows_pretty_printed_payloads_with_numbers_as_sent(api):
    api.post("/queues/jobs/message/new", {"payload": {"price": 1.10, "tags": ["a"]}})
    api.client.post(
        "/queues/jobs/message/new",
        '{"payload": {"big": 123456789012345678901234567890, "f": 1.10}}',
        content_type="application/json",
    )

    rows = table(queue_page(api.client), "id", "state")

    assert rows[0]["payload"] == '{\n  "price": 1.1,\n  "tags": [\n    "a"\n  ]\n}'
    assert rows[1]["payload"] == '{\n  "big": 123456789012345678901234567890,\n  "f": 1.10\n}'


def test_the_browse_escapes_payloads(api):
    api.send("<script>alert(1)</script>", queue="jobs")

    html = queue_page(api.client).html

    assert "<script>alert(1)</script>" not in html
    assert "&quot;&lt;script&gt;alert(1)&lt;/script&gt;&quot;" in html


def test_the_browse_shows_each_messages_state_and_attempts(api, clock):
    leased = api.send("a", queue="jobs")
    api.next(queue="jobs", timeout=30)
    ready = api.send("b", queue="jobs")

    rows = table(queue_page(api.client), "id", "state")

    assert [(r["id"], r["state"], r["attempts"], r["visible in"]) for r in rows] == [
        (str(leased), "leased", "1", "30 s"),
        (str(ready), "ready", "0", "—"),
    ]


def test_a_long_payload_is_shown_cut(api):
    api.send("x" * 10000, queue="jobs")

    [row] = table(queue_page(api.client), "id", "state")

    assert len(row["payload"]) < 4100
    assert row["payload"].endswith("…")


def test_browsing_changes_nothing_stored(api, stored):
    store(30, "jobs")
    api.next(queue="jobs")
    before = stored()

    queue_page(api.client)
    queue_page(api.client, query=f"?after={Message.objects.order_by('id')[10].id}")

    assert stored() == before


def test_the_browse_shows_20_messages_a_page_with_a_next_page_link(api):
    ids = store(45, "jobs")

    first = queue_page(api.client)

    assert browsed_ids(first) == ids[:20]
    assert first.links["next page"] == f"?after={ids[19]}#browse"


def test_the_next_page_link_leads_to_the_following_messages(api):
    ids = store(45, "jobs")
    store(5, "other")

    second = queue_page(api.client, query=f"?after={ids[19]}")
    last = queue_page(api.client, query=f"?after={ids[39]}")

    assert browsed_ids(second) == ids[20:40]
    assert browsed_ids(last) == ids[40:]
    assert "next page" not in last.links
    assert "first page" in last.links


@pytest.mark.parametrize("after", ["abc", "-5", "%00", "99999999999999999999999"])
def test_an_unreadable_or_far_after_shows_the_first_or_an_empty_page(api, after):
    ids = store(3, "jobs")

    shown = browsed_ids(queue_page(api.client, query=f"?after={after}"))

    assert shown == ([] if after.startswith("9") else ids)


def test_the_page_marks_its_counts_for_the_live_refresh(api):
    api.send("x", queue="jobs")

    html = queue_page(api.client).html

    assert '<div id="counts" data-live>' in html


@pytest.mark.parametrize("stored_messages", [0, 300])
def test_the_queue_page_takes_a_fixed_number_of_queries(
    api, django_assert_max_num_queries, stored_messages
):
    store(stored_messages, "jobs")
    store(stored_messages, "other")

    # counts (the queue, 3 counts, first message, its time), the page (2: live,
    # dead), leases, dead letters, the other queues' names, the last hour (2)
    with django_assert_max_num_queries(13):
        queue_page(api.client)


# The charts, drawn from domain.queue_history.


def chart_values(parsed: Page, chart: str, series: str) -> list:
    """The values a chart's line is drawn from (its data-values), None where none."""
    pattern = rf'<polyline class="series" data-series="{series}" data-values="([^"]*)"'
    section = parsed.html[parsed.html.index(f'id="chart-{chart}"') :]
    values = re.search(pattern, section).group(1).split(",")
    return [None if v == "" else float(v) for v in values]


def test_the_flow_chart_has_a_point_per_minute_of_the_last_hour(api, clock):
    clock.shift(-120)
    for n in range(3):
        api.send(n, queue="jobs")
    runtime.current().counters.flush()  # a count lands in the minute it is stored
    clock.shift(120)
    delivery = api.next(queue="jobs").json()
    api.done(delivery["id"], delivery["lease"], queue="jobs")

    parsed = queue_page(api.client)

    history = domain.queue_history("jobs", "1h")
    assert chart_values(parsed, "flow", "sent") == [b.sent for b in history.buckets]
    assert chart_values(parsed, "flow", "sent")[-3:] == [3, 0, 0]
    assert chart_values(parsed, "flow", "acked")[-3:] == [0, 0, 1]
    assert "sent <b>3</b>" in parsed.html


@pytest.mark.parametrize("window, points", [("24h", 24 * 60), ("30d", 30 * 24), ("nope", 60)])
def test_the_charts_cover_the_window_asked_for(api, window, points):
    api.send("x", queue="jobs")

    parsed = queue_page(api.client, query=f"?window={window}")

    assert len(chart_values(parsed, "flow", "sent")) == points
    assert chart_values(parsed, "flow", "sent")[-1] == 1


def test_the_depth_chart_draws_the_sampled_depth_by_state(api, clock):
    for n in range(4):
        api.send(n, queue="jobs")
    api.next(queue="jobs")
    runtime.current().counters.housekeeping()

    parsed = queue_page(api.client)

    assert chart_values(parsed, "depth", "ready")[-1] == 3
    assert chart_values(parsed, "depth", "leased")[-1] == 1
    assert chart_values(parsed, "depth", "ready")[:-1] == [None] * 59


def processed_in(api, clock, seconds: float) -> None:
    api.send("work", queue="jobs")
    delivery = api.next(queue="jobs").json()
    clock.shift(seconds)
    api.done(delivery["id"], delivery["lease"], queue="jobs")


def test_a_p99_near_the_lease_timeout_is_warned_about(api, clock):
    api.client.put("/queues/jobs", '{"timeout": 1}', content_type="application/json")
    processed_in(api, clock, 0.9)

    parsed = queue_page(api.client)

    assert 'id="p99-warning"' in parsed.html
    assert chart_values(parsed, "processing", "processing_p99")[-1] >= 0.8


def test_a_p99_well_within_the_lease_timeout_is_not_warned_about(api, clock):
    api.client.put("/queues/jobs", '{"timeout": 10}', content_type="application/json")
    processed_in(api, clock, 0.9)

    parsed = queue_page(api.client)

    assert 'id="p99-warning"' not in parsed.html
    assert 0.5 < chart_values(parsed, "processing", "processing_p99")[-1] <= 1


# Who sees and may use the actions.


def test_staff_see_the_action_forms(api, admin):
    api.send("x", queue="jobs")

    html = queue_page(admin).html

    for action in ("send", "settings", "redrive", "move", "purge", "delete"):
        assert f'action="/info/jobs/{action}"' in html


def test_others_see_no_action_forms(api):
    api.send("x", queue="jobs")

    html = queue_page(api.client).html

    assert "<form" not in html


@pytest.fixture
def user(client, django_user_model, settings):
    """A logged-in user who is not staff."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    client.force_login(django_user_model.objects.create_user("ada", password="pw"))
    return client


@pytest.mark.parametrize("action", ["send", "purge", "redrive", "move", "settings", "delete"])
def test_an_action_without_staff_is_403_json_and_changes_nothing(api, user, stored, action):
    api.send("x", queue="jobs")
    dead_message(api)
    before = stored()

    response = user.post(f"/info/jobs/{action}", {"payload": "1", "to": "b", "timeout": "3"})

    assert_error(response, 403, "forbidden")
    assert stored() == before


def test_an_action_posted_without_a_csrf_token_is_403_json(api, admin, stored):
    api.send("x", queue="jobs")
    admin.handler = RoutedClientHandler(enforce_csrf_checks=True)
    before = stored()

    response = admin.post("/info/jobs/purge")

    assert_error(response, 403, "csrf_failed")
    assert stored() == before


def test_an_action_posted_with_its_csrf_token_works(api, admin):
    api.send("x", queue="jobs")
    admin.handler = RoutedClientHandler(enforce_csrf_checks=True)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', queue_page(admin).html)

    response = admin.post("/info/jobs/redrive", {"csrfmiddlewaretoken": token.group(1)})

    assert response.status_code == 303


@pytest.mark.parametrize("action", ["send", "redrive", "move", "settings"])
def test_an_action_that_needs_no_confirmation_is_post_only(api, admin, action):
    api.send("x", queue="jobs")

    response = admin.get(f"/info/jobs/{action}")

    assert_error(response, 405, "method_not_allowed")


def test_an_unknown_action_is_404_json(api, admin):
    api.send("x", queue="jobs")

    assert_error(admin.post("/info/jobs/explode"), 404, "not_found")


def test_an_action_on_a_queue_never_used_is_404_json(admin):
    assert_error(admin.post("/info/nothing/redrive"), 404, "not_found")


# Each action.


def test_staff_send_a_test_message(admin):
    Queue.objects.create(name="jobs")

    response = admin.post("/info/jobs/send", {"payload": '{"test": 1.10}'})

    assert response.status_code == 303
    assert response["Location"] == "/info/jobs"
    [message] = Message.objects.filter(queue_id="jobs")
    assert message.payload == '{"test":1.10}'
    assert f"Message {message.id} sent." in admin.get("/info/jobs").content.decode()


def test_a_test_message_can_be_delayed(admin, clock):
    Queue.objects.create(name="jobs")

    admin.post("/info/jobs/send", {"payload": '"later"', "delay": "60"})

    assert Message.objects.get().visible_at == timezone.now() + timedelta(seconds=60)


@pytest.mark.parametrize(
    "fields, code",
    [
        ({"payload": "not json"}, "invalid_payload"),
        ({"payload": ""}, "invalid_payload"),
        ({"payload": "1", "delay": "-1"}, "invalid_delay"),
    ],
)
def test_a_test_message_that_cannot_be_sent_is_400_json(admin, stored, fields, code):
    Queue.objects.create(name="jobs")
    before = stored()

    response = admin.post("/info/jobs/send", fields)

    assert_error(response, 400, code)
    assert stored() == before


def test_a_test_message_over_the_size_limit_is_413_json(admin, settings, stored):
    settings.MQ_MAX_PAYLOAD_BYTES = 10
    Queue.objects.create(name="jobs")
    before = stored()

    assert_error(admin.post("/info/jobs/send", {"payload": '"' + "x" * 20 + '"'}), 413, "too_large")
    assert stored() == before


def test_purge_first_shows_how_many_messages_will_go_and_deletes_nothing(api, admin):
    store(3, "jobs")
    dead_message(api)

    response = admin.get("/info/jobs/purge")

    assert response.status_code == 200
    assert "4 messages will be deleted for good" in text_of(response)
    assert Message.objects.count() == 4


def test_purge_confirmed_deletes_every_message_and_keeps_the_queue(api, admin):
    store(3, "jobs")
    store(2, "other")
    api.client.put("/queues/jobs", '{"max_attempts": 2}', content_type="application/json")

    response = admin.post("/info/jobs/purge")

    assert response.status_code == 303
    assert not Message.objects.filter(queue_id="jobs").exists()
    assert Message.objects.filter(queue_id="other").count() == 2
    assert Queue.objects.get(name="jobs").max_attempts == 2
    assert "3 message(s) purged." in admin.get("/info/jobs").content.decode()


def test_redrive_makes_dead_messages_ready_with_attempts_reset(api, admin):
    message_id = dead_message(api)

    admin.post("/info/jobs/redrive")

    message = Message.objects.get(id=message_id)
    assert (message.state(), message.attempts) == ("ready", 0)


def test_move_takes_dead_messages_to_another_queue_ready(api, admin):
    dead = [dead_message(api), dead_message(api)]
    alive = api.send("stays", queue="jobs")

    response = admin.post("/info/jobs/move", {"to": "parking"})

    assert response.status_code == 303
    moved = Message.objects.filter(queue_id="parking").order_by("id")
    assert [(m.id, m.state(), m.attempts) for m in moved] == [(i, "ready", 0) for i in dead]
    assert list(Message.objects.filter(queue_id="jobs").values_list("id", flat=True)) == [alive]
    assert api.next(queue="parking").json()["id"] == dead[0]
    assert domain.queue_history("jobs").buckets[-1].redriven == 2


@pytest.mark.parametrize("to", ["jobs", "", "not a name"])
def test_move_to_the_same_queue_or_a_bad_name_is_400_json(api, admin, stored, to):
    dead_message(api)
    before = stored()

    assert_error(admin.post("/info/jobs/move", {"to": to}), 400, "invalid_queue_name")
    assert stored() == before


def test_staff_edit_the_settings(api, admin):
    api.send("x", queue="jobs")

    admin.post("/info/jobs/settings", {"timeout": "2.5", "max_attempts": "7"})

    assert Queue.objects.filter(name="jobs").values_list("timeout", "max_attempts").get() == (
        2.5,
        7,
    )
    assert api.get("/queues/jobs").json()["max_attempts"] == 7


def test_empty_settings_mean_the_defaults(api, admin):
    api.client.put(
        "/queues/jobs", '{"timeout": 3, "max_attempts": 2}', content_type="application/json"
    )

    admin.post("/info/jobs/settings", {"timeout": "", "max_attempts": ""})

    assert Queue.objects.filter(name="jobs").values_list("timeout", "max_attempts").get() == (
        None,
        None,
    )


@pytest.mark.parametrize(
    "fields, code",
    [
        ({"timeout": "0"}, "invalid_timeout"),
        ({"timeout": "abc"}, "invalid_timeout"),
        ({"max_attempts": "0"}, "invalid_max_attempts"),
        ({"max_attempts": "1.5"}, "invalid_max_attempts"),
        ({"max_attempts": "9" * 30}, "invalid_max_attempts"),
    ],
)
def test_settings_the_api_refuses_are_400_json_and_change_nothing(api, admin, stored, fields, code):
    api.client.put("/queues/jobs", '{"timeout": 3}', content_type="application/json")
    before = stored()

    assert_error(admin.post("/info/jobs/settings", fields), 400, code)
    assert stored() == before


def test_delete_first_asks_and_then_deletes_the_queue_with_its_messages(api, admin):
    store(3, "jobs")
    store(1, "other")

    confirmation = admin.get("/info/jobs/delete")
    response = admin.post("/info/jobs/delete")

    assert "3 messages" in text_of(confirmation)
    assert response.status_code == 303
    assert response["Location"] == "/info"
    assert not Queue.objects.filter(name="jobs").exists()
    assert not Message.objects.filter(queue_id="jobs").exists()
    assert Message.objects.filter(queue_id="other").count() == 1
    assert_error(admin.get("/info/jobs"), 404, "not_found")


def test_a_deleted_queue_is_created_anew_by_a_send(api, admin):
    api.send("x", queue="jobs")
    admin.post("/info/jobs/delete")

    message_id = api.send("again", queue="jobs")

    assert json.loads(api.next(queue="jobs").content)["id"] == message_id
