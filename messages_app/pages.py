"""Operator pages: the console (/info, /info/<name> and its actions) and /metrics.

The console is server-rendered HTML, readable without JavaScript; a few lines
of script in the page re-fetch it every few seconds and swap the parts marked
``data-live``. Every action calls a domain function, as the API does.
"""

import io
from dataclasses import dataclass
from datetime import datetime

import simplejson
from django.conf import settings
from django.contrib import messages as flash
from django.contrib.auth.views import redirect_to_login
from django.db.models import Q
from django.http import HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_safe
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.utils import floatToGoString
from rest_framework.exceptions import ParseError

from . import charts, counters, domain, runtime, states
from .api import inputs
from .api.auth import bearer_token, is_valid_token
from .api.errors import error_response
from .api.parsers import ExactJSONParser
from .errors import QueueError, QueueNotFound
from .models import QUEUE_NAME, Message, Queue

# Messages a page of the browse shows; leases and dead letters listed.
PAGE_SIZE = 20
LEASES_SHOWN = 20
DEAD_SHOWN = 10
# Characters of a pretty-printed payload shown before it is cut.
PAYLOAD_SHOWN = 4000
# Seconds between two refreshes of a page's live parts (its script).
REFRESH_SECONDS = 5
# A processing time's p99 past this share of the lease timeout gets a warning.
NEAR_TIMEOUT = 0.8
# The windows of a queue's charts (``domain.queue_history``), the first the default.
WINDOWS = ("1h", "24h", "30d")


def _open_to(request) -> bool:
    """Open like the API: to everyone unless MQ_API_TOKENS is set, then to
    staff users and bearers of a token."""
    if not settings.MQ_API_TOKENS or request.user.is_staff:
        return True
    token = bearer_token(request)
    return token is not None and is_valid_token(token)


def _login(request):
    return redirect_to_login(request.get_full_path(), "admin:login")


@dataclass(frozen=True)
class OverviewRow:
    stats: domain.QueueStats
    # Seconds since the oldest stored message was sent; None when there is none.
    oldest_age: float | None
    # Messages sent (in) and done (out) over the last minute.
    rate_in: float
    rate_out: float
    spark: dict[str, charts.Chart]


def _last_minute(history, now: datetime) -> tuple[float, float]:
    """Sent and done over the 60 s before ``now``: the current minute's bucket,
    and the part of the previous one still within them (assumed even)."""
    previous, current = history.buckets[-2:]
    share = 1 - (now - current.time).total_seconds() / history.span
    return (
        current.sent + previous.sent * share,
        current.acked + previous.acked * share,
    )


def _times(history) -> list[datetime]:
    return [bucket.time for bucket in history.buckets]


def _depth(bucket) -> int | None:
    """Messages stored at the bucket's sample; None when none was taken."""
    if bucket.ready is None:
        return None
    return bucket.ready + bucket.leased + bucket.delayed + bucket.dead


def _spark(history) -> dict[str, charts.Chart]:
    """The overview's chart of the last hour: the depth on a scale of its own,
    sent and done per minute on another."""
    size = {"width": 150, "height": 30, "margins": (3, 1, 3, 1)}
    times = _times(history)
    depth = {"depth": [_depth(b) for b in history.buckets]}
    rates = {name: [getattr(b, name) for b in history.buckets] for name in ("sent", "acked")}
    return {
        "depth": charts.line_chart("depth", times, depth, **size),
        "rates": charts.line_chart("sent and done", times, rates, **size),
    }


def _queue_charts(history, timeout: float) -> list[tuple[str, charts.Chart]]:
    """A queue's charts over one window: depth by state, the flow per bucket,
    the processing time against the lease timeout."""
    times = _times(history)
    per = "minute" if history.span == 60 else "hour"

    def values(name: str) -> list:
        return [getattr(bucket, name) for bucket in history.buckets]

    return [
        (
            "depth",
            charts.line_chart(
                "Depth", times, {s: values(s) for s in states.STATES}, unit="messages"
            ),
        ),
        (
            "flow",
            charts.line_chart(
                f"Per {per}",
                times,
                {name: values(name) for name in ("sent", "acked", "expired", "died")},
                {"acked": "done", "died": "dead"},
                unit=f"messages per {per}; totals in the legend",
                totals=True,
            ),
        ),
        (
            "processing",
            charts.line_chart(
                "Processing time, delivery to done",
                times,
                {
                    "processing_p50": values("processing_p50"),
                    "processing_p99": values("processing_p99"),
                },
                {"processing_p50": "p50", "processing_p99": "p99"},
                unit="seconds",
                mark=timeout,
                mark_label=f"lease timeout {timeout:g} s",
            ),
        ),
    ]


def _slowest_p99(history) -> float | None:
    """The largest processing-time p99 of the window's buckets; None if nothing was done."""
    measured = [b.processing_p99 for b in history.buckets if b.processing_p99 is not None]
    return max(measured) if measured else None


def _age(now: datetime, moment: datetime | None) -> float | None:
    return None if moment is None else max((now - moment).total_seconds(), 0.0)


# The pages only read: any other method is a 405 (JSON, see errors), not a
# CSRF failure, since nothing here acts on a form.
@csrf_exempt
@require_safe
def info(request):
    """The overview: a row per queue, a totals row."""
    if not _open_to(request):
        return _login(request)
    queue = request.GET.get("queue")
    if queue and QUEUE_NAME.fullmatch(queue):
        # The old /info?queue=<name> (its message list is the queue's page now).
        return HttpResponseRedirect(reverse("queue-page", args=[queue]))
    now = timezone.now()
    stats = domain.queue_stats(now)
    rows = []
    for queue_stats in stats:
        try:
            history = domain.queue_history(queue_stats.name, "1h", now)
        except QueueNotFound:  # deleted since it was counted
            continue
        rate_in, rate_out = _last_minute(history, now)
        age = _age(now, queue_stats.oldest_created_at)
        rows.append(OverviewRow(queue_stats, age, rate_in, rate_out, _spark(history)))
    ages = [row.oldest_age for row in rows if row.oldest_age is not None]
    totals = {
        state: sum(getattr(row.stats, state) for row in rows) for state in (*states.STATES, "total")
    }
    totals["rate_in"] = sum(row.rate_in for row in rows)
    totals["rate_out"] = sum(row.rate_out for row in rows)
    return render(
        request,
        "messages_app/info.html",
        {
            "now": now,
            "rows": rows,
            "totals": totals,
            "oldest_age": max(ages) if ages else None,
            "refresh_seconds": REFRESH_SECONDS,
        },
    )


@dataclass(frozen=True)
class BrowsedMessage:
    id: int
    state: str
    attempts: int
    age: float
    # Seconds until it may be delivered (lease end, delay end); None when it may now.
    visible_in: float | None
    payload: str  # pretty-printed JSON text, maybe cut
    cut: bool


def _json_value(text: str):
    """JSON text parsed as the API parses a body: numbers exact."""
    return ExactJSONParser().parse(io.BytesIO(text.encode()))


def pretty_json(text: str) -> str:
    """A stored payload's JSON text indented, numbers exactly as sent."""
    try:
        value = _json_value(text)
    except ParseError:
        return text
    return simplejson.dumps(value, indent=2, use_decimal=True, ensure_ascii=False)


def _browsed(message: Message, now: datetime) -> BrowsedMessage:
    state = message.state(now)
    payload = pretty_json(message.payload)
    waiting = state in ("leased", "delayed")
    return BrowsedMessage(
        id=message.id,
        state=state,
        attempts=message.attempts,
        age=_age(now, message.created_at),
        visible_in=(message.visible_at - now).total_seconds() if waiting else None,
        payload=payload[:PAYLOAD_SHOWN],
        cut=len(payload) > PAYLOAD_SHOWN,
    )


def _browse_page(in_queue, after: int) -> list[Message]:
    """The queue's first ``PAGE_SIZE + 1`` messages after id ``after``: the
    first of its live ones and of its dead ones, each a range of
    message_claim_idx (queue, dead, id), merged; one query over both flags
    would sort the whole queue at a million messages."""
    after_id = in_queue.filter(id__gt=after).order_by("id")
    alive = after_id.filter(states.ALIVE)[: PAGE_SIZE + 1]
    dead = after_id.filter(dead__in=[True])[: PAGE_SIZE + 1]
    return sorted([*alive, *dead], key=lambda message: message.id)[: PAGE_SIZE + 1]


@dataclass(frozen=True)
class Lease:
    id: int
    attempts: int
    seconds_left: float


def _queue_or_404(queue: str, now: datetime) -> domain.QueueStats | None:
    if not QUEUE_NAME.fullmatch(queue):
        return None
    found = domain.queue_stats(now, queues=[queue])
    return found[0] if found else None


def _no_queue(queue: str) -> HttpResponse:
    return error_response("not_found", f"no queue named {queue!r}")


@csrf_exempt
@require_safe
def queue_page(request, queue: str):
    """One queue: counts, settings, leases in flight, dead letters, a paged browse."""
    if not _open_to(request):
        return _login(request)
    now = timezone.now()
    stats = _queue_or_404(queue, now)
    if stats is None:
        return _no_queue(queue)
    after = inputs.after_id(request.GET.get("after", ""))
    in_queue = Message.objects.select_related("queue").filter(queue_id=queue)
    page = _browse_page(in_queue, after)
    leased = in_queue.filter(states.leased(now)).order_by("visible_at")[:LEASES_SHOWN]
    limit = states.effective_max_attempts(stats.max_attempts)
    # Without a limit only the stored flag makes a message dead: a range of
    # message_claim_idx. With one, the spent ones count too (as in the counts).
    dead = in_queue.filter(
        Q(dead__in=[True]) if limit == states.UNLIMITED_ATTEMPTS else states.dead(now, limit)
    ).order_by("-id")[:DEAD_SHOWN]
    window = request.GET.get("window")
    window = window if window in WINDOWS else WINDOWS[0]
    try:
        last_hour = domain.queue_history(queue, "1h", now)
        history = last_hour if window == "1h" else domain.queue_history(queue, window, now)
    except QueueNotFound:  # deleted since it was counted
        return _no_queue(queue)
    p99 = _slowest_p99(last_hour)
    return render(
        request,
        "messages_app/queue.html",
        {
            "now": now,
            "q": stats,
            "oldest_age": _age(now, stats.oldest_created_at),
            "leases": [
                Lease(m.id, m.attempts, (m.visible_at - now).total_seconds()) for m in leased
            ],
            "dead_letters": [_browsed(m, now) for m in dead],
            "browse": [_browsed(m, now) for m in page[:PAGE_SIZE]],
            "after": after,
            "page_size": PAGE_SIZE,
            "next_after": page[PAGE_SIZE - 1].id if len(page) > PAGE_SIZE else None,
            "other_queues": Queue.objects.exclude(name=queue).values_list("name", flat=True),
            "staff": request.user.is_staff,
            "refresh_seconds": REFRESH_SECONDS,
            "window": window,
            "windows": WINDOWS,
            "charts": _queue_charts(history, stats.effective_timeout),
            "p99": p99,
            "near_timeout": p99 is not None and p99 >= NEAR_TIMEOUT * stats.effective_timeout,
            "p99_share": round(100 * (p99 or 0) / stats.effective_timeout),
            "time_format": "M j" if window == "30d" else "H:i",
        },
    )


# The staff's actions on a queue: each reads its form, calls one domain
# function and says what it did. Purge and delete show a confirmation first (GET).


def _send(request, queue: str) -> str:
    try:
        value = _json_value(request.POST.get("payload", ""))
    except ParseError as exc:
        raise QueueError(f"the payload is not valid JSON: {exc.detail}", "invalid_payload") from exc
    delay = inputs.delay(request.POST.get("delay") or None)
    message_id, _ = domain.send(queue, inputs.payload_text(value), delay)
    return f"Message {message_id} sent."


def _purge(request, queue: str) -> str:
    return f"{domain.purge_queue(queue)} message(s) purged."


def _redrive(request, queue: str) -> str:
    return f"{domain.redrive_queue(queue)} dead message(s) redriven."


def _move(request, queue: str) -> str:
    to = inputs.queue_name(request.POST.get("to", ""))
    if to == queue:
        raise QueueError("dead messages are moved to another queue", "invalid_queue_name")
    return f"{domain.move_dead(queue, to)} dead message(s) moved to {to}."


def _settings(request, queue: str) -> str:
    max_attempts = request.POST.get("max_attempts") or None
    if max_attempts is not None:
        valid = max_attempts.isascii() and max_attempts.isdigit() and len(max_attempts) <= 9
        max_attempts = int(max_attempts) if valid else max_attempts
    domain.configure(
        queue,
        timeout=inputs.lease_timeout(request.POST.get("timeout") or None),
        max_attempts=inputs.max_attempts(max_attempts),
    )
    return "Settings saved."


def _delete(request, queue: str) -> str:
    return f"Queue {queue} deleted with its {domain.delete_queue(queue)} message(s)."


ACTIONS = {
    "send": _send,
    "purge": _purge,
    "redrive": _redrive,
    "move": _move,
    "settings": _settings,
    "delete": _delete,
}
# Actions that destroy messages: a GET shows what will go and asks to confirm.
CONFIRMED = {"purge", "delete"}


@require_http_methods(["GET", "HEAD", "POST"])
def queue_action(request, queue: str, action: str):
    if action not in ACTIONS:
        return error_response("not_found", f"no action {action!r} on a queue")
    if not request.user.is_staff:
        return error_response("forbidden", "the console's actions need a staff login")
    if request.method != "POST" and action not in CONFIRMED:
        return error_response(
            "method_not_allowed",
            f"{request.method} is not allowed here; allowed: POST",
            {"Allow": "POST"},
        )
    now = timezone.now()
    stats = _queue_or_404(queue, now)
    if stats is None:
        return _no_queue(queue)
    if request.method != "POST":
        return render(request, "messages_app/confirm.html", {"q": stats, "action": action})
    try:
        done = ACTIONS[action](request, queue)
    except QueueError as exc:
        return error_response(exc.code, exc.detail)
    flash.success(request, done)
    page = reverse("info") if action == "delete" else reverse("queue-page", args=[queue])
    return HttpResponseRedirect(page, status=303)


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
