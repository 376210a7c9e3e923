"""The claim finds the oldest deliverable message of a queue through
``message_claim_idx`` (queue, dead, id): a range scan that is already in id
order, so no table scan and no sort, however large the backlog."""

import pytest
from django.db import connection
from django.utils import timezone

from messages_app import runtime
from messages_app.models import Message, Queue
from messages_app.store.base import TABLE

pytestmark = pytest.mark.django_db

QUEUE = "target"
FOREVER = 2**31 - 1


@pytest.fixture
def backlog():
    """A big backlog on another queue and old dead letters on this one, ahead of the
    few ready messages: the case the index is for. On a small, uniform table the
    PostgreSQL planner rightly prefers walking the primary key (the first row it
    reads is likely a match) and ``enable_seqscan = off`` does not change that, so
    the test gives it data where only the index is cheap, and fresh statistics."""
    Queue.objects.bulk_create([Queue(name="busy"), Queue(name=QUEUE)])
    Message.objects.bulk_create(Message(queue_id="busy", payload="1") for _ in range(2000))
    Message.objects.bulk_create(Message(queue_id=QUEUE, payload="1", dead=True) for _ in range(500))
    Message.objects.bulk_create(Message(queue_id=QUEUE, payload="1") for _ in range(20))
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            # Inside the test's transaction: the statistics are rolled back with the rows.
            cursor.execute(f"ANALYZE {TABLE}")


def pick_params() -> list:
    """The pick's parameters, as the store's claim builds them (one message)."""
    return [*runtime.current().store.pick_params(QUEUE, timezone.now(), FOREVER), 1]


def explain(sql: str, params: list) -> list[tuple]:
    prefix = "EXPLAIN QUERY PLAN " if connection.vendor == "sqlite" else "EXPLAIN "
    with connection.cursor() as cursor:
        cursor.execute(prefix + sql, params)
        return cursor.fetchall()


def check_sqlite() -> None:
    # The statement run names its index (INDEXED BY): without statistics SQLite
    # would pick message_visible_idx and sort.
    params = ["lease", "other", timezone.now(), *pick_params()]
    plan = " | ".join(row[-1] for row in explain(runtime.current().store.claim_statement, params))
    assert "USING INDEX message_claim_idx (queue_id=? AND dead=?)" in plan, plan
    assert "TEMP B-TREE" not in plan, plan  # no sort: the index is in id order


def check_postgresql() -> None:
    store = runtime.current().store
    statement = [store.claim_statement, [*pick_params(), "lease", "other", timezone.now()]]
    for sql, params in [(store.pick_statement, pick_params()), statement]:
        plan = "\n".join(row[0] for row in explain(sql, params))
        assert "Index Scan using message_claim_idx" in plan, plan
        assert "Sort" not in plan, plan
        assert f"Seq Scan on {TABLE}" not in plan, plan


def check_mariadb() -> None:
    for sql in [runtime.current().store.pick_statement]:
        with connection.cursor() as cursor:
            cursor.execute("EXPLAIN " + sql, pick_params())
            columns = [c[0] for c in cursor.description]
            (row,) = [dict(zip(columns, r, strict=True)) for r in cursor.fetchall()]
        assert row["key"] == "message_claim_idx", row
        assert row["type"] in ("ref", "range"), row
        assert "filesort" not in (row["Extra"] or ""), row


def test_the_claim_reads_a_range_of_the_claim_index_in_id_order(backlog):
    # One test for whichever database the suite runs on (CI runs it on all three).
    {"sqlite": check_sqlite, "postgresql": check_postgresql, "mysql": check_mariadb}[
        connection.vendor
    ]()
