"""Long polling: park a request until its queue may have a message.

Each server process has one ``Waiters`` registry and, while anything waits,
one watcher thread. Waiting requests never query the database in a loop:

- a message sent or given back in this process wakes a waiter of its queue
  directly (``changed``);
- a change made by another process is seen by the watcher through the
  database's own means: SQLite's ``PRAGMA data_version``, PostgreSQL's
  LISTEN/NOTIFY, and on MariaDB (which has neither) a cheap indexed probe a
  few times a second;
- a lease running out or a delay ending is a time the watcher reads from the
  database (``domain.next_visible_at``) and wakes a waiter at.

A woken waiter tries to claim; if it got messages it passes the wake-up on
(there may be more), otherwise it waits again until its deadline.
"""

import logging
import threading
import time
from collections import Counter
from datetime import datetime, timedelta

from django.db import connection
from django.utils import timezone

from . import domain

logger = logging.getLogger(__name__)

CHANNEL = "mq_messages"
# How often the watcher looks for changes: SQLite's data_version is nearly
# free to read, but waking 50 times a second in each process is not (200 idle
# long-polls: 5.4 % of a core at 20 ms, 4.2 % at 50 ms); MariaDB's probe is a
# real (indexed) query. On PostgreSQL a NOTIFY ends the tick at once.
TICK_SECONDS = {"sqlite": 0.05, "postgresql": 0.25, "mysql": 0.1}
# Re-read when the next lease or delay ends at least this often, so a delayed
# message sent by another process is not missed for long.
RECHECK = timedelta(seconds=1)


class Waiters:
    """Requests of this process waiting for a message, by queue."""

    def __init__(self):
        self._lock = threading.Lock()
        self._conditions: dict[str, threading.Condition] = {}
        self._generation: Counter[str] = Counter()
        self._waiting: Counter[str] = Counter()
        self._someone_waits = threading.Event()
        self._watcher: threading.Thread | None = None

    def generation(self, queue: str) -> int:
        with self._lock:
            return self._generation[queue]

    def wait(self, queue: str, generation: int, deadline: float) -> None:
        """Block until ``queue`` is woken after ``generation``, or until ``deadline``
        (``time.monotonic``)."""
        with self._lock:
            self._start_watcher()
            condition = self._conditions.setdefault(queue, threading.Condition(self._lock))
            self._waiting[queue] += 1
            self._someone_waits.set()
            try:
                while self._generation[queue] == generation:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    condition.wait(remaining)
            finally:
                self._waiting[queue] -= 1
                if not self._waiting[queue]:
                    del self._waiting[queue]
                    if not self._waiting:
                        self._someone_waits.clear()

    def wake(self, queue: str) -> None:
        """One waiter of ``queue`` (if any) should try to claim."""
        with self._lock:
            self._generation[queue] += 1
            condition = self._conditions.get(queue)
            if condition is not None:
                condition.notify()

    def waiting_queues(self) -> list[str]:
        with self._lock:
            return list(self._waiting)

    def until_someone_waits(self, timeout: float) -> bool:
        return self._someone_waits.wait(timeout)

    def _start_watcher(self) -> None:
        if self._watcher is None or not self._watcher.is_alive():
            self._watcher = threading.Thread(target=watch, args=(self,), name="mq-watcher")
            self._watcher.daemon = True
            self._watcher.start()


waiters = Waiters()


def watch(registry: Waiters) -> None:
    """The watcher thread: wake waiters when another process changed the queue,
    or when a lease or delay they wait for has run out."""
    feed = None
    due: dict[str, datetime] = {}
    while True:
        if not registry.until_someone_waits(timeout=30):
            # Idle: hold no connection, so the database can be restarted or dropped.
            if feed is not None:
                feed.close()
                feed = None
            connection.close()
            due.clear()
            continue
        try:
            feed = feed or change_feed()
            changed = feed.changes()
            now = timezone.now()
            for queue in registry.waiting_queues():
                if due.get(queue, now) <= now:
                    due[queue] = _check_due(registry, queue, now)
                elif (queue in changed or feed.everything_changed) and domain.deliverable(
                    queue, now
                ):
                    registry.wake(queue)
        except Exception:
            logger.exception("long-poll watcher: the database failed; retrying in 1 s")
            if feed is not None:
                feed.close()
                feed = None
            connection.close()
            time.sleep(1)


def _check_due(registry: Waiters, queue: str, now: datetime) -> datetime:
    """Wake a waiter if ``queue`` has a message now; return when to look again."""
    next_at = domain.next_visible_at(queue, now)
    if next_at is not None and next_at <= now:
        registry.wake(queue)
        return now
    return min(next_at, now + RECHECK) if next_at else now + RECHECK


class PollFeed:
    """MariaDB: no change signal, so every tick counts as a change (an indexed probe)."""

    everything_changed = True

    def changes(self) -> set[str]:
        time.sleep(TICK_SECONDS["mysql"])
        return set()

    def close(self) -> None:
        pass


class SQLiteFeed:
    """SQLite: ``PRAGMA data_version`` changes when another connection commits."""

    def __init__(self):
        self.version = self._read()
        self.everything_changed = False

    def _read(self) -> int:
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA data_version")
            return cursor.fetchone()[0]

    def changes(self) -> set[str]:
        time.sleep(TICK_SECONDS["sqlite"])
        version = self._read()
        self.everything_changed = version != self.version
        self.version = version
        return set()

    def close(self) -> None:
        pass


class PostgresFeed:
    """PostgreSQL: LISTEN on a connection of its own; senders NOTIFY the queue's name."""

    everything_changed = False

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
        # Back as soon as a notification arrives, with any that came along.
        notifies = self.conn.notifies(timeout=TICK_SECONDS["postgresql"], stop_after=1)
        return {n.payload for n in notifies}

    def close(self) -> None:
        self.conn.close()


def change_feed():
    return {"sqlite": SQLiteFeed, "postgresql": PostgresFeed}.get(connection.vendor, PollFeed)()


class Notifier:
    """PostgreSQL: tell other processes' watchers that a queue changed.

    NOTIFY takes a database-wide lock while its transaction commits, so it is
    not sent inside the message's own transaction (that would serialize every
    send); a thread sends one NOTIFY per changed queue, a few ms later."""

    def __init__(self):
        self._lock = threading.Lock()
        self._pending: set[str] = set()
        self._event = threading.Event()
        self._thread: threading.Thread | None = None

    def changed(self, queue: str) -> None:
        with self._lock:
            self._pending.add(queue)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="mq-notifier", daemon=True)
                self._thread.start()
        self._event.set()

    def _run(self) -> None:
        while True:
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


notifier = Notifier()


def changed(queue: str) -> None:
    """A message of ``queue`` became deliverable now: wake waiters here and elsewhere."""
    waiters.wake(queue)
    if connection.vendor == "postgresql":
        notifier.changed(queue)
