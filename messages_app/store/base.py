"""What every store shares: statements built from the model and the state rules.

The WHERE clauses of the raw statements are compiled from ``states`` once per
process (``states.compile_where``, with ``Param`` placeholders), and the insert
takes its columns and defaults from ``Message._meta``, so a rule or a new
column is written in one place. Compiling costs about half a millisecond, so
it never happens per request: the claim's clause is compiled when the store is
made, each shape of compare-and-set delete the first time it is used.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import NamedTuple, TypeVar

from django.db import connection, models, transaction
from django.db.models import Count, OuterRef, Q, Subquery

from .. import counters, states
from ..models import CounterBucket, Message, Queue
from ..states import Param

TABLE = Message._meta.db_table
# The head of a queue is a range of this index read in id order (models.Message.Meta).
CLAIM_INDEX = "message_claim_idx"
# The columns an insert sets itself; every other column takes the model's default.
GIVEN = ("queue_id", "payload", "created_at", "visible_at")
# A batch done groups its entries by lease token, a term per token; SQLite
# refuses a chain of OR deeper than 1000, so a statement takes at most this many.
TERMS_PER_DELETE = 250

QUEUE = Param("queue", models.CharField())
NOW = Param("now", models.DateTimeField())
LIMIT = Param("limit", models.IntegerField())

# The claim's new lease: the given token, marked when the previous lease ran out
# (counters.EXPIRED_MARK), so the claim counts the expiries it observes.
SET_LEASE = "lease = CASE WHEN lease IS NULL THEN %s ELSE %s END"
COUNTER_TABLE = CounterBucket._meta.db_table
COUNTER_KEY = ("queue", "span", "start")
# Rows per upsert statement: SQLite takes at most 32766 parameters.
COUNTER_ROWS_PER_STATEMENT = 200

T = TypeVar("T")


class ClaimedRow(NamedTuple):
    id: int
    payload: str  # JSON text
    attempts: int
    lease: str  # the token given, or its counters.after_expiry when the last lease ran out


@dataclass(frozen=True)
class Counts:
    ready: int = 0
    delayed: int = 0
    leased: int = 0
    dead: int = 0
    oldest_created_at: datetime | None = None


def from_db(field: models.Field, value):
    """A column's value read by a raw statement, as the ORM would give it
    (on SQLite a datetime comes back as text, on MariaDB without its zone)."""
    column = field.get_col(field.model._meta.db_table)
    converters = connection.ops.get_db_converters(column) + column.get_db_converters(connection)
    for convert in converters:
        value = convert(value, column, connection)
    return value


class ChangeFeed:
    """How the long-poll watcher learns that another process changed a queue."""

    # True when the last ``changes()`` saw some change without knowing the queue.
    everything_changed = False

    def changes(self) -> set[str]:
        """Wait at most a tick; the queues known to have changed meanwhile."""
        raise NotImplementedError

    def close(self) -> None:
        pass


class Store:
    """The statements of one database; one instance per server process."""

    def __init__(self):
        # Deliverable messages of one queue, oldest first: states.ready, and
        # the claim's pick of them (``pick_params`` its parameters).
        self.ready_where, self._ready_params = states.compile_where(
            Message, Q(queue_id=QUEUE) & states.ready(NOW, LIMIT), connection
        )
        self.pick_statement = (
            f"SELECT id FROM {TABLE} WHERE {self.ready_where} ORDER BY id LIMIT %s"
        )
        # The long-poll watcher's looks at a queue, several a second per waiting
        # queue: whether it has a deliverable message, else the earliest end of
        # a lease or delay (leased or delayed, with a delivery left).
        self._deliverable_statement = f"SELECT 1 FROM {TABLE} WHERE {self.ready_where} LIMIT 1"
        later = Q(queue_id=QUEUE, attempts__lt=LIMIT) & (states.leased(NOW) | states.delayed(NOW))
        later_where, self._later_params = states.compile_where(Message, later, connection)
        self._later_statement = (
            f"SELECT visible_at FROM {TABLE} WHERE {later_where} ORDER BY visible_at LIMIT 1"
        )
        self._held_where = lru_cache(maxsize=256)(self._compile_held)
        # Every column but the id, as the model has them now.
        self.insert_fields = [f for f in Message._meta.concrete_fields if not f.primary_key]
        self.insert_columns = ", ".join(field.column for field in self.insert_fields)
        # The defaults of the columns an insert does not set: the constant ones
        # prepared once, the others (callables) at each insert.
        defaulted = [f for f in self.insert_fields if f.attname not in GIVEN]
        self._constant_defaults = {
            f.attname: f.get_db_prep_save(f.get_default(), connection)
            for f in defaulted
            if not callable(f.default)
        }
        self._callable_defaults = [f for f in defaulted if callable(f.default)]

    def close(self) -> None:
        """Stop what the store runs in the background."""

    # The hot path: one statement (or one short transaction) each.

    def claim(
        self, queue: str, count: int, lease: str, now: datetime, lease_end: datetime, limit: int
    ) -> list[ClaimedRow]:
        """Lease up to ``count`` deliverable messages of ``queue``, oldest first."""
        adapt = connection.ops.adapt_datetimefield_value
        pick = [*self.pick_params(queue, adapt(now), limit), count]
        leases = [lease, counters.after_expiry(lease)]
        rows = [ClaimedRow._make(row) for row in self._claim(pick, leases, adapt(lease_end))]
        return sorted(rows)  # by id, the first field (and unique)

    def pick_params(self, queue: str, now, limit: int) -> list:
        """The parameters of ``ready_where`` (``now`` adapted for the database)."""
        return states.bind(self._ready_params, {"queue": queue, "now": now, "limit": limit})

    def _claim(self, pick: list, leases: list[str], lease_end) -> list[tuple]:
        """Run the claim: ``pick`` are the parameters of ``pick_statement``,
        ``leases`` the parameters of ``SET_LEASE``; the rows leased as (id,
        payload, attempts, lease)."""
        raise NotImplementedError

    def insert(
        self, queue: str, payloads: list[str], created_at: datetime, visible_at: datetime
    ) -> list[int]:
        """Store the messages in one statement; their ids, in the order of ``payloads``."""
        adapt = connection.ops.adapt_datetimefield_value
        values = {
            **self._defaults(),
            "queue_id": queue,
            "created_at": adapt(created_at),
            "visible_at": adapt(visible_at),
        }
        rows = self.write(*self._insert_statement(payloads, values))
        # Ids are handed out in row order; RETURNING's order is not promised.
        return sorted(row[0] for row in rows)

    def _defaults(self) -> dict:
        return {
            **self._constant_defaults,
            **{
                field.attname: field.get_db_prep_save(field.get_default(), connection)
                for field in self._callable_defaults
            },
        }

    def _insert_statement(self, payloads: list[str], values: dict) -> tuple[str, list]:
        row = "(" + ", ".join(["%s"] * len(self.insert_fields)) + ")"
        statement = (
            f"INSERT INTO {TABLE} ({self.insert_columns}) "
            f"VALUES {', '.join([row] * len(payloads))} RETURNING id"
        )
        params = [
            payload if field.attname == "payload" else values[field.attname]
            for payload in payloads
            for field in self.insert_fields
        ]
        return statement, params

    def delete_held(self, queue: str, entries: list[tuple[int, str | None]], now: datetime):
        """Delete each message ``(id, lease)`` whose delivery the caller holds
        (``states.held``; ``lease`` None for "any unexpired lease"); the ids
        deleted, each with its stored lease token (for the processing time)."""
        by_lease: dict[str | None, list[int]] = {}
        for message_id, lease in entries:
            by_lease.setdefault(lease, []).append(message_id)
        groups = list(by_lease.items())
        chunks = [groups[i : i + TERMS_PER_DELETE] for i in range(0, len(groups), TERMS_PER_DELETE)]

        def delete() -> dict[int, str]:
            if len(chunks) == 1:
                return dict(self.write(*self._delete_statement(queue, chunks[0], now)))
            deleted: dict[int, str] = {}
            with transaction.atomic(), connection.cursor() as cursor:
                for chunk in chunks:
                    cursor.execute(*self._delete_statement(queue, chunk, now))
                    deleted |= dict(cursor.fetchall())
            return deleted

        return self.retrying(delete)

    def _delete_statement(self, queue: str, groups: list[tuple[str | None, list[int]]], now):
        """The compare-and-set delete of ``groups`` (lease, ids), and its parameters."""
        shape = tuple((len(ids), lease is not None) for lease, ids in groups)
        where, params = self._held_where(shape)
        values = {"queue": queue, "now": connection.ops.adapt_datetimefield_value(now)}
        for g, (lease, ids) in enumerate(groups):
            values[f"lease{g}"] = lease
            values.update((f"id{g}.{i}", message_id) for i, message_id in enumerate(ids))
        return f"DELETE FROM {TABLE} WHERE {where} RETURNING id, lease", states.bind(params, values)

    @staticmethod
    def _compile_held(shape: tuple[tuple[int, bool], ...]) -> tuple[str, list]:
        """``states.held`` for groups of ids, each with a lease token or none."""
        all_ids, held = [], Q()
        for g, (count, by_token) in enumerate(shape):
            ids = [Param(f"id{g}.{i}", models.BigIntegerField()) for i in range(count)]
            lease = Param(f"lease{g}", models.CharField()) if by_token else None
            all_ids += ids
            held |= Q(id__in=ids) & states.held(NOW, lease)
        rule = Q(queue_id=QUEUE, id__in=all_ids) & held
        return states.compile_where(Message, rule, connection)

    def write(self, statement: str, params: list) -> list[tuple]:
        """Run one write statement, atomic by itself; the rows it returns."""
        with connection.cursor() as cursor:
            cursor.execute(statement, params)
            return cursor.fetchall()

    def retrying(self, transaction_function: Callable[[], T]) -> T:
        """Run a short write transaction (again, where the database may pick it
        as a deadlock victim)."""
        return transaction_function()

    # Long polling and housekeeping.

    def change_feed(self) -> ChangeFeed:
        raise NotImplementedError

    def notify(self, queue: str) -> None:
        """A message of ``queue`` became deliverable: tell other processes' feeds."""

    def deleted(self, count: int) -> None:
        """``count`` messages were deleted (housekeeping may follow)."""

    def unavailable(self) -> None:
        """A request could not use the database: drop connections that died with it."""

    # The counters (``counters``): upserts into their buckets.

    def add_counters(self, rows: list[tuple[tuple[str, int, datetime], list]]) -> None:
        """Add each row of ``counters.ADDED`` numbers to its bucket (queue, span, start)."""
        self._upsert(rows, added=counters.ADDED)

    def set_depth(self, rows: list[tuple[tuple[str, int, datetime], list]]) -> None:
        """Set each bucket's ``counters.DEPTH`` columns to a row's numbers."""
        self._upsert(rows, replaced=counters.DEPTH)

    def _upsert(self, rows, added=(), replaced=()) -> None:
        given = (*added, *replaced)
        # Every column, so that a new bucket has no NULL counter.
        columns = (*COUNTER_KEY, *counters.ADDED, *counters.DEPTH)
        names = ", ".join(connection.ops.quote_name(c) for c in columns)
        adapt = connection.ops.adapt_datetimefield_value
        tail = self.upsert_tail(added, replaced)

        def values(key, numbers) -> list:
            queue, span, start = key
            by_column = dict(zip(given, numbers, strict=True))
            return [queue, span, adapt(start), *(by_column.get(c, 0) for c in counters.ADDED)] + [
                by_column.get(c) for c in counters.DEPTH
            ]

        def upsert() -> None:
            with transaction.atomic(), connection.cursor() as cursor:
                for i in range(0, len(rows), COUNTER_ROWS_PER_STATEMENT):
                    chunk = rows[i : i + COUNTER_ROWS_PER_STATEMENT]
                    marks = "(" + ", ".join(["%s"] * len(columns)) + ")"
                    cursor.execute(
                        f"INSERT INTO {COUNTER_TABLE} ({names}) "
                        f"VALUES {', '.join([marks] * len(chunk))} {tail}",
                        [value for key, numbers in chunk for value in values(key, numbers)],
                    )

        self.retrying(upsert)

    def upsert_tail(self, added: tuple[str, ...], replaced: tuple[str, ...]) -> str:
        """The end of an INSERT into the counter table: on a bucket already
        there, add the ``added`` columns and overwrite the ``replaced`` ones."""
        quote = connection.ops.quote_name
        sets = [f"{quote(c)} = {COUNTER_TABLE}.{quote(c)} + excluded.{quote(c)}" for c in added]
        sets += [f"{quote(c)} = excluded.{quote(c)}" for c in replaced]
        key = ", ".join(quote(c) for c in COUNTER_KEY)
        return f"ON CONFLICT ({key}) DO UPDATE SET {', '.join(sets)}"

    # Counts, from index ranges: a million stored messages must not mean a
    # million rows read.

    def deliverable(self, queue: str, now: datetime, limit: int) -> bool:
        """Whether ``queue`` has a message a claim would take now."""
        params = self.pick_params(queue, connection.ops.adapt_datetimefield_value(now), limit)
        with connection.cursor() as cursor:
            cursor.execute(self._deliverable_statement, params)
            return cursor.fetchone() is not None

    def next_visible_at(self, queue: str, now: datetime, limit: int) -> datetime | None:
        """When ``queue`` next has a deliverable message: ``now`` if it has one,
        else the end of the earliest lease or delay, else None."""
        if self.deliverable(queue, now, limit):
            return now
        adapted = connection.ops.adapt_datetimefield_value(now)
        values = {"queue": queue, "now": adapted, "limit": limit}
        with connection.cursor() as cursor:
            cursor.execute(self._later_statement, states.bind(self._later_params, values))
            row = cursor.fetchone()
        return None if row is None else from_db(Message._meta.get_field("visible_at"), row[0])

    def counts(self, queues: list[Queue], now: datetime) -> dict[str, Counts]:
        """Messages per state in each of ``queues``, and the oldest one's time, in a
        fixed number of queries."""
        names = [q.name for q in queues]
        messages = Message.objects.order_by().filter(queue_id__in=names)
        # Every message, by queue and dead flag: an index-only count (message_claim_idx).
        by_flag = {
            (row["queue_id"], row["dead"]): row["n"]
            for row in messages.values("queue_id", "dead").annotate(n=Count("*"))
        }
        # Leased and delayed: the few not deliverable yet (a range of
        # message_visible_idx; on PostgreSQL, which lacks it, a scan of the queue).
        # Written as their union, alive and visible_at > now: SQLite cannot seek
        # the index for "leased OR delayed" and read a million entries instead
        # (1.1 s against 9 ms at a million ready messages).
        later = {
            row["queue_id"]: row
            for row in messages.filter(states.ALIVE, visible_at__gt=now)
            .values("queue_id")
            .annotate(
                leased=Count("id", filter=states.leased(now)),
                delayed=Count("id", filter=states.delayed(now)),
            )
        }
        # Spent (dead by the clock): only queues with a limit can have any.
        limited = [q.name for q in queues if q.effective_max_attempts() < states.UNLIMITED_ATTEMPTS]
        spent = dict(
            messages.filter(queue_id__in=limited)
            .spent(now)
            .values("queue_id")
            .annotate(n=Count("*"))
            .values_list("queue_id", "n")
            if limited
            else []
        )
        # The oldest message that is not dead: the first of each queue's range of
        # message_claim_idx (stored alive) that is not spent either.
        limit = states.max_attempts_expression(OuterRef("max_attempts"))
        first_alive = (
            Message.objects.alive()
            .filter(queue_id=OuterRef("name"))
            .exclude(states.spent(now, limit))
            .order_by("id")
        )
        first_ids = (
            Queue.objects.filter(name__in=names)
            .annotate(first_id=Subquery(first_alive.values("id")[:1]))
            .values_list("first_id", flat=True)
        )
        oldest = dict(
            Message.objects.filter(id__in=[i for i in first_ids if i is not None]).values_list(
                "queue_id", "created_at"
            )
        )
        counts = {}
        for name in names:
            leased = later.get(name, {}).get("leased", 0)
            delayed = later.get(name, {}).get("delayed", 0)
            dead_by_clock = spent.get(name, 0)
            counts[name] = Counts(
                ready=by_flag.get((name, False), 0) - leased - delayed - dead_by_clock,
                delayed=delayed,
                leased=leased,
                dead=by_flag.get((name, True), 0) + dead_by_clock,
                oldest_created_at=oldest.get(name),
            )
        return counts
