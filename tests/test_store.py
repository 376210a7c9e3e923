"""The store's raw statements follow the model: a column added to ``Message``
with a default needs no change to any statement (issue: the insert once listed
its columns by hand, and every send failed with a NOT NULL error)."""

import pytest
from django.db import connection, models, transaction

from messages_app import domain, runtime
from messages_app.models import Message, Queue


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
