"""GET /queues/<name>/stats?window=1h|24h|30d: a queue's counters, depth and
processing time bucket by bucket; DELETE /queues/<name>."""

import pytest

from messages_app import runtime
from messages_app.models import CounterBucket, IdempotencyKey, Message, Queue

pytestmark = pytest.mark.django_db


def test_the_last_hour_is_sixty_minute_buckets_with_the_traffic_in_the_last(api, clock):
    api.send("x", queue="jobs")
    api.send("y", queue="jobs")
    delivery = api.next(queue="jobs").json()
    clock.shift(1)
    api.done(delivery["id"], delivery["lease"], queue="jobs")
    runtime.current().counters.housekeeping()

    response = api.get("/queues/jobs/stats?window=1h")

    assert response.status_code == 200
    body = response.json()
    assert (body["queue"], body["window"], body["span"]) == ("jobs", "1h", 60)
    assert len(body["buckets"]) == 60
    assert body["buckets"][0]["time"] == "2030-01-01T11:01:00.000Z"
    assert body["buckets"][-1] == {
        "time": "2030-01-01T12:00:00.000Z",
        "sent": 2,
        "delivered": 1,
        "redelivered": 0,
        "acked": 1,
        "given_back": 0,
        "expired": 0,
        "died": 0,
        "redriven": 0,
        "purged": 0,
        "ready": 1,
        "leased": 0,
        "delayed": 0,
        "dead": 0,
        "processed": 1,
        "processing_p50": pytest.approx(0.75),
        "processing_p99": pytest.approx(0.995),
    }
    assert body["buckets"][0]["ready"] is None and body["buckets"][0]["processing_p50"] is None


def test_without_a_window_it_is_the_last_hour(api):
    api.send("x", queue="jobs")

    body = api.get("/queues/jobs/stats").json()

    assert (body["window"], len(body["buckets"]), body["buckets"][-1]["sent"]) == ("1h", 60, 1)


def test_24_hours_are_minutes_and_30_days_are_hours(api, clock):
    api.send("x", queue="jobs")

    day = api.get("/queues/jobs/stats?window=24h").json()
    month = api.get("/queues/jobs/stats?window=30d").json()

    assert (day["span"], len(day["buckets"]), day["buckets"][-1]["sent"]) == (60, 1440, 1)
    assert (month["span"], len(month["buckets"]), month["buckets"][-1]["sent"]) == (3600, 720, 1)
    assert month["buckets"][-1]["time"] == "2030-01-01T12:00:00.000Z"


@pytest.mark.parametrize("window", ["2h", "", "1H", "7d"])
def test_another_window_is_a_400(api, window):
    api.send("x", queue="jobs")

    response = api.client.get("/queues/jobs/stats", {"window": window})

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_window"


def test_the_stats_of_a_queue_never_used_are_a_404(api):
    response = api.get("/queues/nobody/stats?window=1h")

    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


def test_a_bad_queue_name_is_a_400(api):
    response = api.get("/queues/bad%20name/stats")

    assert (response.status_code, response.json()["error"]) == (400, "invalid_queue_name")


def test_the_stats_need_a_token_when_tokens_are_set(api, settings):
    settings.MQ_API_TOKENS = ["secret"]
    Queue.objects.create(name="jobs")

    assert api.get("/queues/jobs/stats").status_code == 401
    allowed = api.get("/queues/jobs/stats", HTTP_AUTHORIZATION="Bearer secret")
    assert allowed.status_code == 200


def test_delete_a_queue_with_its_messages(api):
    for n in range(3):
        api.send(n, queue="jobs")
    api.post("/queues/jobs/message/new", {"payload": "k", "key": "once"})
    api.send("other", queue="others")

    response = api.client.delete("/queues/jobs")

    assert response.status_code == 200
    assert response.json() == {"queue": "jobs", "deleted": 4}
    assert not Queue.objects.filter(name="jobs").exists()
    assert not Message.objects.filter(queue_id="jobs").exists()
    assert not IdempotencyKey.objects.filter(queue_id="jobs").exists()
    assert not CounterBucket.objects.filter(queue="jobs").exists()
    assert [q["name"] for q in api.get("/queues").json()["queues"]] == ["others"]


def test_a_deleted_queue_is_used_again_by_a_send(api):
    api.send("before", queue="jobs")
    api.client.delete("/queues/jobs")

    api.send("after", queue="jobs")

    assert api.next(queue="jobs").json()["payload"] == "after"
    assert api.get("/queues/jobs/stats").json()["buckets"][-1]["sent"] == 1


def test_deleting_a_queue_never_used_is_a_404_and_changes_nothing(api, stored):
    api.send("x")
    before = stored()

    response = api.client.delete("/queues/nobody")

    assert (response.status_code, response.json()["error"]) == (404, "not_found")
    assert stored() == before
