"""Counters that last: what happened to each queue's messages, per minute.

Each server process counts in memory: the hot path adds to a row of numbers in
a dict under a lock, nothing else (not even a look at the clock). A background
thread (started with the first count) adds those numbers to the database every
``MQ_COUNTERS_FLUSH`` seconds, and once more when the process exits normally:
an upsert that adds, into the minute of the flush, its hour and the queue's
totals (``models.CounterBucket``), so the numbers survive restarts and add up
across processes. A count lands in the minute it is flushed in, at most
``MQ_COUNTERS_FLUSH`` seconds after it happened. A ``kill -9`` loses what was
counted since the last flush. Once a
minute the thread also samples every queue's depth (the counts of /queues) into
the minute and the hour, and prunes minute buckets older than ``MINUTES_KEPT``
and hour buckets older than ``HOURS_KEPT``.

The processing time (delivery to ack) needs the delivery's time at the ack,
which may come to another process: the lease token starts with it
(``new_lease``). Whether a delivery followed a lease that ran out is marked by
the claim in the token's last character (``EXPIRED_MARK``), so that expiry is
counted where it is observed without another query.
"""

import bisect
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from multiprocessing.util import Finalize

from django.conf import settings
from django.db import connection

from .models import CounterBucket

logger = logging.getLogger(__name__)

COUNTERS = (
    "sent",
    "delivered",
    "redelivered",  # deliveries with attempts > 1
    "acked",
    "given_back",
    "expired",  # leases seen run out, by a claim or requeue_expired
    "died",
    "redriven",
    "purged",  # purged, or deleted with their queue
)
SENT, DELIVERED, REDELIVERED, ACKED, GIVEN_BACK, EXPIRED, DIED, REDRIVEN, PURGED = range(9)
# Upper bounds (seconds) of the processing-time histogram's buckets; one more
# bucket holds everything above.
PROCESSING_BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
PROCESSING = tuple(f"processing_{i}" for i in range(len(PROCESSING_BOUNDS) + 1))
# The columns a flush adds to, in the order of a pending row.
ADDED = (*COUNTERS, *PROCESSING, "processing_seconds")
_FIRST_BUCKET = len(COUNTERS)
_SECONDS = len(ADDED) - 1
# The columns a depth sample overwrites.
DEPTH = ("ready", "leased", "delayed", "dead")

MINUTE, HOUR, EVER = 60, 3600, 0
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MINUTES_KEPT = timedelta(hours=25)
HOURS_KEPT = timedelta(days=31)
# The stats windows: (bucket span, number of buckets).
WINDOWS = {"1h": (MINUTE, 60), "24h": (MINUTE, 24 * 60), "30d": (HOUR, 30 * 24)}

# The lease token: the delivery time (milliseconds since the epoch, 11 hex
# digits), 20 random hex digits, and a mark: FRESH_MARK as the domain makes it,
# EXPIRED_MARK when the claim found the message's previous lease run out.
FRESH_MARK, EXPIRED_MARK = "n", "e"
LEASE_TOKEN = re.compile(rf"[0-9a-f]{{31}}[{FRESH_MARK}{EXPIRED_MARK}]")


def new_lease(now: datetime) -> str:
    return f"{int(now.timestamp() * 1000):011x}{secrets.token_hex(10)}{FRESH_MARK}"


def after_expiry(lease: str) -> str:
    """The token a claim stores instead of ``lease`` when the previous lease ran out."""
    return lease[:-1] + EXPIRED_MARK


def delivered_at(lease: str | None) -> float | None:
    """The delivery time a lease token of ours carries (seconds since the epoch)."""
    try:
        return int(lease[:11], 16) / 1000
    except (TypeError, ValueError):
        return None


class Counters:
    """This process's counts not yet flushed, by (queue, minute)."""

    def __init__(self, store, sample_depth: Callable[[datetime], dict]):
        self.store = store
        # now -> {queue: store.Counts}: the depth of every queue.
        self._sample_depth = sample_depth
        self._lock = threading.Lock()
        self._pending: dict[str, list] = {}
        self._flushing = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._finalizer: Finalize | None = None
        self._housekept = 0  # the minute of the last depth sample and prune

    def _new_row(self, queue: str) -> list:
        """A pending row for ``queue`` (call with the lock held)."""
        row = self._pending[queue] = [0] * len(ADDED)
        if self._thread is None:
            self._start()
        return row

    def add(self, queue: str, counter: int, n: int = 1) -> None:
        with self._lock:
            (self._pending.get(queue) or self._new_row(queue))[counter] += n

    def delivered(self, queue: str, rows: list) -> None:
        """``rows`` (the store's ``ClaimedRow``) were delivered."""
        redelivered = expired = 0
        for row in rows:
            if row.attempts > 1:
                redelivered += 1
                if row.lease[-1:] == EXPIRED_MARK:
                    expired += 1
        with self._lock:
            pending = self._pending.get(queue) or self._new_row(queue)
            pending[DELIVERED] += len(rows)
            pending[REDELIVERED] += redelivered
            pending[EXPIRED] += expired

    def acked(self, queue: str, leases: Iterable[str | None], now: datetime) -> None:
        """Deliveries with ``leases`` (their stored tokens) were done at ``now``."""
        now = now.timestamp()
        with self._lock:
            pending = self._pending.get(queue) or self._new_row(queue)
            for lease in leases:
                pending[ACKED] += 1
                start = delivered_at(lease)
                if start is not None:
                    seconds = max(now - start, 0.0)
                    pending[_FIRST_BUCKET + bisect.bisect_left(PROCESSING_BOUNDS, seconds)] += 1
                    pending[_SECONDS] += seconds

    def forget(self, queue: str) -> None:
        """Drop ``queue``'s pending counts (it was deleted, with its history)."""
        with self._lock:
            self._pending.pop(queue, None)

    # The background thread.

    def _start(self) -> None:
        if not settings.MQ_COUNTERS_FLUSH:
            return
        self._thread = threading.Thread(target=self._run, name="mq-counters", daemon=True)
        self._thread.start()
        # Run at the process's exit, also in a granian worker (a multiprocessing
        # child, which skips atexit handlers).
        self._finalizer = Finalize(self, self._flush_at_exit, exitpriority=10)

    def close(self) -> None:
        """Stop the thread; what is pending is not flushed (see ``flush``)."""
        self._stop.set()
        if self._finalizer is not None:
            self._finalizer.cancel()

    def _run(self) -> None:
        while not self._stop.wait(settings.MQ_COUNTERS_FLUSH):
            try:
                self.flush()
                self.housekeeping()
            except Exception:
                logger.exception("could not store the counters; trying again")
            finally:
                connection.close()

    def _flush_at_exit(self) -> None:
        try:
            self.flush()
        except Exception:
            logger.exception("could not store the last counters at exit")

    # What the thread does; the tests call these directly.

    def flush(self) -> None:
        """Add what is pending to the buckets of this minute, its hour and the
        totals (kept pending if that fails)."""
        with self._flushing:
            with self._lock:
                pending, self._pending = self._pending, {}
            if not pending:
                return
            now = datetime.fromtimestamp(time.time(), UTC)
            rows = [
                ((queue, span, _start(now, span)), row)
                for queue, row in sorted(pending.items())
                for span in (EVER, MINUTE, HOUR)
            ]
            try:
                self.store.add_counters(rows)
            except Exception:
                with self._lock:
                    for queue, row in pending.items():
                        total = self._pending.get(queue) or self._new_row(queue)
                        for i, n in enumerate(row):
                            total[i] += n
                raise

    def housekeeping(self, now: datetime | None = None) -> None:
        """At most once a minute: sample the depth of every queue, and prune."""
        now = now or datetime.fromtimestamp(time.time(), UTC)
        minute = int(now.timestamp()) // MINUTE
        if minute == self._housekept:
            return
        self._housekept = minute
        self.sample_depth(now)
        CounterBucket.objects.filter(span=MINUTE, start__lt=now - MINUTES_KEPT).delete()
        CounterBucket.objects.filter(span=HOUR, start__lt=now - HOURS_KEPT).delete()

    def sample_depth(self, now: datetime) -> None:
        """Store every queue's counts as the depth of this minute and this hour."""
        rows = []
        for queue, counts in self._sample_depth(now).items():
            depth = [counts.ready, counts.leased, counts.delayed, counts.dead]
            for span in (MINUTE, HOUR):
                rows.append(((queue, span, _start(now, span)), depth))
        if rows:
            self.store.set_depth(sorted(rows))


def _start(moment: datetime, span: int) -> datetime:
    seconds = int(moment.timestamp())
    return datetime.fromtimestamp(seconds - seconds % span, UTC) if span else EPOCH


# Reading them back.


@dataclass(frozen=True)
class Bucket:
    """One minute or hour of a queue's history."""

    time: datetime  # its start
    sent: int = 0
    delivered: int = 0
    redelivered: int = 0
    acked: int = 0
    given_back: int = 0
    expired: int = 0
    died: int = 0
    redriven: int = 0
    purged: int = 0
    # The depth sampled during the bucket; None when no sample was taken.
    ready: int | None = None
    leased: int | None = None
    delayed: int | None = None
    dead: int | None = None
    processed: int = 0  # acks with a processing time
    processing_p50: float | None = None  # seconds
    processing_p99: float | None = None


@dataclass(frozen=True)
class History:
    queue: str
    window: str
    span: int  # seconds per bucket
    buckets: list[Bucket]  # oldest first, one per span, the current one last


def history(queue: str, window: str, now: datetime) -> History:
    span, count = WINDOWS[window]
    last = _start(now, span)
    first = last - timedelta(seconds=span * (count - 1))
    stored = {
        row["start"]: row
        for row in CounterBucket.objects.filter(
            queue=queue, span=span, start__gte=first, start__lte=last
        ).values("start", *ADDED, *DEPTH)
    }
    buckets = []
    for i in range(count):
        moment = first + timedelta(seconds=span * i)
        row = stored.get(moment)
        buckets.append(Bucket(moment) if row is None else _bucket(moment, row))
    return History(queue, window, span, buckets)


def _bucket(moment: datetime, row: dict) -> Bucket:
    histogram = [row[column] for column in PROCESSING]
    return Bucket(
        moment,
        **{name: row[name] for name in (*COUNTERS, *DEPTH)},
        processed=sum(histogram),
        processing_p50=quantile(0.5, histogram),
        processing_p99=quantile(0.99, histogram),
    )


def quantile(q: float, histogram: list[int]) -> float | None:
    """The ``q`` quantile of a processing-time histogram, interpolated within its
    bucket as Prometheus's histogram_quantile does; None when it is empty."""
    total = sum(histogram)
    if not total:
        return None
    rank = q * total
    below = 0
    for i, n in enumerate(histogram):
        if n and below + n >= rank:
            if i == len(PROCESSING_BOUNDS):
                return float(PROCESSING_BOUNDS[-1])
            lower = PROCESSING_BOUNDS[i - 1] if i else 0.0
            return lower + (PROCESSING_BOUNDS[i] - lower) * (rank - below) / n
        below += n
    return float(PROCESSING_BOUNDS[-1])


def totals(queues: list[str]) -> dict[str, dict]:
    """Every counter and the histogram of each of ``queues``, since it was first used."""
    rows = CounterBucket.objects.filter(span=EVER, queue__in=queues).values("queue", *ADDED)
    return {row["queue"]: row for row in rows}
