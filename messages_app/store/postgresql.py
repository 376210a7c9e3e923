"""PostgreSQL: the claim is one ``UPDATE ... RETURNING`` over a ``FOR UPDATE
SKIP LOCKED`` pick, so concurrent claimers skip each other's rows instead of
waiting. A batch send or delete passes arrays, whatever the batch's size; a
single one, plain parameters. Long polls hear of other processes' sends
through LISTEN/NOTIFY, and the server vacuums the message table itself, often.
"""

import logging
import select
import threading
import time

from django.conf import settings
from django.db import DatabaseError, connection

from .base import SET_LEASE, TABLE, ChangeFeed, Store

logger = logging.getLogger(__name__)

CHANNEL = "mq_messages"
# The longest a LISTEN wait lasts before the watcher looks at the clock again;
# a NOTIFY ends it at once.
TICK_SECONDS = 0.25


class PostgreSQLStore(Store):
    def __init__(self):
        super().__init__()
        picked = f"picked AS ({self.pick_statement} FOR UPDATE SKIP LOCKED)"
        update = (
            f"UPDATE {TABLE} AS m SET {SET_LEASE}, visible_at = %s, attempts = m.attempts + 1"
            " FROM {} WHERE m.id = picked.id RETURNING m.id, m.payload, m.attempts, m.lease"
        )
        self.claim_statement = f"WITH {picked} " + update.format("picked")
        # A claim that is its own transaction commits without waiting for the
        # disk (synchronous_commit off for that commit only): ~5 ms less per
        # claim on a disk that flushes in 5 ms. A crash may lose the last claims
        # before it; their messages are then delivered again, never lost: a
        # commit that must last (a send, a done) flushes the WAL written before it.
        relaxed = "relaxed AS MATERIALIZED (SELECT set_config('synchronous_commit', 'off', true))"
        self._claim_alone = f"WITH {relaxed}, {picked} " + update.format("picked, relaxed")
        # psycopg turns %s into $n in Python, and remembers the result only for
        # up to 50 parameters: a 100-row VALUES list cost ~3 ms per statement.
        # So the payloads go as one array, a handful of parameters whatever the
        # size. Arrays are bound in binary (%b): psycopg writes an array's text
        # form item by item in Python, quoting each (~1 ms for 100 payloads, ~35 µs
        # in binary; with client-side binding, %b is the same as %s).
        select = ", ".join(
            "payload" if f.attname == "payload" else "%s" for f in self.insert_fields
        )
        self._insert = f"""
            INSERT INTO {TABLE} ({self.insert_columns})
            SELECT {select} FROM unnest(%b::text[]) WITH ORDINALITY AS given(payload, n)
            ORDER BY n RETURNING id
        """
        # states.held for many (id, lease) pairs at once, with arrays for the same reason.
        self._delete_held = f"""
            DELETE FROM {TABLE}
            WHERE queue_id = %s AND dead IN (false) AND lease IS NOT NULL
            AND id = ANY(%b::bigint[]) AND (
                (id, lease) IN (SELECT * FROM unnest(%b::bigint[], %b::text[]))
                OR (id = ANY(%b::bigint[]) AND visible_at > %s)
            )
            RETURNING id, lease
        """
        self.notifier = Notifier()
        self.vacuum = Vacuum()
        self.pool_check = PoolCheck()

    def close(self) -> None:
        self.notifier.close()

    def _claim(self, pick, leases, lease_end):
        # One statement: in autocommit it is its own transaction.
        statement = self.claim_statement if connection.in_atomic_block else self._claim_alone
        with connection.cursor() as cursor:
            cursor.execute(statement, [*pick, *leases, lease_end])
            return cursor.fetchall()

    # One message goes as plain parameters: arrays and unnest cost more, in
    # psycopg and in the server.
    def _insert_statement(self, payloads, values):
        if len(payloads) == 1:
            return super()._insert_statement(payloads, values)
        params = [values[f.attname] for f in self.insert_fields if f.attname != "payload"]
        return self._insert, [*params, payloads]

    def delete_held(self, queue, entries, now):
        if len(entries) == 1:
            return super().delete_held(queue, entries, now)
        by_token = [(message_id, lease) for message_id, lease in entries if lease is not None]
        params = [
            queue,
            [message_id for message_id, _ in entries],
            [message_id for message_id, _ in by_token],
            [lease for _, lease in by_token],
            [message_id for message_id, lease in entries if lease is None],
            now,
        ]
        with connection.cursor() as cursor:
            cursor.execute(self._delete_held, params)
            return dict(cursor.fetchall())

    def change_feed(self) -> ChangeFeed:
        return ListenFeed()

    def notify(self, queue: str) -> None:
        self.notifier.changed(queue)

    def deleted(self, count: int) -> None:
        self.vacuum.deleted(count)

    def unavailable(self) -> None:
        self.pool_check.start()


class ListenFeed(ChangeFeed):
    """LISTEN on a connection of its own; senders NOTIFY the queue's name."""

    def __init__(self):
        import psycopg

        params = connection.settings_dict
        self.conn = psycopg.connect(
            dbname=params["NAME"],
            user=params["USER"] or None,
            password=params["PASSWORD"] or None,
            host=params["HOST"] or None,
            port=params["PORT"] or None,
            autocommit=True,
        )
        self.conn.execute(f"LISTEN {CHANNEL}")

    def changes(self) -> set[str]:
        # Back as soon as a notification arrives, with any that came along. The
        # wait is a select() of our own: psycopg's notifies(timeout=...) wakes
        # every 0.1 s to look at the clock, a third of the watcher's CPU.
        select.select([self.conn], [], [], TICK_SECONDS)
        return {n.payload for n in self.conn.notifies(timeout=0)}

    def close(self) -> None:
        self.conn.close()


class Notifier:
    """Tell other processes' watchers that a queue changed.

    NOTIFY takes a database-wide lock while its transaction commits, so it is
    not sent inside the message's own transaction (that would serialize every
    send); a thread sends one NOTIFY per changed queue, a few ms later."""

    def __init__(self):
        self._lock = threading.Lock()
        self._pending: set[str] = set()
        self._event = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None

    def changed(self, queue: str) -> None:
        with self._lock:
            self._pending.add(queue)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="mq-notifier", daemon=True)
                self._thread.start()
        self._event.set()

    def close(self) -> None:
        self._closed = True
        self._event.set()

    def _run(self) -> None:
        while not self._closed:
            if not self._event.wait(timeout=30):
                continue
            time.sleep(0.002)  # gather the sends of the next few ms into one NOTIFY
            self._event.clear()
            with self._lock:
                queues, self._pending = self._pending, set()
            try:
                with connection.cursor() as cursor:
                    for queue in queues:
                        cursor.execute("SELECT pg_notify(%s, %s)", [CHANNEL, queue])
            except Exception:
                logger.exception(
                    "NOTIFY failed; other processes' long-polls wake at their next check"
                )
            finally:
                # Back to the pool: an idle thread must not keep the database busy.
                connection.close()


class Vacuum:
    """VACUUM the message table after every ``MQ_VACUUM_EVERY`` deletes in this process.

    Every done deletes a row, and a deleted row stays in the table and its
    indexes until VACUUM removes it. Claims read the head of the queue, so they
    step over every dead row there. Autovacuum's defaults visit a table once a
    fifth of it is dead, and at most once a minute per database: for a queue,
    with few live rows and thousands of deletes a second, tens of thousands of
    dead rows pile up at the head and every claim slows down (and this
    machine's PostgreSQL runs with autovacuum off). So a background thread runs
    ``VACUUM`` on the message table, one at a time; 0 turns this off. It leaves
    the table's size alone (``TRUNCATE false``): giving back the empty pages at
    its end locks out every read and write for a moment, flushes the WAL, and
    the next sends grow the table again (1,000 deletes: 1.3 ms CPU and 16 ms
    with it, 0.7 ms and 3 ms without). So it takes no lock that stops reads or
    writes. Nor does it start a parallel worker (``PARALLEL 0``), which
    PostgreSQL does once two of the table's indexes outgrow
    ``min_parallel_index_scan_size`` (512 kB by default: a few tens of thousands
    of messages stored): at a million messages, a vacuum after 1,000 deletes
    cost the database 70 ms of CPU with the worker and 3 ms without.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._deleted = 0
        self._running = False

    def deleted(self, count: int) -> None:
        if not settings.MQ_VACUUM_EVERY:
            return
        with self._lock:
            self._deleted += count
            if self._running or self._deleted < settings.MQ_VACUUM_EVERY:
                return
            self._deleted, self._running = 0, True
        threading.Thread(target=self._vacuum, name="mq-vacuum", daemon=True).start()

    def _vacuum(self) -> None:
        try:
            with connection.cursor() as cursor:
                cursor.execute(f"VACUUM (TRUNCATE false, PARALLEL 0) {TABLE}")
        except DatabaseError as exc:
            logger.warning("could not vacuum the message table: %s", exc)
        finally:
            connection.close()
            with self._lock:
                self._running = False


class PoolCheck:
    """Test the pool's idle connections, in the background, one check at a time.

    A connection the database dropped (a restart, an outage) stays in the pool
    looking idle and healthy, and fails the next request that takes it. Checking
    every connection as it leaves the pool costs a round trip per request; so the
    pool is checked only after a request failed, and the dead connections go
    at once instead of failing one request each after the database is back."""

    def __init__(self):
        self._lock = threading.Lock()
        self._running = False

    def start(self) -> None:
        pool = connection.pool
        if pool is None:
            return
        with self._lock:
            if self._running:
                return
            self._running = True
        threading.Thread(target=self._check, args=[pool], name="mq-pool-check", daemon=True).start()

    def _check(self, pool) -> None:
        try:
            pool.check()
        except Exception:
            logger.exception("could not check the connection pool")
        finally:
            with self._lock:
                self._running = False
