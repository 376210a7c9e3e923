"""Operator pages: /info (HTML) and /metrics (Prometheus)."""

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.http import HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_safe
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.utils import floatToGoString

from . import counters, domain, runtime
from .api.auth import bearer_token, is_valid_token
from .api.errors import error_response
from .api.inputs import QUEUE_NAME, after_id
from .models import Message

PAGE_SIZE = 50


def _open_to(request) -> bool:
    """Open like the API: to everyone unless MQ_API_TOKENS is set, then to
    staff users and bearers of a token."""
    if not settings.MQ_API_TOKENS or request.user.is_staff:
        return True
    token = bearer_token(request)
    return token is not None and is_valid_token(token)


# The pages only read: any other method is a 405 (JSON, see errors), not a
# CSRF failure, since nothing here acts on a form.
@csrf_exempt
@require_safe
def info(request):
    if not _open_to(request):
        return redirect_to_login(request.get_full_path(), "admin:login")
    now = timezone.now()
    queue = request.GET.get("queue") or None
    after = after_id(request.GET.get("after", ""))
    # The queue comes along: a message's state depends on its queue's max_attempts.
    messages = Message.objects.select_related("queue").filter(id__gt=after)
    if queue:
        # A name no queue can have matches nothing (and a NUL in it would make
        # PostgreSQL refuse the query).
        valid = QUEUE_NAME.fullmatch(queue)
        messages = messages.filter(queue_id=queue) if valid else messages.none()
    page = list(messages.order_by("id")[: PAGE_SIZE + 1])
    rows = [(message, message.state(now)) for message in page[:PAGE_SIZE]]
    return render(
        request,
        "messages_app/info.html",
        {
            "now": now,
            "queues": domain.queue_stats(now),
            "rows": rows,
            "queue": queue,
            "after": after,
            "next_after": page[PAGE_SIZE - 1].id if len(page) > PAGE_SIZE else None,
        },
    )


# The counters of /metrics: (name without _total, column of counters.COUNTERS, help).
COUNTER_METRICS = [
    ("mq_messages_sent", "sent", "Messages sent."),
    ("mq_messages_delivered", "delivered", "Deliveries (leases handed out)."),
    ("mq_messages_redelivered", "redelivered", "Deliveries with attempts > 1."),
    ("mq_messages_acked", "acked", "Messages marked done."),
    ("mq_messages_given_back", "given_back", "Messages given back (nack)."),
    ("mq_messages_expired", "expired", "Leases seen run out (by a claim or requeue_expired)."),
    ("mq_messages_dead", "died", "Messages that became dead."),
    ("mq_messages_redriven", "redriven", "Dead messages made ready again."),
    ("mq_messages_purged", "purged", "Messages purged, or deleted with their queue."),
]


def counter_metrics(queues: list[str]):
    """The stored counters of every server process (this one's pending counts
    stored first), so every process reports the same totals."""
    runtime.current().counters.flush()
    totals = counters.totals(queues)
    families = [
        (column, CounterMetricFamily(name, text, labels=["queue"]))
        for name, column, text in COUNTER_METRICS
    ]
    processing = HistogramMetricFamily(
        "mq_processing_seconds", "Processing time: from delivery to ack.", labels=["queue"]
    )
    for queue in queues:
        row = totals.get(queue, {})
        for column, family in families:
            family.add_metric([queue], row.get(column, 0))
        cumulative, buckets = 0, []
        for bound, column in zip(
            [*counters.PROCESSING_BOUNDS, float("inf")], counters.PROCESSING, strict=True
        ):
            cumulative += row.get(column, 0)
            buckets.append((floatToGoString(bound), cumulative))
        processing.add_metric([queue], buckets, sum_value=row.get("processing_seconds", 0))
    yield from (family for _, family in families)
    yield processing


class QueueCollector:
    """Gauges and counters read from the database at scrape time, so every
    server process reports the same numbers."""

    def collect(self):
        now = timezone.now()
        messages = GaugeMetricFamily(
            "mq_messages", "Messages stored, by queue and state.", labels=["queue", "state"]
        )
        oldest = GaugeMetricFamily(
            "mq_oldest_message_age_seconds", "Age of the oldest stored message.", labels=["queue"]
        )
        queue_stats = domain.queue_stats(now)
        for stats in queue_stats:
            for state in ("ready", "delayed", "leased", "dead"):
                messages.add_metric([stats.name, state], getattr(stats, state))
            if stats.oldest_created_at:
                oldest.add_metric([stats.name], (now - stats.oldest_created_at).total_seconds())
        # This process's long polling (each server process has its own).
        waiters = runtime.current().waiters
        waiting = GaugeMetricFamily(
            "mq_waiting_requests",
            "Long-polls waiting in the server process that answered this scrape.",
            labels=["queue"],
        )
        for queue, count in waiters.waiting().items():
            waiting.add_metric([queue], count)
        wakeups = CounterMetricFamily(
            "mq_long_poll_wakeups",
            "Wake-ups of waiting long-polls in the server process that answered this scrape.",
            labels=["queue"],
        )
        for queue, count in waiters.wakeups.copy().items():
            wakeups.add_metric([queue], count)
        yield messages
        yield oldest
        yield waiting
        yield wakeups
        yield from counter_metrics([stats.name for stats in queue_stats])


registry = CollectorRegistry(auto_describe=False)
registry.register(QueueCollector())


@csrf_exempt
@require_safe
def metrics(request):
    if not _open_to(request):
        return error_response(
            "unauthorized",
            "/metrics needs Authorization: Bearer <token>",
            {"WWW-Authenticate": 'Bearer realm="message-queue"'},
        )
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
