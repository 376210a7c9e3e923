"""Baseline: the queue's own SQL without HTTP, with the same concurrency.

The three statements the server runs per message: an INSERT per send, the
claim (the store's ``claim``, one message) per receive, and a
DELETE with the lease per ack. Each producer and consumer is an OS process
with its own Django connection (the product's settings: SQLite WAL +
IMMEDIATE, the PostgreSQL pool), so Python, the driver and the database are
measured, and nothing else.
"""

import os
import secrets
import sys
import time
from datetime import timedelta

from common import fan_out, make_payload, read_payload, summarize, wait_until
from server import ROOT

POLL_PAUSE = 0.002  # as the HTTP consumers
LEASE_SECONDS = 10
NO_ATTEMPTS_LIMIT = 2**31 - 1


def _django(url: str) -> None:
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("SECRET_KEY", "bench-only-secret-key")
    os.environ["DJANGO_SETTINGS_MODULE"] = "mq_project.settings"
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def _worker(spec: dict, progress, start_at: float) -> dict:
    _django(spec["url"])
    from django.db import connection
    from django.utils import timezone

    from messages_app import runtime
    from messages_app.store.base import TABLE

    insert = (
        f"INSERT INTO {TABLE} (queue_id, payload, created_at, visible_at, attempts, dead)"
        " VALUES (%s, %s, %s, %s, 0, %s) RETURNING id"
    )
    delete = f"DELETE FROM {TABLE} WHERE queue_id = %s AND id = %s AND dead = %s AND lease = %s"
    adapt = connection.ops.adapt_datetimefield_value
    report = {"acked": 0, "requests": 0, "empty": 0, "errors": {}, "received": [], "latency": []}
    connection.ensure_connection()
    store = runtime.current().store
    wait_until(start_at)
    cpu = time.process_time()
    with connection.cursor() as cursor:
        for i in spec["indices"]:  # producer
            sent = time.time()
            report["first_send"] = report.get("first_send") or sent
            now = adapt(timezone.now())
            cursor.execute(insert, ["default", make_payload(i, sent), now, now, False])
            cursor.fetchone()
            report["requests"] += 1
        while spec["consumer"] and not progress.done(spec["target"]):
            now = timezone.now()
            lease = secrets.token_hex(16)
            end = now + timedelta(seconds=LEASE_SECONDS)
            rows = store.claim("default", 1, lease, now, end, NO_ATTEMPTS_LIMIT)
            report["requests"] += 1
            if not rows:
                report["empty"] += 1
                if progress.stalled(spec["stall"]):
                    break
                time.sleep(POLL_PAUSE)
                continue
            index, sent = read_payload(rows[0].payload)
            report["received"].append(index)
            report["latency"].append(time.time() - sent)
            cursor.execute(delete, ["default", rows[0].id, False, lease])
            report["requests"] += 1
            if cursor.rowcount == 1:
                progress.ack(1)
                report["acked"] += 1
                report["last_ack"] = time.time()
            else:
                errors = report["errors"]
                errors["delete matched nothing"] = errors.get("delete matched nothing", 0) + 1
    report["cpu"] = time.process_time() - cpu
    return report


def cycle(url: str, *, messages: int, producers: int, consumers: int, stall: float = 15.0) -> dict:
    """P producer and C consumer processes move ``messages`` through the table."""
    specs = [
        {"url": url, "indices": range(j, messages, producers), "consumer": False}
        for j in range(producers)
    ]
    specs += [
        {"url": url, "indices": (), "consumer": True, "target": messages, "stall": stall}
        for _ in range(consumers)
    ]
    # Django's set-up in each process takes a moment before the common start.
    timeout = 120 + messages / 100  # generous: at least 100 messages/s
    reports, start_at = fan_out(_worker, specs, timeout=timeout, start_delay=3.0)
    return summarize(reports, start_at, messages)
