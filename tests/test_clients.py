"""The Python clients: in-process through DRF's ``RequestsClient`` (real views, real
database), and against a real server where the network, threads or signals matter."""

import logging
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import free_port
from rest_framework.test import RequestsClient

from clients import (
    BadRequest,
    BatchResult,
    Conflict,
    Consumer,
    Failure,
    Message,
    NotFound,
    PayloadTooLarge,
    Producer,
    QueueConnectionError,
    QueueError,
    Unauthorized,
)

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def session():
    with RequestsClient() as session:
        yield session


@pytest.fixture
def producer(session):
    return Producer("testserver", 80, session=session)


@pytest.fixture
def consumer(session):
    return Consumer("testserver", 80, session=session)


@pytest.fixture
def retry_log(caplog):
    """The clients' warnings about retries, as the user's logging would show them."""
    caplog.set_level(logging.WARNING, logger="clients")
    return lambda: [r for r in caplog.records if "retry" in r.getMessage()]


def counts(client, queue="default") -> dict:
    return next(q for q in client.queues() if q["name"] == queue)


# The seed's calls.


def test_a_message_comes_back_with_its_payload_lease_and_attempts(producer, consumer):
    message_id = producer.add_new_message({"to": "ada@example.com", "tags": [1, 2.5, None]})

    message = consumer.get_next_message()

    assert isinstance(message, Message)
    assert message.id == message_id
    assert message.payload == {"to": "ada@example.com", "tags": [1, 2.5, None]}
    assert message.attempts == 1
    assert message.queue == "default"
    assert isinstance(message.lease, str) and message.lease
    assert message.lease_expires_at > datetime.now(UTC)


def test_an_empty_queue_gives_none(consumer):
    assert consumer.get_next_message() is None


def test_messages_come_in_the_order_they_were_added(producer, consumer):
    ids = [producer.add_new_message(n) for n in range(3)]

    assert [consumer.get_next_message().id for _ in ids] == ids


def test_a_processed_message_is_gone(producer, consumer):
    producer.add_new_message("once")
    message = consumer.get_next_message()

    assert consumer.notify_processed(message) is True

    assert consumer.get_next_message() is None
    assert counts(consumer)["leased"] == 0


def test_notify_processed_accepts_a_bare_id_like_the_seed(producer, consumer):
    message_id = producer.add_new_message("seed style")
    consumer.get_next_message()

    assert consumer.notify_processed(message_id) is True
    assert consumer.get_next_message() is None


def test_the_lease_length_asked_for_is_the_one_given(producer, consumer, clock):
    producer.add_new_message("x")

    message = consumer.get_next_message(timeout=600)

    assert message.lease_expires_at == datetime.now(UTC) + timedelta(seconds=600)


def test_named_queues_are_separate(session):
    emails = Producer("testserver", 80, queue="emails", session=session)
    message_id = emails.add_new_message("hello")

    assert Consumer("testserver", 80, session=session).get_next_message() is None
    message = Consumer("testserver", 80, queue="emails", session=session).get_next_message()
    assert (message.id, message.queue) == (message_id, "emails")


def test_a_message_from_a_named_queue_is_finished_on_that_queue(session):
    Producer("testserver", 80, queue="emails", session=session).add_new_message("hi")
    emails = Consumer("testserver", 80, queue="emails", session=session)
    message = emails.get_next_message()

    # Any consumer may finish it: the message knows its queue.
    assert Consumer("testserver", 80, session=session).notify_processed(message) is True
    assert emails.get_next_message() is None


def test_queues_lists_counts(producer, consumer):
    producer.add_new_message(1)
    producer.add_new_message(2)
    consumer.get_next_message()

    assert counts(producer)["ready"] == 1
    assert counts(producer)["leased"] == 1


# Errors: one exception type, with the server's status, code and detail.


def test_finishing_an_unknown_message_raises_not_found(consumer):
    with pytest.raises(NotFound) as raised:
        consumer.notify_processed(999999)

    error = raised.value
    assert isinstance(error, QueueError)
    assert (error.status, error.code) == (404, "not_found")
    assert "999999" in error.detail
    assert "not_found" in str(error) and "404" in str(error)


def test_finishing_with_a_stale_lease_raises_conflict(producer, consumer, clock):
    producer.add_new_message("slow")
    first = consumer.get_next_message(timeout=1)
    clock.shift(5)
    second = consumer.get_next_message()
    assert second.id == first.id

    with pytest.raises(Conflict) as raised:
        consumer.notify_processed(first)

    assert (raised.value.status, raised.value.code) == (409, "stale_lease")
    # The current delivery still holds the message and may finish it.
    assert consumer.notify_processed(second) is True


def test_finishing_a_message_not_leased_raises_conflict(producer, consumer):
    message_id = producer.add_new_message("never delivered")

    with pytest.raises(Conflict) as raised:
        consumer.notify_processed(message_id)

    assert raised.value.code == "not_leased"


def test_a_bad_queue_name_raises_bad_request(session):
    with pytest.raises(BadRequest) as raised:
        Producer("testserver", 80, queue="no spaces!", session=session).add_new_message(1)

    assert (raised.value.status, raised.value.code) == (400, "invalid_queue_name")


def test_a_bad_lease_timeout_raises_bad_request(consumer):
    with pytest.raises(BadRequest) as raised:
        consumer.get_next_message(timeout=-1)

    assert raised.value.code == "invalid_timeout"
    assert "timeout" in raised.value.detail


def test_a_payload_over_the_limit_raises_payload_too_large(producer, settings):
    settings.MQ_MAX_PAYLOAD_BYTES = 10

    with pytest.raises(PayloadTooLarge) as raised:
        producer.add_new_message("x" * 100)

    assert (raised.value.status, raised.value.code) == (413, "too_large")


def test_without_the_token_a_protected_server_raises_unauthorized(producer, settings):
    settings.MQ_API_TOKENS = ["s3cret"]

    with pytest.raises(Unauthorized) as raised:
        producer.add_new_message("x")

    assert (raised.value.status, raised.value.code) == (401, "unauthorized")


def test_with_the_token_a_protected_server_answers(session, settings):
    settings.MQ_API_TOKENS = ["s3cret"]
    producer = Producer("testserver", 80, token="s3cret", session=session)
    consumer = Consumer("testserver", 80, token="s3cret", session=session)

    message_id = producer.add_new_message("x")

    assert consumer.get_next_message().id == message_id


def test_a_4xx_answer_is_not_retried(consumer, retry_log):
    with pytest.raises(NotFound):
        consumer.notify_processed(424242)

    assert retry_log() == []


def test_a_passed_in_session_is_used_and_left_open(session):
    with Consumer("testserver", 80, session=session) as consumer:
        assert consumer.session is session
    # The owner's session still works after the client is closed.
    assert Producer("testserver", 80, session=session).add_new_message(1) > 0


# Producer options (issue 3 server routes).


def test_a_delayed_message_is_hidden_until_its_time(producer, consumer, clock):
    producer.add_new_message("later", delay=60)

    assert consumer.get_next_message() is None
    assert counts(consumer)["delayed"] == 1
    clock.shift(60)
    assert consumer.get_next_message().payload == "later"


def test_a_repeated_key_returns_the_first_id_and_adds_nothing(producer, consumer):
    first = producer.add_new_message("charge #1", key="order-1")
    again = producer.add_new_message("charge #1", key="order-1")

    assert again == first
    assert consumer.get_next_message().id == first
    assert consumer.get_next_message() is None


# Batches (issue 3 server routes).


def test_a_batch_is_added_and_leased_in_order(producer, consumer):
    ids = producer.add_new_messages(["a", {"b": 2}, [3]])

    messages = consumer.get_next_messages(10)

    assert len(ids) == 3
    assert [m.id for m in messages] == ids
    assert [m.payload for m in messages] == ["a", {"b": 2}, [3]]
    assert all(m.lease and m.attempts == 1 for m in messages)


def test_a_batch_lease_on_an_empty_queue_is_an_empty_list(consumer):
    assert consumer.get_next_messages(5) == []


def test_a_batch_lease_takes_at_most_count(producer, consumer):
    producer.add_new_messages(range(5))

    assert len(consumer.get_next_messages(2)) == 2
    assert len(consumer.get_next_messages(10)) == 3


def test_a_batch_done_reports_each_message(producer, consumer):
    producer.add_new_messages(["a", "b"])
    a, b = consumer.get_next_messages(2)

    result = consumer.notify_processed_many([a, b, 999999])

    assert isinstance(result, BatchResult)
    assert result.processed == (a.id, b.id)
    assert [(f.id, f.error) for f in result.failed] == [(999999, "not_found")]
    assert isinstance(result.failed[0], Failure)
    assert "999999" in result.failed[0].detail
    assert not result.ok
    assert consumer.get_next_message() is None


# Lease control (issue 3 server routes).


def test_extending_a_lease_moves_its_expiry(producer, consumer, clock):
    producer.add_new_message("long job")
    message = consumer.get_next_message(timeout=5)
    clock.shift(3)

    extended = consumer.extend_lease(message, 600)

    assert (extended.id, extended.lease) == (message.id, message.lease)
    assert extended.lease_expires_at == datetime.now(UTC) + timedelta(seconds=600)
    clock.shift(60)
    assert consumer.get_next_message() is None
    assert consumer.notify_processed(extended) is True


def test_extending_without_a_timeout_renews_the_queues_lease_length(session, clock):
    jobs = Consumer("testserver", 80, queue="jobs", session=session)
    jobs.configure_queue(timeout=30)
    Producer("testserver", 80, queue="jobs", session=session).add_new_message("x")
    message = jobs.get_next_message(timeout=5)

    extended = jobs.extend_lease(message)

    assert extended.lease_expires_at == datetime.now(UTC) + timedelta(seconds=30)


def test_extending_a_stale_lease_raises_conflict(producer, consumer, clock):
    producer.add_new_message("x")
    first = consumer.get_next_message(timeout=1)
    clock.shift(5)
    consumer.get_next_message()

    with pytest.raises(Conflict) as raised:
        consumer.extend_lease(first, 60)

    assert raised.value.code == "stale_lease"


def test_a_message_given_back_is_delivered_again_at_once(producer, consumer):
    message_id = producer.add_new_message("retry me")
    message = consumer.get_next_message(timeout=600)

    assert consumer.give_back(message) == "ready"

    again = consumer.get_next_message()
    assert (again.id, again.attempts) == (message_id, 2)


def test_a_message_given_back_with_a_delay_waits(producer, consumer, clock):
    producer.add_new_message("later")
    consumer.give_back(consumer.get_next_message(), delay=60)

    assert consumer.get_next_message() is None
    clock.shift(60)
    assert consumer.get_next_message().payload == "later"


def test_giving_back_with_a_stale_lease_raises_conflict(producer, consumer, clock):
    producer.add_new_message("x")
    first = consumer.get_next_message(timeout=1)
    clock.shift(5)
    second = consumer.get_next_message()

    with pytest.raises(Conflict) as raised:
        consumer.give_back(first)

    assert raised.value.code == "stale_lease"
    assert consumer.notify_processed(second) is True


# Queue settings and dead letters (issue 3 server routes).


def test_a_queue_reports_its_settings(session):
    jobs = Consumer("testserver", 80, queue="jobs", session=session)

    info = jobs.configure_queue(timeout=30, max_attempts=2)

    assert (info["timeout"], info["max_attempts"]) == (30, 2)
    assert jobs.queue_info()["name"] == "jobs"
    assert jobs.queue_info()["max_attempts"] == 2


def test_configuring_none_puts_a_setting_back_to_the_default(session):
    jobs = Consumer("testserver", 80, queue="jobs", session=session)
    jobs.configure_queue(timeout=30, max_attempts=2)

    info = jobs.configure_queue(max_attempts=None)

    assert (info["timeout"], info["max_attempts"]) == (30, None)


def test_the_last_allowed_delivery_given_back_is_dead_and_redrive_revives_it(session):
    jobs = Consumer("testserver", 80, queue="jobs", session=session)
    jobs.configure_queue(max_attempts=1)
    Producer("testserver", 80, queue="jobs", session=session).add_new_message("poison")

    assert jobs.give_back(jobs.get_next_message()) == "dead"
    assert jobs.get_next_message() is None
    assert jobs.queue_info()["dead"] == 1

    assert jobs.redrive() == 1
    assert jobs.get_next_message().payload == "poison"


# Through a real server: long polling, the worker loop, retries.


def wait_for(condition, seconds: float = 20) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_a_long_poll_answers_as_soon_as_a_message_arrives(server_factory):
    server = server_factory()
    with (
        Consumer("127.0.0.1", server.port) as consumer,
        Producer("127.0.0.1", server.port) as producer,
    ):
        threading.Timer(1.0, producer.add_new_message, ["news"]).start()
        started = time.monotonic()

        message = consumer.get_next_message(wait=10)

        assert message is not None and message.payload == "news"
        assert time.monotonic() - started < 8


def test_a_long_poll_on_an_empty_queue_gives_none_after_the_wait(server_factory):
    server = server_factory()
    with Consumer("127.0.0.1", server.port) as consumer:
        started = time.monotonic()

        assert consumer.get_next_message(wait=1) is None
        assert time.monotonic() - started >= 0.9


def test_the_worker_acks_what_the_handler_handles(server_factory):
    server = server_factory()
    with (
        Consumer("127.0.0.1", server.port) as consumer,
        Producer("127.0.0.1", server.port) as producer,
    ):
        producer.add_new_message({"n": 1})
        producer.add_new_message({"n": 2})
        seen = []

        handled = consumer.run(lambda m: seen.append(m.payload), wait=1, max_messages=2)

        assert handled == 2
        assert seen == [{"n": 1}, {"n": 2}]
        assert consumer.get_next_message() is None
        assert counts(consumer)["leased"] == 0


def test_a_handler_exception_gives_the_message_back_for_redelivery(server_factory, caplog):
    server = server_factory()
    with (
        Consumer("127.0.0.1", server.port) as consumer,
        Producer("127.0.0.1", server.port) as producer,
    ):
        message_id = producer.add_new_message("flaky")
        calls = []

        def handler(message):
            calls.append((message.id, message.attempts))
            if message.attempts == 1:
                raise RuntimeError("boom")

        # A lease far longer than the test: only a give-back can bring it back in time.
        stop = threading.Event()
        safety = threading.Timer(20, stop.set)
        safety.start()
        try:
            consumer.run(
                handler, wait=1, timeout=600, max_messages=2, retry_delay=0, stop_event=stop
            )
        finally:
            safety.cancel()

        assert calls == [(message_id, 1), (message_id, 2)]
        assert consumer.get_next_message() is None
        assert "handler failed on message" in caplog.text and "boom" in caplog.text


def test_a_failed_message_is_given_back_with_a_delay(server_factory):
    server = server_factory()
    with (
        Consumer("127.0.0.1", server.port) as consumer,
        Producer("127.0.0.1", server.port) as producer,
    ):
        producer.add_new_message("fails")

        consumer.run(lambda m: 1 / 0, wait=1, max_messages=1, retry_delay=60)

        assert consumer.get_next_message() is None
        assert counts(consumer)["delayed"] == 1


def test_the_heartbeat_keeps_a_slow_message_leased_past_its_lease(server_factory):
    server = server_factory()
    with (
        Consumer("127.0.0.1", server.port) as consumer,
        Consumer("127.0.0.1", server.port) as other,
        Producer("127.0.0.1", server.port) as producer,
    ):
        producer.add_new_message("slow")
        seen_by_other = []

        def slow_handler(message):
            time.sleep(3)  # well past the 2 s lease
            seen_by_other.append(other.get_next_message())

        consumer.run(slow_handler, wait=1, timeout=2, max_messages=1)

        assert seen_by_other == [None]
        assert other.get_next_message() is None
        assert counts(consumer)["leased"] == 0


def test_the_heartbeat_renews_the_queues_own_lease_when_no_timeout_is_given(server_factory):
    server = server_factory(PENDING_TIMEOUT="2000")
    with (
        Consumer("127.0.0.1", server.port) as consumer,
        Consumer("127.0.0.1", server.port) as other,
        Producer("127.0.0.1", server.port) as producer,
    ):
        producer.add_new_message("slow")
        seen_by_other = []

        def slow_handler(message):
            time.sleep(3)  # well past the server's 2 s lease
            seen_by_other.append(other.get_next_message())

        consumer.run(slow_handler, wait=1, max_messages=1)

        assert seen_by_other == [None]
        assert other.get_next_message() is None


def test_a_stop_event_stops_the_worker(server_factory, caplog):
    caplog.set_level(logging.INFO, logger="clients")
    server = server_factory()
    stop = threading.Event()
    result = []
    with Consumer("127.0.0.1", server.port) as consumer:
        worker = threading.Thread(
            target=lambda: result.append(consumer.run(lambda m: None, wait=1, stop_event=stop))
        )
        worker.start()
        assert wait_for(lambda: "consuming default" in caplog.text)

        stop.set()
        worker.join(timeout=10)

        assert not worker.is_alive()
        assert result == [0]


WORKER = """
import logging, sys, time
from clients import Consumer

logging.basicConfig(level=logging.INFO)

def handler(message):
    sys.stdout.write(f"start {message.id}\\n")
    sys.stdout.flush()
    time.sleep(1.5)
    sys.stdout.write(f"end {message.id}\\n")

with Consumer("127.0.0.1", int(sys.argv[1])) as consumer:
    handled = consumer.run(handler, wait=1)
sys.stdout.write(f"handled {handled}\\n")
"""


def test_sigterm_stops_the_worker_after_the_current_message(server_factory):
    server = server_factory()
    with (
        Consumer("127.0.0.1", server.port) as consumer,
        Producer("127.0.0.1", server.port) as producer,
    ):
        first = producer.add_new_message("first")
        second = producer.add_new_message("second")
        worker = subprocess.Popen(
            [sys.executable, "-c", WORKER, str(server.port)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert worker.stdout.readline() == f"start {first}\n"
            worker.send_signal(signal.SIGTERM)
            out, _ = worker.communicate(timeout=20)
        finally:
            worker.kill()

        assert worker.returncode == 0
        assert out.splitlines() == [f"end {first}", "handled 1"]
        untouched = consumer.get_next_message()
        assert (untouched.id, untouched.attempts) == (second, 1)


def restart_on_the_same_port(server) -> None:
    """Start ``server`` again where it was (the factory's ``start`` picks a new port)."""
    server.process = subprocess.Popen(
        [sys.executable, "-m", "mq_project.cli"],
        cwd=ROOT,
        env={**server.env, "PORT": str(server.port)},
        start_new_session=True,
    )
    server.wait_ready()


def test_the_worker_waits_out_a_server_restart(server_factory, caplog):
    caplog.set_level(logging.WARNING, logger="clients")
    server = server_factory()
    stop = threading.Event()
    seen = []
    with Consumer("127.0.0.1", server.port, backoff=0.05) as consumer:
        worker = threading.Thread(
            target=consumer.run, args=[seen.append], kwargs={"wait": 1, "stop_event": stop}
        )
        worker.start()
        try:
            server.kill()
            assert wait_for(lambda: "polling failed" in caplog.text)
            restart_on_the_same_port(server)
            with Producer("127.0.0.1", server.port) as producer:
                producer.add_new_message("after the restart")
            wait_for(lambda: seen)
        finally:
            stop.set()
            worker.join(timeout=30)

        assert [m.payload for m in seen] == ["after the restart"]


@pytest.mark.parametrize(
    "call",
    [
        lambda port: Consumer("127.0.0.1", port, retries=2, backoff=0.05).get_next_message(),
        lambda port: Producer("127.0.0.1", port, retries=2, backoff=0.05).add_new_message(1),
    ],
    ids=["consumer", "producer"],
)
def test_no_server_raises_a_connection_error_after_bounded_retries(call, retry_log):
    started = time.monotonic()

    with pytest.raises(QueueConnectionError) as raised:
        call(free_port())

    assert time.monotonic() - started < 3
    assert raised.value.status is None
    assert raised.value.code == "connection_error"
    assert isinstance(raised.value, QueueError)
    assert len(retry_log()) == 2
