"""The statements the ORM cannot express, or makes slow on the hot path.

The claim picks the oldest deliverable messages of a queue and leases them,
atomically; each backend gets the shortest safe form it supports:

- PostgreSQL: one ``UPDATE ... RETURNING`` over a ``FOR UPDATE SKIP LOCKED``
  pick, so concurrent claimers skip each other's rows instead of waiting.
- MariaDB: no ``UPDATE ... RETURNING``, so a ``SELECT ... FOR UPDATE SKIP
  LOCKED`` and an ``UPDATE`` of the picked ids in one short transaction.
- SQLite: one ``UPDATE ... RETURNING`` inside an IMMEDIATE transaction; SQLite
  has a single writer, so nothing can claim the same row in between.

Sending and acknowledging are one plain statement each (``INSERT ...
RETURNING`` and a compare-and-set ``DELETE``), the same on every backend.
Nothing else runs inside these transactions.
"""

from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from django.db import OperationalError, connection, transaction

from .models import Message

TABLE = Message._meta.db_table
T = TypeVar("T")

# Rows that can be delivered now, oldest first: ready, delay over, or lease run out.
_DELIVERABLE = """
    WHERE queue_id = %s AND dead = %s AND visible_at <= %s AND attempts < %s
    ORDER BY id LIMIT %s
"""
_PICK = f"SELECT id FROM {TABLE} {_DELIVERABLE}"
# The head of the queue is a range of message_claim_idx read in id order. With
# no statistics SQLite would rather range over message_visible_idx and sort
# every deliverable row (a million, with a backlog); MariaDB likewise.
_CLAIM_INDEX = "message_claim_idx"

_POSTGRESQL = f"""
    WITH picked AS ({_PICK} FOR UPDATE SKIP LOCKED)
    UPDATE {TABLE} AS m SET lease = %s, visible_at = %s, attempts = m.attempts + 1
    FROM picked WHERE m.id = picked.id
    RETURNING m.id, m.payload, m.attempts
"""

_SQLITE = f"""
    UPDATE {TABLE} SET lease = %s, visible_at = %s, attempts = attempts + 1
    WHERE id IN (SELECT id FROM {TABLE} INDEXED BY {_CLAIM_INDEX} {_DELIVERABLE})
    RETURNING id, payload, attempts
"""

_MARIADB_PICK = f"""
    SELECT id, payload, attempts FROM {TABLE} FORCE INDEX ({_CLAIM_INDEX})
    {_DELIVERABLE} FOR UPDATE SKIP LOCKED
"""
_MARIADB_LEASE = (
    f"UPDATE {TABLE} SET lease = %%s, visible_at = %%s, attempts = attempts + 1 WHERE id IN (%s)"
)


@dataclass(frozen=True)
class ClaimedRow:
    id: int
    payload: str
    attempts: int


def _claim_postgresql(pick: list, lease: str, end: object) -> list[tuple]:
    # One statement: in autocommit it is its own transaction.
    with connection.cursor() as cursor:
        cursor.execute(_POSTGRESQL, [*pick, lease, end])
        return cursor.fetchall()


def _claim_sqlite(pick: list, lease: str, end: object) -> list[tuple]:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_SQLITE, [lease, end, *pick])
        return cursor.fetchall()


def _claim_mariadb(pick: list, lease: str, end: object) -> list[tuple]:
    def claim() -> list[tuple]:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(_MARIADB_PICK, pick)
            rows = cursor.fetchall()
            if rows:
                ids = [row[0] for row in rows]
                cursor.execute(_MARIADB_LEASE % ", ".join(["%s"] * len(ids)), [lease, end, *ids])
        return [(id_, payload, attempts + 1) for id_, payload, attempts in rows]

    return retrying_deadlocks(claim)


# InnoDB's "Deadlock found when trying to get lock".
_DEADLOCK = 1213
_DEADLOCK_TRIES = 5


def retrying_deadlocks(transaction_function: Callable[[], T]) -> T:
    """Run a short transaction, again if MariaDB chose it as a deadlock victim.

    Row locks taken through secondary indexes (claims and batch acks on one
    queue) can deadlock in InnoDB; the victim's transaction is rolled back
    whole, so running it again is safe. Elsewhere this just runs it once.
    """
    for attempt in range(1, _DEADLOCK_TRIES + 1):
        try:
            return transaction_function()
        except OperationalError as exc:
            retry = connection.vendor == "mysql" and not connection.in_atomic_block
            if not retry or exc.args[0] != _DEADLOCK or attempt == _DEADLOCK_TRIES:
                raise


_CLAIMS = {"postgresql": _claim_postgresql, "sqlite": _claim_sqlite, "mysql": _claim_mariadb}


def claim_rows(
    queue: str, count: int, lease: str, now: datetime, lease_end: datetime, max_attempts: int
) -> list[ClaimedRow]:
    """Lease up to ``count`` deliverable messages of ``queue``, oldest first."""
    adapt = connection.ops.adapt_datetimefield_value
    pick = [queue, False, adapt(now), max_attempts, count]
    rows = _CLAIMS[connection.vendor](pick, lease, adapt(lease_end))
    return sorted((ClaimedRow(*row) for row in rows), key=lambda row: row.id)


_INSERT = f"""
    INSERT INTO {TABLE} (queue_id, payload, created_at, visible_at, lease, attempts, dead)
    VALUES (%s, %s, %s, %s, NULL, 0, %s)
    RETURNING id
"""

_DELETE_HELD = f"DELETE FROM {TABLE} WHERE id = %s AND queue_id = %s AND dead = %s AND lease "
_BY_TOKEN = _DELETE_HELD + "= %s"
_BY_CLOCK = _DELETE_HELD + "IS NOT NULL AND visible_at > %s"


def _one_write():
    """A single statement is atomic by itself; SQLite still gets a transaction,
    so that it takes its turn on the writer lock (mq_project/sqlite_backend)."""
    return transaction.atomic() if connection.vendor == "sqlite" else nullcontext()


def insert_message(queue: str, payload: str, created_at: datetime, visible_at: datetime) -> int:
    adapt = connection.ops.adapt_datetimefield_value
    with _one_write(), connection.cursor() as cursor:
        cursor.execute(_INSERT, [queue, payload, adapt(created_at), adapt(visible_at), False])
        return cursor.fetchone()[0]


def delete_held(queue: str, message_id: int, lease: str | None, now: datetime) -> bool:
    """Delete the message if the caller holds its delivery: the lease ``lease``
    (even run out, if nobody claimed it since), or without a token any
    unexpired lease. Returns whether it was deleted."""
    if lease is None:
        statement, last = _BY_CLOCK, connection.ops.adapt_datetimefield_value(now)
    else:
        statement, last = _BY_TOKEN, lease
    with _one_write(), connection.cursor() as cursor:
        cursor.execute(statement, [message_id, queue, False, last])
        return cursor.rowcount == 1
