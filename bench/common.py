"""What every workload shares: the payload format, running workers in OS
processes, and turning their reports into one result.

A payload is 100 bytes of JSON, ``{"i": <index>, "t": <send time>, "p": "xx..."}``:
the index counts duplicates and losses, the send time (wall clock, the same in
every process of this machine) gives the enqueue->receive latency.

A worker is a plain function ``worker(spec, progress, start_at) -> report`` run
in its own process (forked, so it shares the ``Progress`` counters). It
prepares, sleeps until ``start_at`` so that all workers begin together, works,
and returns a report dict with any of these keys:

- ``first_send`` / ``last_ack``: wall times of its first send and last ack
- ``acked``: messages acknowledged; ``received``: payload indices delivered
- ``latency``: enqueue->receive seconds per delivery
- ``requests``, ``empty``, ``errors`` (dict), ``cpu``: its own CPU seconds
"""

import json
import multiprocessing
import queue
import statistics
import time
import traceback
from collections import Counter

PAYLOAD_BYTES = 100


def make_payload(index: int, sent: float) -> str:
    """The JSON text of message ``index`` sent at ``sent``, padded to PAYLOAD_BYTES."""
    head = f'{{"i":{index},"t":{sent:.6f},"p":"'
    return head + "x" * (PAYLOAD_BYTES - len(head) - 2) + '"}'


def read_payload(value) -> tuple[int, float]:
    """(index, send time) from a payload given as JSON text or as the decoded object."""
    if isinstance(value, str | bytes):
        value = json.loads(value)
    return value["i"], value["t"]


def wait_until(moment: float) -> None:
    delay = moment - time.time()
    if delay > 0:
        time.sleep(delay)


class Progress:
    """Counters shared by the processes of one workload: messages acked, and
    messages whose send was refused (they will never arrive)."""

    def __init__(self, ctx):
        self._acked, self._refused = ctx.Value("q", 0), ctx.Value("q", 0)
        self._seen, self._seen_at = -1, time.time()

    @property
    def acked(self) -> int:
        return self._acked.value

    def ack(self, count: int) -> None:
        with self._acked.get_lock():
            self._acked.value += count

    def refuse(self, count: int) -> None:
        with self._refused.get_lock():
            self._refused.value += count

    def done(self, target: int) -> bool:
        """All ``target`` messages acked, or refused at the send."""
        return self._acked.value + self._refused.value >= target

    def stalled(self, seconds: float) -> bool:
        """Nothing acked, by any process, for ``seconds``: what is missing is lost."""
        if self._acked.value != self._seen:
            self._seen, self._seen_at = self._acked.value, time.time()
        return time.time() - self._seen_at > seconds


def _child(worker, spec, progress, start_at, reports) -> None:
    try:
        cpu = time.process_time()
        report = worker(spec, progress, start_at)
        report.setdefault("cpu", time.process_time() - cpu)
    except BaseException:  # report it to the parent rather than hang it
        report = {"failed": traceback.format_exc()}
    reports.put(report)


def fan_out(
    worker, specs: list, timeout: float, start_delay: float = 1.0, during=None
) -> tuple[list, float]:
    """Run ``worker(spec, ...)`` in one process per spec; return (reports, start_at).

    ``during(start_at)``, if given, runs here while the workers work.
    """
    ctx = multiprocessing.get_context("fork")
    progress = Progress(ctx)
    reports = ctx.Queue()
    start_at = time.time() + start_delay
    procs = [
        ctx.Process(target=_child, args=(worker, spec, progress, start_at, reports), daemon=True)
        for spec in specs
    ]
    for proc in procs:
        proc.start()
    results = []
    try:
        if during:
            during(start_at)
        for _ in procs:
            try:
                results.append(reports.get(timeout=max(1.0, start_at + timeout - time.time())))
            except queue.Empty:
                raise TimeoutError(f"workers still running after {timeout:.0f} s") from None
    finally:
        for proc in procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
    failed = [r["failed"] for r in results if "failed" in r]
    if failed:
        raise RuntimeError("a worker failed:\n" + failed[0])
    return results, start_at


def split(total: int, parts: int) -> list[int]:
    """``total`` spread over ``parts`` as evenly as possible."""
    return [total // parts + (1 if k < total % parts else 0) for k in range(parts)]


def percentile(sorted_values: list[float], fraction: float) -> float | None:
    if not sorted_values:
        return None
    return sorted_values[min(len(sorted_values) - 1, int(fraction * len(sorted_values)))]


def summarize(reports: list[dict], start_at: float, expected: int | None) -> dict:
    """One workload's result from its workers' reports.

    Throughput runs from the first send (or ``start_at`` when nothing was sent)
    to the last ack. With ``expected`` (messages sent by the workload), losses
    are the indices below it that never arrived.
    """
    sends = [r["first_send"] for r in reports if r.get("first_send")]
    acks = [r["last_ack"] for r in reports if r.get("last_ack")]
    first = min(sends) if sends else start_at
    seconds = (max(acks) - first) if acks else None
    acked = sum(r.get("acked", 0) for r in reports)
    received = Counter()
    for r in reports:
        received.update(r.get("received", ()))
    latency = sorted(x for r in reports for x in r.get("latency", ()))
    errors = Counter()
    for r in reports:
        errors.update(r.get("errors", {}))
    result = {
        "acked": acked,
        "seconds": seconds,
        "rate": acked / seconds if seconds else None,
        "duplicates": sum(n - 1 for n in received.values()),
        "lost": None if expected is None else expected - sum(1 for i in received if i < expected),
        "p50_ms": _ms(percentile(latency, 0.50)),
        "p99_ms": _ms(percentile(latency, 0.99)),
        "requests": sum(r.get("requests", 0) for r in reports),
        "empty": sum(r.get("empty", 0) for r in reports),
        "errors": dict(errors),
        "client_cpu_cores": (sum(r.get("cpu", 0) for r in reports) / seconds) if seconds else None,
    }
    return result


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


def stats(values: list) -> dict | None:
    """Median and min-max of the runs' values (None values are left out)."""
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}
