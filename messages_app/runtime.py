"""What one server process keeps in memory, in one object.

The store for the database the server runs on (chosen once, at the first use
after start-up), the queues' settings it has read, the queues it knows exist,
the requests waiting for messages, and the counts not yet flushed
(``counters``). ``current()`` is this process's;
``reset()`` forgets it whole, as a freshly started process would (the tests
do, between tests whose database was rolled back).
"""

import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import connection

from . import states, store
from .counters import Counters
from .models import Queue
from .waiting import Waiters

# A queue's settings are read on every claim; keep them a moment per process.
# Changes made here apply at once, changes made by another process within this.
SETTINGS_TTL = 1.0
# A claim on a queue with a dead-letter queue moves the messages that died there,
# at most this often per queue and process (it reads the queue's deliverable rows).
SWEEP_EVERY = timedelta(seconds=1)


@dataclass(frozen=True)
class QueueSettings:
    timeout: float | None  # seconds; None: PENDING_TIMEOUT
    max_attempts: int | None  # None: MQ_MAX_ATTEMPTS
    dead_letter_queue: str | None = None  # where its dead messages go; None: they stay

    @property
    def lease_seconds(self) -> float:
        return states.effective_timeout(self.timeout)

    @property
    def attempts_limit(self) -> int:
        return states.effective_max_attempts(self.max_attempts)


class Runtime:
    def __init__(self, store: store.Store):
        self.store = store
        self.waiters = Waiters(self)
        # Queues whose row this process has seen committed; sends to them skip that insert.
        self.known_queues: set[str] = set()
        self._settings: dict[str, tuple[float, QueueSettings]] = {}
        self._settings_lock = threading.Lock()
        self.counters = Counters(store, self.depth)
        self._next_sweep: dict[str, datetime] = {}

    def close(self) -> None:
        self.counters.close()
        self.waiters.close()
        self.store.close()

    def depth(self, now: datetime) -> dict:
        """Every queue's counts by state (what the counters sample once a minute)."""
        return self.store.counts(list(Queue.objects.all()), now)

    def queue_settings(self, queue: str) -> QueueSettings:
        with self._settings_lock:
            cached = self._settings.get(queue)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        row = (
            Queue.objects.filter(name=queue)
            .values_list("timeout", "max_attempts", "dead_letter_queue")
            .first()
        )
        found = QueueSettings(*row) if row else QueueSettings(None, None)
        with self._settings_lock:
            self._settings[queue] = (time.monotonic() + SETTINGS_TTL, found)
        return found

    def forget_settings(self, queue: str) -> None:
        with self._settings_lock:
            self._settings.pop(queue, None)

    def sweep_due(self, queue: str, now: datetime) -> bool:
        """Whether a claim on ``queue`` should move its dead messages now (``SWEEP_EVERY``)."""
        with self._settings_lock:
            if self._next_sweep.get(queue, now) > now:
                return False
            self._next_sweep[queue] = now + SWEEP_EVERY
            return True

    def changed(self, queue: str) -> None:
        """A message of ``queue`` became deliverable now: wake waiters here and elsewhere."""
        self.waiters.wake(queue)
        self.store.notify(queue)

    # What the long-poll watcher reads (waiting.Source).

    def change_feed(self):
        return self.store.change_feed()

    def deliverable(self, queue: str, now: datetime) -> bool:
        return self.store.deliverable(queue, now, self.queue_settings(queue).attempts_limit)

    def next_visible_at(self, queue: str, now: datetime) -> datetime | None:
        return self.store.next_visible_at(queue, now, self.queue_settings(queue).attempts_limit)


_current: Runtime | None = None
_current_lock = threading.Lock()


def current() -> Runtime:
    """This process's runtime, made at the first call."""
    global _current
    if _current is None:
        with _current_lock:
            if _current is None:
                _current = Runtime(store.for_vendor(connection.vendor))
    return _current


def reset() -> None:
    """Forget everything this process keeps, as a freshly started process would."""
    global _current
    with _current_lock:
        if _current is not None:
            _current.close()
        _current = None
