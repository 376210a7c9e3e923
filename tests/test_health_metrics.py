"""/health for load balancers and /metrics for Prometheus, both read from the database."""

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from messages_app.models import Message

pytestmark = pytest.mark.django_db


def scrape(api) -> dict[tuple, float]:
    """/metrics as {(metric name, sorted labels...): value}."""
    response = api.get("/metrics")
    assert response.status_code == 200
    return {
        (sample.name, *sorted(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }


def messages_metric(samples: dict, queue: str, state: str) -> float:
    return samples[("mq_messages", ("queue", queue), ("state", state))]


def test_health_is_ok_with_the_database_it_reached(api):
    response = api.get("/health")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"status": "ok", "database": connection.vendor}


def test_health_changes_nothing(api, stored):
    api.send("x")
    before = stored()

    api.get("/health")

    assert stored() == before


def test_metrics_is_prometheus_text(api):
    api.send("x")

    response = api.get("/metrics")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    assert b"# TYPE mq_messages gauge" in response.content


def test_metrics_counts_messages_by_queue_and_state_as_stored(api, clock):
    ids = [api.send(n, queue="jobs") for n in range(5)]
    api.next(queue="jobs")  # ids[0] leased
    Message.objects.filter(id=ids[1]).update(dead=True)
    Message.objects.filter(id=ids[2]).update(visible_at=timezone.now() + timedelta(hours=1))
    api.send("x")

    samples = scrape(api)

    assert {state: messages_metric(samples, "jobs", state) for state in STATES} == {
        "ready": 2,
        "leased": 1,
        "delayed": 1,
        "dead": 1,
    }
    assert {state: messages_metric(samples, "default", state) for state in STATES} == {
        "ready": 1,
        "leased": 0,
        "delayed": 0,
        "dead": 0,
    }


STATES = ("ready", "leased", "delayed", "dead")


def test_metrics_follow_the_clock_without_any_housekeeping(api, clock):
    api.send("x")
    api.next()
    clock.shift(11)

    samples = scrape(api)

    assert messages_metric(samples, "default", "ready") == 1
    assert messages_metric(samples, "default", "leased") == 0


def test_metrics_report_the_age_of_each_queues_oldest_message(api, clock):
    api.send("old", queue="jobs")
    clock.shift(90)
    api.send("new", queue="jobs")

    samples = scrape(api)

    assert samples[("mq_oldest_message_age_seconds", ("queue", "jobs"))] == 90


def test_metrics_keep_reporting_an_emptied_queue_at_zero(api):
    message_id = api.send("x")
    api.next()
    api.done(message_id)

    samples = scrape(api)

    assert {state: messages_metric(samples, "default", state) for state in STATES} == dict.fromkeys(
        STATES, 0
    )
    assert ("mq_oldest_message_age_seconds", ("queue", "default")) not in samples


def test_metrics_with_nothing_stored_have_no_samples(api):
    assert scrape(api) == {}
