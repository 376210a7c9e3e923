"""The store's raw statements follow the model: a column added to ``Message``
with a default needs no change to any statement (issue: the insert once listed
its columns by hand, and every send failed with a NOT NULL error)."""

import sqlite3
from datetime import timedelta

import pytest
from django.db import connection, models, transaction
from django.utils import timezone

from messages_app import domain, runtime
from messages_app.models import Message, Queue
from messages_app.store import sqlite


@pytest.fixture
def priority_column(transactional_db):
    """A column ``priority`` (default 7) added to the message table and the
    model, as a migration adding a field would; removed afterwards."""
    field = models.IntegerField(default=7)
    Message.add_to_class("priority", field)
    with connection.schema_editor() as editor:
        editor.add_field(Message, field)
    runtime.reset()  # a process started after the migration
    yield field
    with connection.schema_editor() as editor:
        editor.remove_field(Message, field)
    Message._meta.local_fields.remove(field)
    Message._meta._expire_cache()
    delattr(Message, "priority")
    runtime.reset()


def test_the_insert_names_every_column_of_the_model_but_the_id(db):
    store = runtime.current().store

    columns = [field.column for field in Message._meta.concrete_fields if not field.primary_key]
    assert store.insert_columns == ", ".join(columns)


def test_a_new_column_with_a_default_is_filled_by_single_and_batch_sends(priority_column, api):
    one = api.send("single")
    many = api.post("/messages/new", {"payloads": ["a", "b"]}).json()["ids"]

    stored = dict(Message.objects.values_list("id", "priority"))
    assert stored == {one: 7, many[0]: 7, many[1]: 7}
    message = api.next().json()
    assert (message["id"], message["payload"]) == (one, "single")
    assert api.done(message["id"], message["lease"]).status_code == 200


def test_a_write_outside_a_transaction_that_fails_is_rolled_back_and_the_next_goes_through(
    transactional_db, api
):
    """Outside any transaction the hot path's writes run on their own (on SQLite
    straight on the sqlite3 connection): a send to a queue whose row went away
    fails at its commit (a foreign key), is rolled back, and the send stores the
    queue again and goes through; so do the claim and the done after it."""
    api.send("before", queue="jobs")
    Queue.objects.filter(name="jobs").delete()  # as another process deleting the queue

    sent = api.send("after", queue="jobs")

    message = api.next(queue="jobs").json()
    assert (message["id"], message["payload"]) == (sent, "after")
    assert api.done(sent, message["lease"], queue="jobs").status_code == 200
    assert not Message.objects.exists()


def test_a_claim_inside_a_transaction_leaves_its_durability_alone(transactional_db):
    """On PostgreSQL a claim made alone commits without waiting for the disk
    (``synchronous_commit`` off for its own transaction only); inside a larger
    transaction, which may hold a send, it must relax nothing."""
    domain.send("q", '"a"')
    domain.send("q", '"b"')

    def synchronous_commit() -> str | None:
        if connection.vendor != "postgresql":
            return None
        with connection.cursor() as cursor:
            cursor.execute("SHOW synchronous_commit")
            return cursor.fetchone()[0]

    before = synchronous_commit()
    assert domain.next_messages("q")
    assert synchronous_commit() == before
    with transaction.atomic():
        assert domain.next_messages("q")
        assert synchronous_commit() == before


def test_the_watcher_reads_when_a_queue_next_has_a_message(db):
    """The long-poll watcher wakes a waiter when a lease or delay ends at the
    time this raw read gives: the earliest end among the queue's leased and
    delayed messages with a delivery left, or now when one is deliverable."""
    store = runtime.current().store
    now = timezone.now()
    Queue.objects.create(name="jobs")
    Queue.objects.create(name="other")

    def stored(queue="jobs", seconds=0.0, **columns):
        visible_at = now + timedelta(seconds=seconds, microseconds=123)
        Message.objects.create(queue_id=queue, payload='"x"', visible_at=visible_at, **columns)
        return visible_at

    assert store.next_visible_at("jobs", now, 3) is None
    leased = stored(seconds=5, lease="a", attempts=1)
    assert store.next_visible_at("jobs", now, 3) == leased
    delayed = stored(seconds=3)
    spent = stored(seconds=1, lease="b", attempts=3)  # its last delivery, with a limit of 3
    stored(seconds=0.5, dead=True)
    stored("other", seconds=0.2)

    assert store.next_visible_at("jobs", now, 3) == delayed
    assert store.next_visible_at("jobs", now, 4) == spent
    assert not store.deliverable("jobs", now, 3)
    later = now + timedelta(seconds=4)
    assert store.deliverable("jobs", later, 3)
    assert store.next_visible_at("jobs", later, 3) == later


def test_the_sqlite_watcher_is_woken_by_commits_not_by_other_files_beside_the_database(tmp_path):
    """The SQLite feed waits for writes to the database's WAL file: a log
    written in the same directory (the working directory by default) must not
    wake it 50 times a second. On SQLite files of its own, whatever the suite's
    database."""
    database = str(tmp_path / "queue.sqlite3")
    writer = sqlite3.connect(database, isolation_level=None)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("CREATE TABLE t (x)")
    writes = sqlite.watch_wal(database)
    try:
        with open(tmp_path / "server.log", "a") as log:
            for _ in range(20):
                log.write("GET /message/next 204\n")
                log.flush()
        assert writes.read(timeout=200) == []

        writer.execute("INSERT INTO t VALUES (1)")
        assert writes.read(timeout=5000) != []
    finally:
        writes.close()
        writer.close()
