"""Queues and messages; the queue states as QuerySet methods, by the rules of
``states``."""

import re

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

from . import states

# The largest max_attempts one can set.
MAX_ATTEMPTS = 1_000_000
# SQS's bound for a lease; long enough for any handler, short enough to notice a lost consumer.
MAX_LEASE_SECONDS = 12 * 60 * 60

QUEUE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,80}")
QUEUE_NAME_RULE = "a queue name is 1-80 letters, digits, '-', '_' or '.'"


def validate_queue_name(name: str) -> None:
    """The API's rule for queue names, for forms (the admin's)."""
    if not QUEUE_NAME.fullmatch(name):
        raise ValidationError(QUEUE_NAME_RULE)


class Queue(models.Model):
    """A named queue; its row is created the first time a message is sent to it."""

    name = models.CharField(max_length=80, primary_key=True, validators=[validate_queue_name])
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
    # Where a message that dies here goes, ready, its attempts reset; none: it stays dead here.
    dead_letter_queue = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="dead_letter_sources",
        help_text="Queue that receives this queue's dead messages, ready; empty: they stay here.",
    )
    # The SQS endpoint's queue attributes that have no native meaning (messages_app/sqs).
    sqs_attributes = models.JSONField(default=dict, blank=True)
    tags = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def effective_timeout(self) -> float:
        return states.effective_timeout(self.timeout)

    def effective_max_attempts(self) -> int:
        return states.effective_max_attempts(self.max_attempts)

    def clean(self) -> None:
        if self.dead_letter_queue_id is not None and self.dead_letter_queue_id == self.name:
            raise ValidationError(
                {"dead_letter_queue": "a queue cannot be its own dead-letter queue"}
            )


class MessageQuerySet(models.QuerySet):
    """The states of ``states``, each message judged by its own queue's limit."""

    def alive(self):
        return self.filter(states.ALIVE)

    def ready(self, now=None):
        return self.filter(states.ready(now or timezone.now(), states.max_attempts_expression()))

    def delayed(self, now=None):
        return self.filter(states.delayed(now or timezone.now()))

    def leased(self, now=None):
        return self.filter(states.leased(now or timezone.now()))

    def expired(self, now=None):
        return self.filter(states.expired(now or timezone.now()))

    def spent(self, now=None):
        return self.filter(states.spent(now or timezone.now(), states.max_attempts_expression()))

    def dead(self, now=None):
        return self.filter(states.dead(now or timezone.now(), states.max_attempts_expression()))

    def in_state(self, state: str, now=None):
        return getattr(self, state)(now)


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
    # SQS message attributes as JSON text ({name: {DataType, StringValue|BinaryValue}}); null: none.
    attributes = models.TextField(null=True, blank=True)  # noqa: DJ001 (null: none sent)
    # When it was first delivered (SQS's ApproximateFirstReceiveTimestamp); null: never.
    first_received_at = models.DateTimeField(null=True, blank=True)
    # The queue it died in, when it was moved to that queue's dead-letter queue.
    dead_letter_source = models.CharField(max_length=80, null=True, blank=True)  # noqa: DJ001

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
        """This message's state (one of ``states.STATES``), by the rules of ``states``."""
        rules = states.state_rules(now or timezone.now(), self.queue.effective_max_attempts())
        return next(name for name, rule in rules.items() if states.holds(rule, self))


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


class CounterBucket(models.Model):
    """What happened to a queue's messages in one minute (``span`` 60), one hour
    (3600), or ever (0, ``start`` at the epoch: the totals of /metrics).

    Server processes count in memory and add their counts here every few
    seconds (``counters``), so the numbers survive restarts and add up across
    processes. The depth columns are a sample of the queue's counts taken
    during the bucket (null: none taken).
    """

    queue = models.CharField(max_length=80)
    span = models.PositiveIntegerField()
    start = models.DateTimeField()
    sent = models.BigIntegerField(default=0)
    delivered = models.BigIntegerField(default=0)
    redelivered = models.BigIntegerField(default=0)
    acked = models.BigIntegerField(default=0)
    given_back = models.BigIntegerField(default=0)
    expired = models.BigIntegerField(default=0)
    died = models.BigIntegerField(default=0)
    redriven = models.BigIntegerField(default=0)
    purged = models.BigIntegerField(default=0)
    # Processing time (delivery to ack): a histogram, one column per bucket of
    # counters.PROCESSING_BOUNDS (seconds, upper bounds) and one above them all.
    processing_0 = models.BigIntegerField(default=0)
    processing_1 = models.BigIntegerField(default=0)
    processing_2 = models.BigIntegerField(default=0)
    processing_3 = models.BigIntegerField(default=0)
    processing_4 = models.BigIntegerField(default=0)
    processing_5 = models.BigIntegerField(default=0)
    processing_6 = models.BigIntegerField(default=0)
    processing_7 = models.BigIntegerField(default=0)
    processing_8 = models.BigIntegerField(default=0)
    processing_9 = models.BigIntegerField(default=0)
    processing_10 = models.BigIntegerField(default=0)
    processing_11 = models.BigIntegerField(default=0)
    processing_12 = models.BigIntegerField(default=0)
    processing_13 = models.BigIntegerField(default=0)
    processing_14 = models.BigIntegerField(default=0)
    processing_seconds = models.FloatField(default=0)
    ready = models.BigIntegerField(null=True)
    leased = models.BigIntegerField(null=True)
    delayed = models.BigIntegerField(null=True)
    dead = models.BigIntegerField(null=True)

    class Meta:
        constraints = [
            # The key the flusher's upsert adds to.
            models.UniqueConstraint(fields=["queue", "span", "start"], name="counter_bucket_key"),
        ]
        indexes = [
            # Pruning: the buckets of one span older than its history.
            models.Index(fields=["span", "start"], name="counter_bucket_age_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.queue}@{self.start:%Y-%m-%d %H:%M}/{self.span}s"
