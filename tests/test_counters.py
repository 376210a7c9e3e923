"""Counters that last: each process counts in memory and adds its counts to
per-minute, per-hour and total buckets in the database (messages_app/counters.py);
``domain.queue_history`` reads them back for the stats API and the charts."""

import io
import json
import re
from datetime import UTC, datetime, timedelta

import pytest
import requests
from django.core.management import call_command
from django.utils import timezone

from messages_app import counters, domain, runtime
from messages_app.errors import QueueError
from messages_app.models import CounterBucket, Message
from messages_app.store import for_vendor

pytestmark = pytest.mark.django_db

NOON = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


def flush() -> None:
    runtime.current().counters.flush()


def last_bucket(queue: str = "default", window: str = "1h") -> counters.Bucket:
    return domain.queue_history(queue, window).buckets[-1]


def counted(bucket: counters.Bucket) -> dict[str, int]:
    return {name: getattr(bucket, name) for name in counters.COUNTERS if getattr(bucket, name)}


def test_a_send_a_delivery_an_ack_and_a_give_back_are_counted_in_this_minute(api, clock):
    for n in range(3):
        api.send(n)
    first = api.next().json()
    second = api.next().json()
    api.done(first["id"], first["lease"])
    api.post(f"/message/{second['id']}/status/ready", {"lease": second["lease"]})

    bucket = last_bucket()

    assert bucket.time == NOON
    assert counted(bucket) == {"sent": 3, "delivered": 2, "acked": 1, "given_back": 1}


def test_the_history_has_every_bucket_of_the_window_oldest_first(api, clock):
    clock.shift(-3600)
    api.send("an hour ago")
    flush()
    clock.shift(3600)
    api.send("x")

    history = domain.queue_history("default", "1h")

    assert (history.span, len(history.buckets)) == (60, 60)
    assert history.buckets[0].time == NOON - timedelta(minutes=59)
    assert [b.sent for b in history.buckets] == [0] * 59 + [1]
    assert len(domain.queue_history("default", "24h").buckets) == 24 * 60
    assert domain.queue_history("default", "24h").buckets[-61].sent == 1


def test_the_30_day_window_is_hourly_and_sums_the_minutes_of_each_hour(api, clock):
    api.send("at noon")
    flush()
    clock.shift(59 * 60)
    api.send("at 12:59")
    flush()
    clock.shift(60)
    api.send("at 13:00")

    history = domain.queue_history("default", "30d")

    assert (history.span, len(history.buckets)) == (3600, 30 * 24)
    assert [(b.time, b.sent) for b in history.buckets[-2:]] == [
        (NOON, 2),
        (NOON + timedelta(hours=1), 1),
    ]


def test_a_delivery_after_a_lease_ran_out_is_a_redelivery_and_an_expiry(api, clock):
    api.send("x")
    api.next(timeout=1)
    clock.shift(2)

    again = api.next().json()

    assert again["attempts"] == 2
    assert counted(last_bucket()) == {"sent": 1, "delivered": 2, "redelivered": 1, "expired": 1}


def test_a_delivery_after_a_give_back_is_a_redelivery_but_no_expiry(api):
    api.send("x")
    first = api.next().json()
    api.post(f"/message/{first['id']}/status/ready", {"lease": first["lease"]})

    api.next()

    assert counted(last_bucket()) == {
        "sent": 1,
        "delivered": 2,
        "redelivered": 1,
        "given_back": 1,
    }


def test_requeue_expired_counts_the_expiries_it_finds_and_the_deaths(api, clock):
    domain.configure("q", max_attempts=2)
    api.send("twice delivered", queue="q")
    api.send("once delivered", queue="q")
    api.client.get("/queues/q/messages/next", {"count": 2, "timeout": 1})
    clock.shift(2)
    api.next(queue="q", timeout=1)  # the first again: its second and last delivery
    clock.shift(2)

    call_command("requeue_expired", stdout=io.StringIO())

    # The claim saw one expiry, requeue_expired two (one of them the last delivery).
    assert counted(last_bucket("q")) == {
        "sent": 2,
        "delivered": 3,
        "redelivered": 1,
        "expired": 3,
        "died": 1,
    }


def test_the_last_allowed_give_back_is_a_death(api):
    domain.configure("q", max_attempts=1)
    api.send("x", queue="q")
    delivery = api.next(queue="q").json()

    answer = api.post(f"/queues/q/message/{delivery['id']}/status/ready")

    assert answer.json()["status"] == "dead"
    assert counted(last_bucket("q")) == {"sent": 1, "delivered": 1, "given_back": 1, "died": 1}


def test_redrive_and_purge_are_counted(api):
    domain.configure("q", max_attempts=1)
    api.send("x", queue="q")
    api.send("y", queue="q")
    delivery = api.next(queue="q").json()
    api.post(f"/queues/q/message/{delivery['id']}/status/ready")

    api.post("/queues/q/redrive")
    domain.purge_queue("q")

    bucket = last_bucket("q")
    assert (bucket.redriven, bucket.purged) == (1, 2)


def sqs(client, action: str, **params) -> dict:
    response = client.post(
        "/sqs",
        json.dumps(params),
        content_type="application/x-amz-json-1.0",
        HTTP_X_AMZ_TARGET=f"AmazonSQS.{action}",
    )
    assert response.status_code == 200, response.content
    return json.loads(response.content)


def test_messages_sent_over_sqs_are_counted(client):
    url = sqs(client, "CreateQueue", QueueName="jobs")["QueueUrl"]
    sqs(client, "SendMessage", QueueUrl=url, MessageBody="one")
    entries = [{"Id": str(n), "MessageBody": f"m{n}"} for n in range(2)]
    sqs(client, "SendMessageBatch", QueueUrl=url, Entries=entries)

    assert last_bucket("jobs").sent == 3


def test_the_processing_time_is_the_time_from_delivery_to_ack(api, clock):
    api.send("x")
    api.send("y")
    first = api.next().json()
    second = api.next().json()
    clock.shift(3)
    api.done(first["id"], first["lease"])
    api.done(second["id"])  # without the lease: the stored token still tells

    bucket = last_bucket()

    assert bucket.processed == 2
    assert 2.5 < bucket.processing_p50 <= 5
    assert 2.5 < bucket.processing_p99 <= 5
    [total] = CounterBucket.objects.filter(span=counters.EVER).values("processing_seconds")
    assert total["processing_seconds"] == pytest.approx(6.0)


def test_a_batch_ack_times_every_message(api, clock):
    ids = api.post("/messages/new", {"payloads": [1, 2, 3]}).json()["ids"]
    delivered = api.client.get("/messages/next", {"count": 3}).json()["messages"]
    clock.shift(0.02)

    api.post("/messages/status/done", {"messages": [{"id": i} for i in ids]})

    bucket = last_bucket()
    assert (bucket.delivered, bucket.acked, bucket.processed) == (3, 3, 3)
    assert 0.01 < bucket.processing_p50 <= 0.025
    assert len(delivered) == 3


def test_quantiles_interpolate_within_the_histogram_bucket():
    histogram = [0] * len(counters.PROCESSING)
    histogram[counters.PROCESSING_BOUNDS.index(0.5)] = 99  # (0.25, 0.5]
    histogram[-1] = 1  # above the last bound

    assert counters.quantile(0.5, histogram) == pytest.approx(0.25 + 0.25 * 50 / 99)
    assert counters.quantile(0.995, histogram) == counters.PROCESSING_BOUNDS[-1]
    assert counters.quantile(0.5, [0] * len(counters.PROCESSING)) is None


def test_counts_of_two_processes_add_up_in_one_bucket(api, clock):
    api.send("x")
    other_process = counters.Counters(for_vendor_of_this_database(), lambda now: {})
    other_process.add("default", counters.SENT, 5)

    other_process.flush()
    flush()

    assert last_bucket().sent == 6
    [total] = CounterBucket.objects.filter(queue="default", span=counters.EVER)
    assert total.sent == 6


def for_vendor_of_this_database():
    from django.db import connection

    return for_vendor(connection.vendor)


def test_a_flush_that_fails_keeps_the_counts_for_the_next(api, monkeypatch):
    api.send("x")
    process_counters = runtime.current().counters
    store = process_counters.store

    def refused(rows):
        raise RuntimeError("database away")

    monkeypatch.setattr(store, "add_counters", refused)
    with pytest.raises(RuntimeError):
        process_counters.flush()
    monkeypatch.undo()

    assert last_bucket().sent == 1


def test_the_depth_is_sampled_into_the_minute_and_the_hour(api, clock):
    api.send("ready")
    api.send("leased")
    api.next()

    runtime.current().counters.housekeeping()

    bucket = last_bucket()
    assert (bucket.ready, bucket.leased, bucket.delayed, bucket.dead) == (1, 1, 0, 0)
    assert last_bucket(window="30d").ready == 1
    assert domain.queue_history("default").buckets[-2].ready is None


def test_housekeeping_prunes_minutes_after_a_day_and_hours_after_a_month(api, clock):
    api.send("x")
    flush()
    process_counters = runtime.current().counters

    def spans_kept() -> list[int]:
        # Housekeeping's depth samples go to later buckets: only those of noon.
        return sorted(CounterBucket.objects.filter(start__lte=NOON).values_list("span", flat=True))

    assert spans_kept() == [counters.EVER, counters.MINUTE, counters.HOUR]
    process_counters.housekeeping(NOON + timedelta(hours=25, minutes=1))
    assert spans_kept() == [counters.EVER, counters.HOUR]
    process_counters.housekeeping(NOON + timedelta(days=31, hours=2))
    assert spans_kept() == [counters.EVER]


def test_a_window_other_than_1h_24h_30d_is_refused():
    with pytest.raises(QueueError) as refused:
        domain.queue_history("default", "2h")
    assert refused.value.code == "invalid_window"


def test_the_history_of_a_queue_never_used_is_not_found():
    with pytest.raises(QueueError) as refused:
        domain.queue_history("never-used", "1h")
    assert refused.value.status == 404


def test_deleting_a_queue_deletes_its_history(api):
    api.send("x", queue="q")
    flush()

    domain.delete_queue("q")

    assert not CounterBucket.objects.filter(queue="q").exists()
    assert not Message.objects.filter(queue_id="q").exists()


def test_counts_survive_a_restart_and_add_up_across_two_server_processes(server_factory):
    first, second = server_factory.many(2, MQ_WORKERS="1", MQ_COUNTERS_FLUSH="0.2")
    for server in (first, second):
        for n in range(3):
            assert requests.post(server.url + "/message/new", json={"payload": n}).ok
    delivery = requests.get(second.url + "/message/next").json()
    requests.post(second.url + f"/message/{delivery['id']}/status/done")

    def stored(name: str) -> int:
        return sum(CounterBucket.objects.filter(span=counters.EVER).values_list(name, flat=True))

    wait_for(lambda: (stored("sent"), stored("acked")) == (6, 1))
    # Every process reports the stored totals, whichever process counted.
    for server in (first, second):
        text = requests.get(server.url + "/metrics").text
        assert 'mq_messages_sent_total{queue="default"} 6.0' in text
        assert 'mq_messages_acked_total{queue="default"} 1.0' in text
    first.kill()
    second.kill()
    restarted = server_factory(MQ_WORKERS="1")

    stats = requests.get(restarted.url + "/queues/default/stats?window=1h").json()
    assert sum(b["sent"] for b in stats["buckets"]) == 6
    assert sum(b["acked"] for b in stats["buckets"]) == 1


def wait_for(condition) -> None:
    from tests.conftest import wait_until

    wait_until(condition, 20, "flushed counters")


def test_a_server_stopped_normally_flushes_what_it_counted(server_factory):
    server = server_factory(MQ_WORKERS="1", MQ_COUNTERS_FLUSH="3600")
    assert requests.post(server.url + "/message/new", json={"payload": 1}).ok

    assert server.terminate() == 0

    assert CounterBucket.objects.get(queue="default", span=counters.EVER).sent == 1


def test_the_lease_token_carries_its_delivery_time(clock):
    lease = counters.new_lease(timezone.now())

    assert len(lease) == 32 and lease.endswith(counters.FRESH_MARK)
    assert counters.delivered_at(lease) == timezone.now().timestamp()
    assert counters.delivered_at("L") is None
    assert Message._meta.get_field("lease").max_length == len(counters.after_expiry(lease))


def metrics(client) -> dict[str, float]:
    text = client.get("/metrics").content.decode()
    return {
        name: float(value)
        for name, value in re.findall(
            r"^(mq_(?:messages_\w+_total|processing_\w+)\S*) (\S+)$", text, re.M
        )
    }


def test_metrics_has_a_counter_per_queue_for_each_event(api, client, clock):
    api.send("x", queue="jobs")
    api.send("y", queue="jobs")
    delivery = api.next(queue="jobs", timeout=1).json()
    clock.shift(2)
    api.next(queue="jobs")
    api.send("idle", queue="idle")

    found = metrics(client)

    assert {
        name: found[f'mq_messages_{name}_total{{queue="jobs"}}']
        for name in ("sent", "delivered", "redelivered", "acked", "given_back", "expired", "dead")
    } == {
        "sent": 2,
        "delivered": 2,
        "redelivered": 1,
        "acked": 0,
        "given_back": 0,
        "expired": 1,
        "dead": 0,
    }
    assert found['mq_messages_sent_total{queue="idle"}'] == 1
    assert delivery["attempts"] == 1


def test_metrics_has_the_processing_time_histogram(api, client, clock):
    api.send("x", queue="jobs")
    delivery = api.next(queue="jobs").json()
    clock.shift(0.3)
    api.done(delivery["id"], delivery["lease"], queue="jobs")

    found = metrics(client)

    assert found['mq_processing_seconds_bucket{le="0.25",queue="jobs"}'] == 0
    assert found['mq_processing_seconds_bucket{le="0.5",queue="jobs"}'] == 1
    assert found['mq_processing_seconds_bucket{le="+Inf",queue="jobs"}'] == 1
    assert found['mq_processing_seconds_count{queue="jobs"}'] == 1
    assert found['mq_processing_seconds_sum{queue="jobs"}'] == pytest.approx(0.3)


def test_metrics_adds_what_other_processes_stored(api, client):
    api.send("x", queue="jobs")
    other_process = counters.Counters(for_vendor_of_this_database(), lambda now: {})
    other_process.add("jobs", counters.SENT, 41)
    other_process.flush()

    assert metrics(client)['mq_messages_sent_total{queue="jobs"}'] == 42
