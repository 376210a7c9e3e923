"""schemathesis hooks for .ci/fuzz.py: count the requests, the 5xx answers and the
"stray writes" (a request answered 4xx after which the stored queues, messages or
idempotency keys differ), and keep long-polls short.

Runs inside schemathesis's process with the server's DATABASE_URL, reading the
database through the project's models; schemathesis sends one request at a time
(--workers 1), so what changed between before and after a call is that call's doing.
"""

import atexit
import json
import os

import django
import schemathesis

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mq_project.settings")
django.setup()

from django.db.models import Count, Max, Min, Q, Sum  # noqa: E402

from messages_app.models import IdempotencyKey, Message, Queue  # noqa: E402

# A long-poll on an empty queue holds its request up to `wait` (≤ 20) seconds: the
# fuzzer's waits are cut to this, so the run spends its time on many requests.
LONGEST_WAIT = 0.05

stats = {"requests": 0, "server_errors": 0, "refused": 0, "stray_writes": 0, "examples": []}
_before: dict[int, tuple] = {}


def stored() -> tuple:
    """What is stored, in a few aggregates: every queue row, and for messages and
    keys their number, ids, attempts, leases, deaths and visibility times. (Digesting
    every row made each request 60 ms slower at a few thousand messages.)"""
    return (
        list(Queue.objects.order_by("name").values_list()),
        Message.objects.aggregate(
            Count("id"),
            Sum("id"),
            Max("id"),
            Sum("attempts"),
            Count("lease"),
            Min("visible_at"),
            Max("visible_at"),
            dead=Count("id", filter=Q(dead=True)),
        ),
        IdempotencyKey.objects.aggregate(Count("id"), Sum("message_id"), Max("created_at")),
    )


@schemathesis.hook
def before_call(context, case, kwargs):
    wait = (case.query or {}).get("wait")
    try:
        if float(wait) > LONGEST_WAIT:
            case.query["wait"] = LONGEST_WAIT
    except (TypeError, ValueError, OverflowError):
        pass
    _before[id(case)] = stored()


@schemathesis.hook
def after_call(context, case, response):
    stats["requests"] += 1
    if response.status_code >= 500:
        stats["server_errors"] += 1
    before = _before.pop(id(case), None)
    if 400 <= response.status_code < 500:
        stats["refused"] += 1
        if before is not None and stored() != before:
            stats["stray_writes"] += 1
            stats["examples"].append(f"{case.method} {case.formatted_path} {response.status_code}")


@atexit.register
def _write_stats():
    with open(os.environ["FUZZ_STATS"], "w") as file:
        json.dump(stats, file)
