"""Queues and messages, and the queue states as QuerySet methods.

A message's state follows from its columns, its queue's ``max_attempts`` and
the clock, so no timer or cron job is needed for a lease to end:

- ready:   not dead, ``visible_at <= now``, deliveries left (a lease that ran
           out counts too: ``lease`` is still set, but the message is claimable)
- delayed: not dead, no lease, ``visible_at > now``
- leased:  not dead, a lease, ``visible_at > now`` (``visible_at`` is the lease's end)
- dead:    ``dead``, or its last allowed delivery's lease ran out; never delivered again
"""

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import F, Q, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

# No limit on deliveries: larger than any attempts counter will ever get.
UNLIMITED_ATTEMPTS = 2**31 - 1
# The largest max_attempts one can set.
MAX_ATTEMPTS = 1_000_000
# SQS's bound for a lease; long enough for any handler, short enough to notice a lost consumer.
MAX_LEASE_SECONDS = 12 * 60 * 60


def attempts_limit():
    """Each message's queue's ``max_attempts``, or ``MQ_MAX_ATTEMPTS``, as an expression."""
    return Coalesce(F("queue__max_attempts"), Value(settings.MQ_MAX_ATTEMPTS or UNLIMITED_ATTEMPTS))


class Queue(models.Model):
    """A named queue; its row is created the first time a message is sent to it."""

    name = models.CharField(max_length=80, primary_key=True)
    timeout = models.FloatField(
        null=True,
        blank=True,
        validators=[MinValueValidator(0.001), MaxValueValidator(MAX_LEASE_SECONDS)],
        help_text="Default lease in seconds; empty: PENDING_TIMEOUT.",
    )
    max_attempts = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_ATTEMPTS)],
        help_text="Deliveries before a message is dead; empty: MQ_MAX_ATTEMPTS.",
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class MessageQuerySet(models.QuerySet):
    def alive(self):
        # ``dead IN (false)``, not ``dead=False``: on SQLite the ORM writes the
        # latter as ``NOT dead``, which cannot seek in the indexes below.
        return self.filter(dead__in=[False])

    def ready(self, now=None):
        return self.alive().filter(
            visible_at__lte=now or timezone.now(), attempts__lt=attempts_limit()
        )

    def delayed(self, now=None):
        return self.alive().filter(lease__isnull=True, visible_at__gt=now or timezone.now())

    def leased(self, now=None):
        return self.alive().filter(lease__isnull=False, visible_at__gt=now or timezone.now())

    def expired(self, now=None):
        """Leased once, the lease has run out, and nobody has claimed it since."""
        return self.alive().filter(lease__isnull=False, visible_at__lte=now or timezone.now())

    def spent(self, now=None):
        """Alive in storage, but its last allowed delivery is over: dead."""
        return self.alive().filter(
            visible_at__lte=now or timezone.now(), attempts__gte=attempts_limit()
        )

    def dead(self, now=None):
        spent = Q(visible_at__lte=now or timezone.now(), attempts__gte=attempts_limit())
        return self.filter(Q(dead=True) | spent)


class Message(models.Model):
    id = models.BigAutoField(primary_key=True)
    queue = models.ForeignKey(
        Queue, on_delete=models.CASCADE, related_name="messages", db_index=False
    )
    # The payload's JSON text, stored as sent and spliced into responses as is.
    payload = models.TextField()
    created_at = models.DateTimeField(default=timezone.now)
    # When the message may next be delivered: its send time (plus any delay), or
    # the end of its current lease.
    visible_at = models.DateTimeField(default=timezone.now)
    # The token of the latest delivery; null until the first delivery.
    lease = models.CharField(max_length=32, null=True, blank=True)  # noqa: DJ001 (null: no lease)
    attempts = models.PositiveIntegerField(default=0)
    dead = models.BooleanField(default=False)

    objects = MessageQuerySet.as_manager()

    class Meta:
        ordering = ["id"]
        indexes = [
            # The claim: "smallest id of queue Q that is not dead" is a range
            # scan of this index, whatever the backlog (see tests/test_indexes.py).
            models.Index(fields=["queue", "dead", "id"], name="message_claim_idx"),
            # On SQLite and MariaDB, migration 0003 adds message_visible_idx
            # (queue, dead, visible_at): what is not deliverable yet (leased,
            # delayed) for the counts of /info and /queues and the long-poll
            # watcher's next wake-up. Not on PostgreSQL: an index on visible_at,
            # which every claim changes, would stop its updates being HOT
            # (measured: the claim loop three times slower).
        ]

    def __str__(self) -> str:
        return f"{self.queue_id}#{self.id}"

    def state(self, now=None) -> str:
        """This message's state, by the same rules as the QuerySet methods."""
        now = now or timezone.now()
        if self.visible_at > now and not self.dead:
            return "delayed" if self.lease is None else "leased"
        limit = self.queue.max_attempts or settings.MQ_MAX_ATTEMPTS or UNLIMITED_ATTEMPTS
        return "dead" if self.dead or self.attempts >= limit else "ready"


class IdempotencyKey(models.Model):
    """A producer's key, kept for the dedup window after its message was sent,
    also after that message is done. The unique constraint is what makes two
    concurrent sends with one key store one message."""

    queue = models.ForeignKey(Queue, on_delete=models.CASCADE, db_index=False)
    key = models.CharField(max_length=200)
    message_id = models.BigIntegerField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["queue", "key"], name="idempotency_key_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.queue_id}:{self.key}"
