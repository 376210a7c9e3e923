"""The queue's operations: enqueue, claim, ack, release, extend, expire,
redrive, and the counts.

Views, the admin, /info and the management commands all go through here; the
few raw statements (the claim, and the hot path's insert and delete) live
apart, in ``sql``.
"""

import secrets
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Count, Min, OuterRef, Q, Subquery
from django.utils import timezone

from . import sql, vacuum, waiting
from .models import (
    UNLIMITED_ATTEMPTS,
    IdempotencyKey,
    Message,
    Queue,
)

MAX_DELAY_SECONDS = 7 * 24 * 60 * 60
MAX_WAIT_SECONDS = 20
MAX_BATCH = 1000


class QueueError(Exception):
    """A request the queue refuses; ``code`` is the contract's error code."""

    code = "bad_request"

    def __init__(self, detail: str, code: str | None = None):
        super().__init__(detail)
        self.detail = detail
        if code:
            self.code = code


class MessageNotFound(QueueError):
    code = "not_found"


class LeaseConflict(QueueError):
    """The message exists but the caller does not hold its current lease."""

    code = "conflict"


@dataclass(frozen=True)
class Delivery:
    id: int
    payload: str  # JSON text
    lease: str
    lease_expires_at: datetime
    attempts: int


@dataclass(frozen=True)
class QueueSettings:
    timeout: float | None  # seconds; None: PENDING_TIMEOUT
    max_attempts: int | None  # None: MQ_MAX_ATTEMPTS

    @property
    def lease_seconds(self) -> float:
        return self.timeout if self.timeout is not None else settings.PENDING_TIMEOUT / 1000

    @property
    def attempts_limit(self) -> int:
        return self.max_attempts or settings.MQ_MAX_ATTEMPTS or UNLIMITED_ATTEMPTS


# A queue's settings are read on every claim; keep them a moment per process.
# Changes made here apply at once, changes made by another process within this.
SETTINGS_TTL = 1.0
_settings_cache: dict[str, tuple[float, QueueSettings]] = {}
_settings_lock = threading.Lock()


def queue_settings(queue: str) -> QueueSettings:
    with _settings_lock:
        cached = _settings_cache.get(queue)
    if cached and cached[0] > time.monotonic():
        return cached[1]
    row = Queue.objects.filter(name=queue).values_list("timeout", "max_attempts").first()
    found = QueueSettings(*row) if row else QueueSettings(None, None)
    with _settings_lock:
        _settings_cache[queue] = (time.monotonic() + SETTINGS_TTL, found)
    return found


def configure(queue: str, **changes) -> QueueSettings:
    """Set a queue's ``timeout`` and/or ``max_attempts`` (None: the default); create it if new."""
    now = timezone.now()
    with transaction.atomic():
        _ensure_queue(queue, now)
        # Deaths the old limit decided stay decided: store them before it changes.
        Message.objects.filter(queue_id=queue).spent(now).update(lease=None, dead=True)
        if changes:
            Queue.objects.filter(name=queue).update(**changes)
    with _settings_lock:
        _settings_cache.pop(queue, None)
    return queue_settings(queue)


# Queues whose row this process has seen committed; sends to them skip that insert.
_known_queues: set[str] = set()


def forget_queues() -> None:
    """Forget the queue settings and names this process keeps, as a freshly
    started process would (tests do, after their database was rolled back)."""
    with _settings_lock:
        _settings_cache.clear()
    _known_queues.clear()


def _ensure_queue(queue: str, now: datetime) -> None:
    Queue.objects.bulk_create([Queue(name=queue, created_at=now)], ignore_conflicts=True)
    transaction.on_commit(lambda: _known_queues.add(queue))


def _insert(queue: str, payloads: list[str], now: datetime, visible_at: datetime) -> list[int]:
    """The hot path's send: one INSERT once the queue is known."""
    if queue not in _known_queues:
        _ensure_queue(queue, now)
    try:
        return sql.insert_messages(queue, payloads, now, visible_at)
    except IntegrityError:
        if connection.in_atomic_block:
            raise
        # The queue's row went away (deleted by hand): store it again.
        _known_queues.discard(queue)
        _ensure_queue(queue, now)
        return sql.insert_messages(queue, payloads, now, visible_at)


def enqueue(queue: str, payload: str, delay: float = 0, key: str | None = None) -> tuple[int, bool]:
    """Store a message (``payload`` is JSON text) at the back of ``queue``.

    Returns ``(id, created)``. With ``key``, a key already used on this queue
    within ``MQ_DEDUP_WINDOW`` seconds returns the first message's id and
    stores nothing; the unique constraint decides between concurrent sends.
    """
    now = timezone.now()
    visible_at = now + timedelta(seconds=delay)
    if key is None:
        [message_id] = _insert(queue, [payload], now, visible_at)
    else:
        try:
            with transaction.atomic():
                _ensure_queue(queue, now)
                window_start = now - timedelta(seconds=settings.MQ_DEDUP_WINDOW)
                IdempotencyKey.objects.filter(
                    queue_id=queue, key=key, created_at__lt=window_start
                ).delete()
                [message_id] = sql.insert_messages(queue, [payload], now, visible_at)
                IdempotencyKey.objects.create(
                    queue_id=queue, key=key, message_id=message_id, created_at=now
                )
        except IntegrityError:
            first = IdempotencyKey.objects.filter(queue_id=queue, key=key).values_list(
                "message_id", flat=True
            )
            return first.get(), False
    if not delay:
        transaction.on_commit(lambda: waiting.changed(queue))
    return message_id, True


def enqueue_many(queue: str, payloads: list[str], delay: float = 0) -> list[int]:
    """Store several messages in one statement, in order; return their ids."""
    now = timezone.now()
    ids = _insert(queue, payloads, now, now + timedelta(seconds=delay))
    if not delay:
        transaction.on_commit(lambda: waiting.changed(queue))
    return ids


def claim(queue: str, count: int = 1, timeout: float | None = None) -> list[Delivery]:
    """Lease the oldest ``count`` deliverable messages of ``queue`` for ``timeout``
    seconds (the queue's default lease when None)."""
    config = queue_settings(queue)
    now = timezone.now()
    lease_end = now + timedelta(seconds=timeout if timeout is not None else config.lease_seconds)
    lease = secrets.token_hex(16)
    rows = sql.claim_rows(queue, count, lease, now, lease_end, config.attempts_limit)
    return [Delivery(row.id, row.payload, lease, lease_end, row.attempts) for row in rows]


def claim_waiting(
    queue: str, count: int = 1, timeout: float | None = None, wait: float = 0
) -> list[Delivery]:
    """``claim``, but when nothing is there wait up to ``wait`` seconds for a message."""
    deadline = time.monotonic() + wait
    woken = False
    while True:
        generation = waiting.waiters.generation(queue)
        deliveries = claim(queue, count, timeout)
        if deliveries:
            if woken:
                waiting.waiters.wake(queue)  # there may be more: pass the wake-up on
            return deliveries
        if time.monotonic() >= deadline:
            return []
        _release_connection()
        waiting.waiters.wait(queue, generation, deadline)
        woken = True


def _release_connection() -> None:
    """Give the database connection back while a request waits, so hundreds of
    long-polls do not hold hundreds of connections."""
    if not connection.in_atomic_block:
        connection.close()


def deliverable(queue: str, now: datetime) -> bool:
    """Whether ``queue`` has a message a claim would take now (an index range scan)."""
    limit = queue_settings(queue).attempts_limit
    return (
        Message.objects.alive()
        .filter(queue_id=queue, visible_at__lte=now, attempts__lt=limit)
        .order_by()
        .exists()
    )


def next_visible_at(queue: str, now: datetime) -> datetime | None:
    """When ``queue`` next has a deliverable message: ``now`` if it has one, else
    the end of the earliest lease or delay, else None."""
    if deliverable(queue, now):
        return now
    limit = queue_settings(queue).attempts_limit
    later = Message.objects.alive().filter(queue_id=queue, visible_at__gt=now, attempts__lt=limit)
    return later.aggregate(next_at=Min("visible_at"))["next_at"]


def _held(queue: str, message_id: int, lease: str | None, now: datetime):
    """The message while the caller holds its delivery (compare-and-set filter).

    With ``lease``, only that delivery matches, even if its time ran out, as
    long as nobody claimed the message since. Without it, any current,
    unexpired delivery matches, as the seed's clients send no lease. The acks
    delete by the same rule in one statement (``sql.delete_held``).
    """
    current = Message.objects.filter(queue_id=queue, id=message_id, dead=False, lease__isnull=False)
    if lease is None:
        return current.filter(visible_at__gt=now)
    return current.filter(lease=lease)


def ack(queue: str, message_id: int, lease: str | None = None) -> None:
    """Mark a delivered message done: it is deleted if the caller holds it
    (compare-and-set, one statement)."""
    if not sql.delete_held(queue, [(message_id, lease)], timezone.now()):
        raise _why_not_held(queue, message_id, lease)
    vacuum.deleted(1)


@dataclass(frozen=True)
class AckResult:
    processed: list[int]
    failed: list[tuple[int, QueueError]]


def ack_many(queue: str, entries: list[tuple[int, str | None]]) -> AckResult:
    """Ack several deliveries in one statement (a few hundred distinct leases per
    statement, in one transaction); each one that cannot be acked fails alone,
    with the reason a single ack would give."""
    ids = sql.delete_held(queue, entries, timezone.now())
    vacuum.deleted(len(ids))
    failed = [
        (message_id, _why_not_held(queue, message_id, lease))
        for message_id, lease in entries
        if message_id not in ids
    ]
    return AckResult(processed=[m for m, _ in entries if m in ids], failed=failed)


def release(queue: str, message_id: int, lease: str | None, delay: float = 0) -> str:
    """Give a delivered message back (nack): deliverable again after ``delay``
    seconds, or dead if that was its last allowed delivery. Returns the new state."""
    now = timezone.now()
    held = _held(queue, message_id, lease, now)
    limit = queue_settings(queue).attempts_limit
    visible_at = now + timedelta(seconds=delay)
    with transaction.atomic():
        if held.filter(attempts__lt=limit).update(lease=None, visible_at=visible_at):
            if not delay:
                transaction.on_commit(lambda: waiting.changed(queue))
            return "ready" if not delay else "delayed"
        if held.update(lease=None, dead=True):
            return "dead"
    raise _why_not_held(queue, message_id, lease)


def extend(queue: str, message_id: int, lease: str | None, timeout: float) -> datetime:
    """Extend a held lease to ``timeout`` seconds from now (a heartbeat)."""
    now = timezone.now()
    lease_end = now + timedelta(seconds=timeout)
    with transaction.atomic():
        extended = _held(queue, message_id, lease, now).update(visible_at=lease_end)
    if not extended:
        raise _why_not_held(queue, message_id, lease)
    return lease_end


def _why_not_held(queue: str, message_id: int, lease: str | None) -> QueueError:
    """Explain, after a compare-and-set matched nothing, why: 404 or which 409."""
    message = Message.objects.filter(queue_id=queue, id=message_id).first()
    if message is None:
        return MessageNotFound(f"no message {message_id} in queue {queue!r}")
    if message.dead:
        return LeaseConflict(f"message {message_id} is dead", "message_dead")
    if message.lease is None:
        return LeaseConflict(f"message {message_id} is not leased", "not_leased")
    if lease is None:
        return LeaseConflict(f"the lease on message {message_id} has expired", "lease_expired")
    return LeaseConflict(
        f"lease {lease!r} is not the current lease of message {message_id}", "stale_lease"
    )


@dataclass(frozen=True)
class Housekeeping:
    requeued: int
    dead: int
    keys_dropped: int


def requeue_expired(now: datetime | None = None) -> Housekeeping:
    """Store what the clock already decided: leases that ran out are cleared
    (ready again), messages past their last allowed delivery become dead, and
    idempotency keys older than the dedup window are dropped.

    Delivery does not need this (the claim reads the clock itself); it keeps
    the stored state, the counts and the admin's filters exact.
    """
    now = now or timezone.now()
    with transaction.atomic():
        dead = Message.objects.spent(now).update(lease=None, dead=True)
        requeued = Message.objects.expired(now).update(lease=None)
        window_start = now - timedelta(seconds=settings.MQ_DEDUP_WINDOW)
        keys_dropped, _ = IdempotencyKey.objects.filter(created_at__lt=window_start).delete()
    return Housekeeping(requeued, dead, keys_dropped)


def redrive(messages) -> int:
    """Make dead messages ready again, attempts reset, at their place by id."""
    now = timezone.now()
    with transaction.atomic():
        count = messages.dead(now).update(dead=False, lease=None, attempts=0, visible_at=now)
    for queue in set(messages.values_list("queue_id", flat=True)):
        transaction.on_commit(lambda q=queue: waiting.changed(q))
    return count


def requeue(messages) -> int:
    """Make the given live messages deliverable now, at their place by id."""
    with transaction.atomic():
        count = messages.filter(dead=False).update(lease=None, visible_at=timezone.now())
    for queue in set(messages.values_list("queue_id", flat=True)):
        transaction.on_commit(lambda q=queue: waiting.changed(q))
    return count


def purge(messages) -> int:
    deleted, _ = messages.delete()
    vacuum.deleted(deleted)
    return deleted


@dataclass(frozen=True)
class QueueStats:
    name: str
    ready: int = 0
    delayed: int = 0
    leased: int = 0
    dead: int = 0
    oldest_created_at: datetime | None = None
    timeout: float | None = None
    max_attempts: int | None = None

    @property
    def total(self) -> int:
        return self.ready + self.delayed + self.leased + self.dead


def queue_stats(now: datetime | None = None, queue: str | None = None) -> list[QueueStats]:
    """Counts per queue and state, and every queue's settings.

    A million stored messages must not mean a million rows read: the counts
    come from index ranges, in a fixed number of queries.
    """
    now = now or timezone.now()
    first_alive = Message.objects.alive().filter(queue_id=OuterRef("name")).order_by("id")
    queues = Queue.objects.annotate(first_id=Subquery(first_alive.values("id")[:1]))
    if queue is not None:
        queues = queues.filter(name=queue)
    queues = list(queues)
    messages = Message.objects.order_by().filter(queue_id__in=[q.name for q in queues])
    # Every message, by queue and dead flag: an index-only count (message_claim_idx).
    totals = Counter(
        {
            (row["queue_id"], row["dead"]): row["count"]
            for row in messages.values("queue_id", "dead").annotate(count=Count("*"))
        }
    )
    # Leased and delayed: the few not deliverable yet (a range of
    # message_visible_idx; on PostgreSQL, which lacks it, a scan of the queue).
    later = {
        row["queue_id"]: row
        for row in messages.alive()
        .filter(visible_at__gt=now)
        .values("queue_id")
        .annotate(
            leased=Count("id", filter=Q(lease__isnull=False)),
            delayed=Count("id", filter=Q(lease__isnull=True)),
        )
    }
    # Spent (their last delivery is over): only queues with a limit can have any.
    limited = [q.name for q in queues if q.max_attempts or settings.MQ_MAX_ATTEMPTS]
    spent = Counter(
        dict(
            messages.filter(queue_id__in=limited)
            .spent(now)
            .values("queue_id")
            .annotate(count=Count("*"))
            .values_list("queue_id", "count")
        )
        if limited
        else {}
    )
    first_ids = [q.first_id for q in queues if q.first_id is not None]
    oldest = dict(Message.objects.filter(id__in=first_ids).values_list("queue_id", "created_at"))
    stats = []
    for q in queues:
        leased = later.get(q.name, {}).get("leased", 0)
        delayed = later.get(q.name, {}).get("delayed", 0)
        ready = totals[q.name, False] - leased - delayed - spent[q.name]
        dead = totals[q.name, True] + spent[q.name]
        stats.append(
            QueueStats(
                q.name, ready, delayed, leased, dead, oldest.get(q.name), q.timeout, q.max_attempts
            )
        )
    return stats
