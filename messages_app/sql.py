"""The statements the ORM cannot express, or makes slow on the hot path.

The claim picks the oldest deliverable messages of a queue and leases them,
atomically; each backend gets the shortest safe form it supports:

- PostgreSQL: one ``UPDATE ... RETURNING`` over a ``FOR UPDATE SKIP LOCKED``
  pick, so concurrent claimers skip each other's rows instead of waiting.
- MariaDB: no ``UPDATE ... RETURNING``, so a ``SELECT ... FOR UPDATE SKIP
  LOCKED`` and an ``UPDATE`` of the picked ids in one short transaction.
- SQLite: one ``UPDATE ... RETURNING`` inside an IMMEDIATE transaction; SQLite
  has a single writer, so nothing can claim the same row in between.

Sending and acknowledging, one message or a batch, are one statement each: an
``INSERT ... RETURNING`` and a compare-and-set ``DELETE ... RETURNING``, with a
placeholder per value on SQLite and MariaDB and arrays on PostgreSQL (see
``_INSERT_POSTGRESQL``); on SQLite and MariaDB a batch ack naming more than
``_TERMS_PER_DELETE`` distinct leases takes several, in one transaction.
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
                cursor.execute(_MARIADB_LEASE % _marks(ids), [lease, end, *ids])
        return [(id_, payload, attempts + 1) for id_, payload, attempts in rows]

    return _retrying_deadlocks(claim)


# InnoDB's "Deadlock found when trying to get lock".
_DEADLOCK = 1213
_DEADLOCK_TRIES = 5


def _retrying_deadlocks(transaction_function: Callable[[], T]) -> T:
    """Run a short transaction, again if MariaDB chose it as a deadlock victim.

    Row locks taken through secondary indexes (claims and acks on one
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
    VALUES {{rows}} RETURNING id
"""
_ROW = "(%s, %s, %s, %s, NULL, 0, %s)"

# The caller holds a delivery while the message is alive and leased, and either
# the caller's lease token is the current one (even run out, as long as nobody
# claimed the message since) or, sent without a token, the lease has not run out.
_DELETE_HELD = f"""
    DELETE FROM {TABLE}
    WHERE queue_id = %s AND dead = %s AND lease IS NOT NULL AND id IN ({{ids}}) AND ({{held}})
    RETURNING id
"""
_HELD_BY_TOKEN = "(id IN ({ids}) AND lease = %s)"
_HELD_BY_CLOCK = "(id IN ({ids}) AND visible_at > %s)"
# One term per lease token; SQLite refuses a chain of OR deeper than 1000.
_TERMS_PER_DELETE = 250

# psycopg turns %s into $n in Python, and remembers the result only for up to 50
# parameters: a 100-row VALUES list cost ~3 ms per statement. So PostgreSQL gets
# the same two statements with arrays, a handful of parameters whatever the size.
_INSERT_POSTGRESQL = f"""
    INSERT INTO {TABLE} (queue_id, payload, created_at, visible_at, lease, attempts, dead)
    SELECT %s, payload, %s, %s, NULL, 0, %s
    FROM unnest(%s::text[]) WITH ORDINALITY AS given(payload, n) ORDER BY n
    RETURNING id
"""
_DELETE_HELD_POSTGRESQL = f"""
    DELETE FROM {TABLE}
    WHERE queue_id = %s AND dead = %s AND lease IS NOT NULL AND id = ANY(%s) AND (
        (id, lease) IN (SELECT * FROM unnest(%s::bigint[], %s::text[]))
        OR (id = ANY(%s) AND visible_at > %s)
    )
    RETURNING id
"""


def _marks(values: list) -> str:
    return ", ".join(["%s"] * len(values))


def _one_write():
    """A single statement is atomic by itself; SQLite still gets a transaction,
    so that it takes its turn on the writer lock (mq_project/sqlite_backend)."""
    return transaction.atomic() if connection.vendor == "sqlite" else nullcontext()


def insert_messages(
    queue: str, payloads: list[str], created_at: datetime, visible_at: datetime
) -> list[int]:
    """Store the messages in one statement; their ids, in the order of ``payloads``."""
    adapt = connection.ops.adapt_datetimefield_value
    created, visible = adapt(created_at), adapt(visible_at)
    if connection.vendor == "postgresql":
        statement, params = _INSERT_POSTGRESQL, [queue, created, visible, False, payloads]
    else:
        statement = _INSERT.format(rows=", ".join([_ROW] * len(payloads)))
        params = [value for p in payloads for value in (queue, p, created, visible, False)]
    with _one_write(), connection.cursor() as cursor:
        cursor.execute(statement, params)
        # Ids are handed out in row order; RETURNING's order is not promised.
        return sorted(row[0] for row in cursor.fetchall())


def delete_held(queue: str, entries: list[tuple[int, str | None]], now: datetime) -> set[int]:
    """Delete each message ``(id, lease)`` whose delivery the caller holds, with
    ``lease`` None for "any unexpired lease"; return the ids deleted."""
    if connection.vendor == "postgresql":
        return _delete_held_postgresql(queue, entries, now)
    by_lease: dict[str | None, list[int]] = {}
    for message_id, lease in entries:
        by_lease.setdefault(lease, []).append(message_id)
    groups = list(by_lease.items())
    chunks = [groups[i : i + _TERMS_PER_DELETE] for i in range(0, len(groups), _TERMS_PER_DELETE)]

    def delete() -> set[int]:
        deleted: set[int] = set()
        with _one_write() if len(chunks) == 1 else transaction.atomic():
            for chunk in chunks:
                deleted |= _delete_held(queue, chunk, now)
        return deleted

    return _retrying_deadlocks(delete)


def _delete_held(queue: str, groups: list[tuple[str | None, list[int]]], now: datetime) -> set[int]:
    clock = connection.ops.adapt_datetimefield_value(now)
    all_ids, terms, term_params = [], [], []
    for lease, ids in groups:
        all_ids += ids
        term = _HELD_BY_CLOCK if lease is None else _HELD_BY_TOKEN
        terms.append(term.format(ids=_marks(ids)))
        term_params += [*ids, clock if lease is None else lease]
    statement = _DELETE_HELD.format(ids=_marks(all_ids), held=" OR ".join(terms))
    with connection.cursor() as cursor:
        cursor.execute(statement, [queue, False, *all_ids, *term_params])
        return {row[0] for row in cursor.fetchall()}


def _delete_held_postgresql(
    queue: str, entries: list[tuple[int, str | None]], now: datetime
) -> set[int]:
    by_token = [(message_id, lease) for message_id, lease in entries if lease is not None]
    by_clock = [message_id for message_id, lease in entries if lease is None]
    params = [
        queue,
        False,
        [message_id for message_id, _ in entries],
        [message_id for message_id, _ in by_token],
        [lease for _, lease in by_token],
        by_clock,
        now,
    ]
    with connection.cursor() as cursor:
        cursor.execute(_DELETE_HELD_POSTGRESQL, params)
        return {row[0] for row in cursor.fetchall()}
