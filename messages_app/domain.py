"""The queue's operations: send, next, done, give back, extend the lease,
requeue_expired, redrive, requeue, purge, configure, delete a queue, the
counts, and the history of the counters (``counters``).

The API's views, the admin, /info and the management commands all go through
here. A message's states are the rules of ``states``; the raw statements of
the hot path are the store's (``store``), and what a process keeps in memory
is its ``runtime``.
"""

import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Count
from django.utils import timezone

from . import counters, runtime, states
from .errors import LeaseConflict, MessageNotFound, QueueError, QueueNotFound
from .models import CounterBucket, IdempotencyKey, Message, Queue
from .runtime import QueueSettings

MAX_DELAY_SECONDS = 7 * 24 * 60 * 60
MAX_WAIT_SECONDS = 20
MAX_BATCH = 1000


class Delivery(NamedTuple):
    id: int
    payload: str  # JSON text
    lease: str
    lease_expires_at: datetime
    attempts: int


def queue_settings(queue: str) -> QueueSettings:
    return runtime.current().queue_settings(queue)


def configure(queue: str, **changes) -> QueueSettings:
    """Set a queue's ``timeout``, ``max_attempts`` (None: the default),
    ``dead_letter_queue`` (a queue's name, created if new; None: none), or the
    SQS endpoint's ``sqs_attributes`` and ``tags``; create it if new."""
    now = timezone.now()
    if "dead_letter_queue" in changes:
        target = changes.pop("dead_letter_queue")
        if target == queue:
            raise QueueError(
                f"queue {queue!r} cannot be its own dead-letter queue", "invalid_dead_letter_queue"
            )
        changes["dead_letter_queue_id"] = target
    with transaction.atomic():
        _ensure_queue(queue, now)
        if changes.get("dead_letter_queue_id") is not None:
            _ensure_queue(changes["dead_letter_queue_id"], now)
        # Deaths the old limit decided stay decided: store them before it changes.
        target = Queue.objects.filter(name=queue).values_list("dead_letter_queue", flat=True)
        died = _bury(queue, target.get(), Message.objects.filter(queue_id=queue).spent(now), now)
        if changes:
            Queue.objects.filter(name=queue).update(**changes)
    _count({queue: died}, counters.DIED)
    runtime.current().forget_settings(queue)
    return queue_settings(queue)


def _bury(queue: str, target: str | None, messages, now: datetime) -> int:
    """Store the death of ``messages`` of ``queue``: moved to its dead-letter queue
    ``target``, ready, attempts reset and ``queue`` recorded; dead in place
    without one. How many died."""
    if target is None:
        return messages.update(lease=None, dead=True)
    moved = messages.update(
        queue_id=target,
        lease=None,
        dead=False,
        attempts=0,
        visible_at=now,
        dead_letter_source=queue,
    )
    if moved:
        _changed_on_commit(target)
    return moved


def _ensure_queue(queue: str, now: datetime) -> None:
    Queue.objects.bulk_create([Queue(name=queue, created_at=now)], ignore_conflicts=True)
    known = runtime.current().known_queues
    transaction.on_commit(lambda: known.add(queue))


def _insert(queue: str, payloads: list[str], now: datetime, visible_at: datetime) -> list[int]:
    """The hot path's send: one INSERT once the queue is known."""
    process = runtime.current()
    if queue not in process.known_queues:
        _ensure_queue(queue, now)
    try:
        return process.store.insert(queue, payloads, now, visible_at)
    except IntegrityError:
        if connection.in_atomic_block or Queue.objects.filter(name=queue).exists():
            raise
        # The queue's row went away (deleted meanwhile): store it again.
        process.known_queues.discard(queue)
        _ensure_queue(queue, now)
        return process.store.insert(queue, payloads, now, visible_at)


def _per_queue(messages) -> dict[str, int]:
    """How many of ``messages`` each queue has."""
    rows = messages.order_by().values("queue_id").annotate(n=Count("*"))
    return {row["queue_id"]: row["n"] for row in rows}


def _count(per_queue: dict[str, int], *names: int) -> None:
    """Add to this process's counters (after the change is committed)."""
    process_counters = runtime.current().counters
    for queue, n in per_queue.items():
        for name in names if n else ():
            process_counters.add(queue, name, n)


def _changed_on_commit(queue: str) -> None:
    process = runtime.current()
    if connection.in_atomic_block:
        transaction.on_commit(lambda: process.changed(queue))
    else:
        process.changed(queue)  # committed already (what on_commit would do)


def send(queue: str, payload: str, delay: float = 0, key: str | None = None) -> tuple[int, bool]:
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
                [message_id] = runtime.current().store.insert(queue, [payload], now, visible_at)
                IdempotencyKey.objects.create(
                    queue_id=queue, key=key, message_id=message_id, created_at=now
                )
        except IntegrityError:
            first = IdempotencyKey.objects.filter(queue_id=queue, key=key).values_list(
                "message_id", flat=True
            )
            return first.get(), False
    runtime.current().counters.add(queue, counters.SENT)
    if not delay:
        _changed_on_commit(queue)
    return message_id, True


def send_many(queue: str, payloads: list[str], delay: float = 0) -> list[int]:
    """Store several messages in one statement, in order; return their ids."""
    now = timezone.now()
    ids = _insert(queue, payloads, now, now + timedelta(seconds=delay))
    runtime.current().counters.add(queue, counters.SENT, len(ids))
    if not delay:
        _changed_on_commit(queue)
    return ids


def _claim(queue: str, count: int, timeout: float | None) -> list[Delivery]:
    """Lease the oldest ``count`` deliverable messages of ``queue`` for ``timeout``
    seconds (the queue's default lease when None): the store's claim."""
    process = runtime.current()
    config = process.queue_settings(queue)
    now = timezone.now()
    if config.dead_letter_queue is not None and process.sweep_due(queue, now):
        with transaction.atomic():
            spent = Message.objects.filter(queue_id=queue).spent(now)
            died = _bury(queue, config.dead_letter_queue, spent, now)
        _count({queue: died}, counters.DIED)
    lease_end = now + timedelta(seconds=timeout if timeout is not None else config.lease_seconds)
    lease = counters.new_lease(now)
    rows = process.store.claim(queue, count, lease, now, lease_end, config.attempts_limit)
    if rows:
        process.counters.delivered(queue, rows)
    return [Delivery(row.id, row.payload, row.lease, lease_end, row.attempts) for row in rows]


def next_messages(
    queue: str, count: int = 1, timeout: float | None = None, wait: float = 0
) -> list[Delivery]:
    """Lease the oldest ``count`` deliverable messages of ``queue``; when there
    are none, wait up to ``wait`` seconds for one (long polling)."""
    waiters = runtime.current().waiters
    deadline = time.monotonic() + wait
    woken = False
    while True:
        generation = waiters.generation(queue)
        if wait and waiters.settled(queue, generation):
            deliveries = []  # a claim would find nothing: wait, and hold no connection
        else:
            deliveries = _claim(queue, count, timeout)
        if deliveries:
            if woken:
                waiters.wake(queue)  # there may be more: pass the wake-up on
            return deliveries
        if time.monotonic() >= deadline:
            return []
        _release_connection()
        if not waiters.wait(queue, generation, deadline):
            return []  # not woken since that claim found nothing: no need to claim again
        woken = True


def _release_connection() -> None:
    """Give the database connection back while a request waits, so hundreds of
    long-polls do not hold hundreds of connections."""
    if not connection.in_atomic_block:
        connection.close()


def _held(queue: str, message_id: int, lease: str | None, now: datetime):
    """The message while the caller holds its delivery (``states.held``)."""
    return Message.objects.filter(states.held(now, lease), queue_id=queue, id=message_id)


def done(queue: str, message_id: int, lease: str | None = None) -> None:
    """Mark a delivered message done: it is deleted if the caller holds it
    (compare-and-set, one statement)."""
    process = runtime.current()
    now = timezone.now()
    deleted = process.store.delete_held(queue, [(message_id, lease)], now)
    if not deleted:
        raise _why_not_held(queue, message_id, lease)
    process.counters.acked(queue, deleted.values(), now)
    process.store.deleted(1)


@dataclass(frozen=True)
class DoneResult:
    processed: list[int]
    failed: list[tuple[int, QueueError]]


def done_many(queue: str, entries: list[tuple[int, str | None]]) -> DoneResult:
    """Mark several deliveries done in one statement (a few hundred distinct
    leases per statement, in one transaction); each one that cannot be done
    fails alone, with the reason a single done would give."""
    process = runtime.current()
    now = timezone.now()
    ids = process.store.delete_held(queue, entries, now)
    if ids:
        process.counters.acked(queue, ids.values(), now)
    process.store.deleted(len(ids))
    failed = [
        (message_id, _why_not_held(queue, message_id, lease))
        for message_id, lease in entries
        if message_id not in ids
    ]
    return DoneResult(processed=[m for m, _ in entries if m in ids], failed=failed)


def give_back(queue: str, message_id: int, lease: str | None, delay: float = 0) -> str:
    """Give a delivered message back: deliverable again after ``delay`` seconds,
    or dead if that was its last allowed delivery (moved to the queue's
    dead-letter queue if it has one). Returns the new state."""
    now = timezone.now()
    held = _held(queue, message_id, lease, now)
    config = queue_settings(queue)
    limit = config.attempts_limit
    visible_at = now + timedelta(seconds=delay)
    with transaction.atomic():
        if held.filter(attempts__lt=limit).update(lease=None, visible_at=visible_at):
            state = "ready" if not delay else "delayed"
            if not delay:
                _changed_on_commit(queue)
        elif _bury(queue, config.dead_letter_queue, held, now):
            state = "dead"
        else:
            raise _why_not_held(queue, message_id, lease)
    _count({queue: 1}, counters.GIVEN_BACK, *([counters.DIED] if state == "dead" else []))
    return state


def extend_lease(queue: str, message_id: int, lease: str | None, timeout: float) -> datetime:
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
    (ready again), messages past their last allowed delivery become dead (or
    move to their queue's dead-letter queue), and
    idempotency keys older than the dedup window are dropped.

    Delivery does not need this (the claim reads the clock itself); it keeps
    the stored state, the counts and the admin's filters exact.
    """
    now = now or timezone.now()
    with transaction.atomic():
        spent = Message.objects.spent(now)
        died = _per_queue(spent)
        # A spent message whose lease is still set: its last lease ran out.
        spent_expired = _per_queue(spent.filter(lease__isnull=False))
        with_target = Queue.objects.filter(name__in=died, dead_letter_queue__isnull=False)
        for queue, target in with_target.values_list("name", "dead_letter_queue"):
            _bury(queue, target, Message.objects.filter(queue_id=queue).spent(now), now)
        spent.update(lease=None, dead=True)
        dead = sum(died.values())
        expired = _per_queue(Message.objects.expired(now))
        requeued = Message.objects.expired(now).update(lease=None)
        window_start = now - timedelta(seconds=settings.MQ_DEDUP_WINDOW)
        keys_dropped, _ = IdempotencyKey.objects.filter(created_at__lt=window_start).delete()
    _count(died, counters.DIED)
    _count(spent_expired, counters.EXPIRED)
    _count(expired, counters.EXPIRED)
    return Housekeeping(requeued, dead, keys_dropped)


def _messages_changed_on_commit(messages) -> None:
    for queue in set(messages.values_list("queue_id", flat=True)):
        _changed_on_commit(queue)


def redrive(messages) -> int:
    """Make the dead ones of ``messages`` ready again, attempts reset, at their place by id."""
    now = timezone.now()
    with transaction.atomic():
        redriven = _per_queue(messages.dead(now))
        count = messages.dead(now).update(dead=False, lease=None, attempts=0, visible_at=now)
        _messages_changed_on_commit(messages)
    _count(redriven, counters.REDRIVEN)
    return count


def redrive_queue(queue: str) -> int:
    """Make every dead message of ``queue`` ready again."""
    return redrive(Message.objects.filter(queue_id=queue))


def move_dead(queue: str, to: str) -> int:
    """Move the dead messages of ``queue`` to the queue ``to`` (created if new),
    ready there with attempts reset. They keep their ids, so they take their
    place by id among ``to``'s messages, as a redrive does. Counted as redriven
    from ``queue``."""
    now = timezone.now()
    with transaction.atomic():
        _ensure_queue(to, now)
        count = (
            Message.objects.filter(queue_id=queue)
            .dead(now)
            .update(queue_id=to, dead=False, lease=None, attempts=0, visible_at=now)
        )
        if count:
            _changed_on_commit(to)
    if count:
        _count({queue: count}, counters.REDRIVEN)
    return count


def requeue(messages) -> int:
    """Make the live ones of ``messages`` deliverable now, at their place by id."""
    with transaction.atomic():
        count = messages.alive().update(lease=None, visible_at=timezone.now())
        _messages_changed_on_commit(messages)
    return count


def purge(messages) -> int:
    """Delete ``messages`` for good; how many were deleted."""
    with transaction.atomic():
        purged = _per_queue(messages)
        deleted = messages.delete()[1].get(Message._meta.label, 0)
    _count(purged, counters.PURGED)
    runtime.current().store.deleted(deleted)
    return deleted


def purge_queue(queue: str) -> int:
    """Delete every message of ``queue``; the queue and its settings stay."""
    return purge(Message.objects.filter(queue_id=queue))


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
    dead_letter_queue: str | None = None

    @property
    def total(self) -> int:
        return self.ready + self.delayed + self.leased + self.dead

    @property
    def effective_timeout(self) -> float:
        return states.effective_timeout(self.timeout)

    @property
    def effective_max_attempts(self) -> int | None:
        """The deliveries allowed, None when unlimited."""
        limit = states.effective_max_attempts(self.max_attempts)
        return None if limit == states.UNLIMITED_ATTEMPTS else limit


def queue_stats(now: datetime | None = None, queues: list[str] | None = None) -> list[QueueStats]:
    """Counts per state and the settings of every queue (or of ``queues``), in
    a fixed number of queries."""
    now = now or timezone.now()
    rows = Queue.objects.all() if queues is None else Queue.objects.filter(name__in=queues)
    rows = list(rows)
    counts = runtime.current().store.counts(rows, now)
    return [
        QueueStats(
            q.name,
            counts[q.name].ready,
            counts[q.name].delayed,
            counts[q.name].leased,
            counts[q.name].dead,
            counts[q.name].oldest_created_at,
            q.timeout,
            q.max_attempts,
            q.dead_letter_queue_id,
        )
        for q in rows
    ]


def delete_queue(queue: str) -> int:
    """Delete ``queue``: its messages, its settings and its history; how many
    messages went. A queue never used raises QueueNotFound."""
    with transaction.atomic():
        if not Queue.objects.filter(name=queue).exists():
            raise QueueNotFound(f"no queue {queue!r}")
        deleted = purge_queue(queue)
        Queue.objects.filter(name=queue).delete()
        CounterBucket.objects.filter(queue=queue).delete()
    process = runtime.current()
    process.known_queues.discard(queue)
    process.forget_settings(queue)
    process.counters.forget(queue)
    return deleted


def queue_history(queue: str, window: str = "1h", now: datetime | None = None) -> counters.History:
    """``queue``'s counters and depth over ``window`` (a key of ``counters.WINDOWS``:
    "1h" and "24h" in minutes, "30d" in hours), every bucket of the window,
    oldest first, those with nothing stored as zeros. This process's pending
    counts are stored first."""
    if window not in counters.WINDOWS:
        raise QueueError(
            f"window is one of {', '.join(counters.WINDOWS)}, not {window!r}", "invalid_window"
        )
    if not Queue.objects.filter(name=queue).exists():
        raise QueueNotFound(f"no queue {queue!r}")
    runtime.current().counters.flush()
    return counters.history(queue, window, now or timezone.now())


# What the SQS endpoint (messages_app/sqs) needs beyond the native calls.


def queue_row(queue: str) -> Queue | None:
    """The queue's stored row, None when it was never created."""
    return Queue.objects.filter(name=queue).first()


def queue_names(prefix: str = "", after: str = "", limit: int = 1000) -> list[str]:
    """Names of stored queues starting with ``prefix`` (case-sensitive, also on
    SQLite, whose LIKE is not), after ``after``, in name order."""
    names = Queue.objects.filter(name__startswith=prefix, name__gt=after).order_by("name")
    return [n for n in names.values_list("name", flat=True) if n.startswith(prefix)][:limit]


@dataclass(frozen=True)
class Outgoing:
    payload: str  # JSON text
    delay: float = 0
    attributes: str | None = None  # JSON text


def send_each(queue: str, messages: list[Outgoing]) -> list[int]:
    """Store messages that each have their own delay and attributes, in order, in
    one statement; their ids. The queue must exist (a foreign key error otherwise)."""
    now = timezone.now()
    rows = [
        Message(
            queue_id=queue,
            payload=m.payload,
            created_at=now,
            visible_at=now + timedelta(seconds=m.delay),
            attributes=m.attributes,
        )
        for m in messages
    ]
    with transaction.atomic():
        ids = [row.id for row in Message.objects.bulk_create(rows)]
    runtime.current().counters.add(queue, counters.SENT, len(ids))
    if any(not m.delay for m in messages):
        _changed_on_commit(queue)
    return ids


@dataclass(frozen=True)
class Received:
    delivery: Delivery
    created_at: datetime
    first_received_at: datetime
    attributes: str | None
    dead_letter_source: str | None


def receive(queue: str, count: int, timeout: float | None, wait: float) -> list[Received]:
    """``next_messages`` with what SQS tells about each message: when it was sent,
    first delivered (recorded at its first delivery) and its attributes."""
    deliveries = next_messages(queue, count, timeout, wait)
    if not deliveries:
        return []
    ids = [d.id for d in deliveries]
    now = timezone.now()
    with transaction.atomic():
        Message.objects.filter(id__in=ids, first_received_at__isnull=True).update(
            first_received_at=now
        )
    details = {
        row[0]: row[1:]
        for row in Message.objects.filter(id__in=ids).values_list(
            "id", "created_at", "first_received_at", "attributes", "dead_letter_source"
        )
    }
    return [Received(d, *details[d.id]) for d in deliveries if d.id in details]


def drop_expired(queue: str, retention: float) -> int:
    """Delete the messages of ``queue`` older than ``retention`` seconds; a look at
    the oldest one first, so a queue with none to drop costs one index read."""
    cutoff = timezone.now() - timedelta(seconds=retention)
    oldest = Message.objects.alive().filter(queue_id=queue).order_by("id")
    first = oldest.values_list("created_at", flat=True).first()
    if first is None or first >= cutoff:
        return 0
    return purge(Message.objects.filter(queue_id=queue, created_at__lt=cutoff))
