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
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from rest_framework.exceptions import ParseError

from . import domain, runtime, states
from .api import inputs
from .api.auth import bearer_token, is_valid_token
from .api.errors import error_response
from .api.parsers import ExactJSONParser
from .errors import QueueError
from .models import QUEUE_NAME, Message

# Messages a page of the browse shows; leases and dead letters listed.
PAGE_SIZE = 20
LEASES_SHOWN = 20
DEAD_SHOWN = 10
# Characters of a pretty-printed payload shown before it is cut.
PAYLOAD_SHOWN = 4000
# Seconds between two refreshes of a page's live parts (its script).
REFRESH_SECONDS = 5


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
    # Messages sent (in) and done (out) in the last minute; None without history.
    rate_in: int | None = None
    rate_out: int | None = None
    spark: object = None


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
    rows = [OverviewRow(s, _age(now, s.oldest_created_at)) for s in stats]
    ages = [row.oldest_age for row in rows if row.oldest_age is not None]
    totals = {state: sum(getattr(s, state) for s in stats) for state in (*states.STATES, "total")}
    totals["rate_in"] = totals["rate_out"] = None
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
    page = list(in_queue.filter(id__gt=after).order_by("id")[: PAGE_SIZE + 1])
    leased = in_queue.filter(states.leased(now)).order_by("visible_at")[:LEASES_SHOWN]
    limit = states.effective_max_attempts(stats.max_attempts)
    dead = in_queue.filter(
        Q(dead=True) if limit == states.UNLIMITED_ATTEMPTS else states.dead(now, limit)
    ).order_by("-id")[:DEAD_SHOWN]
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
            "other_queues": [s.name for s in domain.queue_stats(now) if s.name != queue],
            "staff": request.user.is_staff,
            "refresh_seconds": REFRESH_SECONDS,
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


class QueueCollector:
    """Gauges read from the database at scrape time, so every server process
    reports the same numbers."""

    def collect(self):
        now = timezone.now()
        messages = GaugeMetricFamily(
            "mq_messages", "Messages stored, by queue and state.", labels=["queue", "state"]
        )
        oldest = GaugeMetricFamily(
            "mq_oldest_message_age_seconds", "Age of the oldest stored message.", labels=["queue"]
        )
        for stats in domain.queue_stats(now):
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
