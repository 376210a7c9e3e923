"""Long polling: park a request until its queue may have a message.

Each server process has one ``Waiters`` registry (in ``runtime``) and, while
anything waits, one watcher thread. Waiting requests never query the
database in a loop:

- a message sent or given back in this process wakes a waiter of its queue
  directly (``wake``);
- a change made by another process is seen by the watcher through the store's
  change feed (SQLite's ``PRAGMA data_version``, PostgreSQL's LISTEN/NOTIFY,
  on MariaDB a cheap indexed probe a few times a second);
- a lease running out or a delay ending is a time the watcher reads from the
  database and wakes a waiter at.

A woken waiter tries to claim; if it got messages it passes the wake-up on
(there may be more), otherwise it waits again until its deadline. A waiter
that reaches its deadline unwoken answers without claiming again, and a new
long-poll on a queue that is ``settled`` waits without claiming first: in both
cases a claim found nothing and no wake-up came since, while the watcher
looked at the queue all along (at least every ``RECHECK``).
"""

import logging
import threading
import time
from collections import Counter
from datetime import datetime, timedelta
from typing import Protocol

from django.db import connection
from django.utils import timezone

logger = logging.getLogger(__name__)

# Re-read when the next lease or delay ends at least this often, so a delayed
# message sent by another process is not missed for long.
RECHECK = timedelta(seconds=1)


class Source(Protocol):
    """What the watcher reads: the store's change feed, and each queue's state."""

    def change_feed(self): ...

    def deliverable(self, queue: str, now: datetime) -> bool: ...

    def next_visible_at(self, queue: str, now: datetime) -> datetime | None: ...


class Waiters:
    """Requests of this process waiting for a message, by queue."""

    def __init__(self, source: Source):
        self._source = source
        self._lock = threading.Lock()
        self._conditions: dict[str, threading.Condition] = {}
        self._generation: Counter[str] = Counter()
        self._waiting: Counter[str] = Counter()
        # Per queue, the generation at which a claim found nothing, while requests
        # have waited on the queue without a break since (``settled``).
        self._settled: dict[str, int] = {}
        self._someone_waits = threading.Event()
        self._closed = threading.Event()
        self._watcher: threading.Thread | None = None
        # Wake-ups per queue since the process started: what the tests read to
        # tell a needed wake-up from a spurious one.
        self.wakeups: Counter[str] = Counter()

    def generation(self, queue: str) -> int:
        with self._lock:
            return self._generation[queue]

    def settled(self, queue: str, generation: int) -> bool:
        """Whether a claim on ``queue`` would find nothing: one found nothing at
        ``generation``, still the queue's, and requests have waited on it
        since without a break, so the watcher would have woken them (moved
        the generation) for any message that became deliverable."""
        with self._lock:
            return self._settled.get(queue) == generation

    def wait(self, queue: str, generation: int, deadline: float) -> bool:
        """Block until ``queue`` is woken after ``generation``, or until ``deadline``
        (``time.monotonic``); whether it was woken. ``generation`` is the one
        read before a claim that found nothing."""
        with self._lock:
            self._start_watcher()
            condition = self._conditions.setdefault(queue, threading.Condition(self._lock))
            if self._generation[queue] == generation:
                self._settled[queue] = generation
            self._waiting[queue] += 1
            self._someone_waits.set()
            try:
                while self._generation[queue] == generation:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    condition.wait(remaining)
                return self._generation[queue] != generation
            finally:
                self._waiting[queue] -= 1
                if not self._waiting[queue]:
                    del self._waiting[queue]
                    self._settled.pop(queue, None)
                    if not self._waiting:
                        self._someone_waits.clear()

    def wake(self, queue: str) -> None:
        """One waiter of ``queue`` (if any) should try to claim."""
        with self._lock:
            self._generation[queue] += 1
            self.wakeups[queue] += 1
            condition = self._conditions.get(queue)
            if condition is not None:
                condition.notify()

    def waiting(self) -> Counter[str]:
        """How many requests wait, by queue."""
        with self._lock:
            return Counter(self._waiting)

    def close(self) -> None:
        """Stop the watcher (the requests still waiting end at their deadlines)."""
        self._closed.set()
        self._someone_waits.set()

    def _start_watcher(self) -> None:
        if self._watcher is None or not self._watcher.is_alive():
            self._watcher = threading.Thread(target=self._watch, name="mq-watcher", daemon=True)
            self._watcher.start()

    def _watch(self) -> None:
        """The watcher thread: wake waiters when another process changed the queue,
        or when a lease or delay they wait for has run out."""
        feed = None
        due: dict[str, datetime] = {}
        while not self._closed.is_set():
            if not self._someone_waits.wait(timeout=30) or self._closed.is_set():
                # Idle: hold no connection, so the database can be restarted or dropped.
                if feed is not None:
                    feed.close()
                    feed = None
                connection.close()
                due.clear()
                continue
            try:
                feed = feed or self._source.change_feed()
                changed = feed.changes()
                now = timezone.now()
                for queue in self.waiting():
                    maybe = queue in changed or feed.everything_changed
                    if due.get(queue, now) <= now:
                        due[queue] = self._check_due(queue, now)
                    elif maybe and self._source.deliverable(queue, now):
                        self.wake(queue)
            except Exception:
                logger.exception("long-poll watcher: the database failed; retrying in 1 s")
                if feed is not None:
                    feed.close()
                    feed = None
                connection.close()
                time.sleep(1)
        if feed is not None:
            feed.close()
        connection.close()

    def _check_due(self, queue: str, now: datetime) -> datetime:
        """Wake a waiter if ``queue`` has a message now; return when to look again."""
        next_at = self._source.next_visible_at(queue, now)
        if next_at is not None and next_at <= now:
            self.wake(queue)
            return now
        return min(next_at, now + RECHECK) if next_at else now + RECHECK
