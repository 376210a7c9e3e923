"""The queue's operations: enqueue, claim, ack, requeue, and the counts.

Views, the admin, /info and the management commands all go through here; only
the claim statement itself lives apart, in ``claim_sql``.
"""

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Min, Q
from django.utils import timezone

from . import claim_sql
from .models import Message, Queue

# SQS's bound for a lease; long enough for any handler, short enough to notice a lost consumer.
MAX_LEASE_SECONDS = 12 * 60 * 60
# No limit on deliveries: larger than any attempts counter will ever get.
UNLIMITED_ATTEMPTS = 2**31 - 1


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


def default_lease_seconds() -> float:
    return settings.PENDING_TIMEOUT / 1000


def max_attempts() -> int:
    return settings.MQ_MAX_ATTEMPTS or UNLIMITED_ATTEMPTS


def enqueue(queue: str, payload: str) -> int:
    """Store a message (``payload`` is JSON text) at the back of ``queue``; return its id."""
    now = timezone.now()
    with transaction.atomic():
        Queue.objects.bulk_create([Queue(name=queue, created_at=now)], ignore_conflicts=True)
        message = Message.objects.create(
            queue_id=queue, payload=payload, created_at=now, visible_at=now
        )
    return message.id


def claim(queue: str, count: int = 1, timeout: float | None = None) -> list[Delivery]:
    """Lease the oldest ``count`` deliverable messages of ``queue`` for ``timeout`` seconds."""
    now = timezone.now()
    lease_end = now + timedelta(seconds=timeout if timeout is not None else default_lease_seconds())
    lease = secrets.token_hex(16)
    rows = claim_sql.claim_rows(queue, count, lease, now, lease_end, max_attempts())
    return [Delivery(row.id, row.payload, lease, lease_end, row.attempts) for row in rows]


def ack(queue: str, message_id: int, lease: str | None = None) -> None:
    """Mark a delivered message done: it is deleted.

    With ``lease``, only that delivery may finish the message (compare-and-set
    on the token). Without it, any current, unexpired delivery is accepted, as
    the seed's clients send none.
    """
    now = timezone.now()
    current = Message.objects.filter(queue_id=queue, id=message_id, dead=False, lease__isnull=False)
    if lease is None:
        current = current.filter(visible_at__gt=now)
    else:
        current = current.filter(lease=lease)
    deleted, _ = current.delete()
    if not deleted:
        raise _why_not_held(queue, message_id, lease, now)


def _why_not_held(queue: str, message_id: int, lease: str | None, now: datetime) -> QueueError:
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


def requeue_expired(now: datetime | None = None) -> int:
    """Clear leases that have run out, so the messages show as ready; return how many.

    Delivery does not need this (the claim reads the clock itself); it keeps
    the stored state tidy for operators.
    """
    return Message.objects.expired(now).update(lease=None)


def requeue(messages) -> int:
    """Make the given live messages deliverable now, at their place by id."""
    return messages.filter(dead=False).update(lease=None, visible_at=timezone.now())


def purge(messages) -> int:
    deleted, _ = messages.delete()
    return deleted


@dataclass(frozen=True)
class QueueStats:
    name: str
    ready: int = 0
    delayed: int = 0
    leased: int = 0
    dead: int = 0
    oldest_created_at: datetime | None = None

    @property
    def total(self) -> int:
        return self.ready + self.delayed + self.leased + self.dead


def queue_stats(now: datetime | None = None) -> list[QueueStats]:
    """Counts per queue and state, in one grouped query, plus queues with no messages."""
    now = now or timezone.now()
    alive = Q(dead=False)
    rows = (
        Message.objects.order_by()
        .values("queue_id")
        .annotate(
            ready=Count("id", filter=alive & Q(visible_at__lte=now)),
            delayed=Count("id", filter=alive & Q(lease__isnull=True, visible_at__gt=now)),
            leased=Count("id", filter=alive & Q(lease__isnull=False, visible_at__gt=now)),
            dead_count=Count("id", filter=Q(dead=True)),
            oldest=Min("created_at"),
        )
    )
    stats = {
        row["queue_id"]: QueueStats(
            row["queue_id"],
            row["ready"],
            row["delayed"],
            row["leased"],
            row["dead_count"],
            row["oldest"],
        )
        for row in rows
    }
    for name in Queue.objects.values_list("name", flat=True):
        stats.setdefault(name, QueueStats(name))
    return sorted(stats.values(), key=lambda s: s.name)
