"""Baseline: RabbitMQ through pika, the way a careful user runs it.

A durable queue, persistent messages (delivery_mode=2), manual acks, P
producer and C consumer processes, each with its own BlockingConnection:

- one at a time: publisher confirms, each publish waits for its confirm;
  prefetch 1, one ack per message;
- batched: a transaction per 100 publishes; prefetch 100, one ack
  (``multiple=True``) per 100 messages.
"""

import time

import pika
from common import fan_out, make_payload, read_payload, summarize, wait_until

QUEUE = "mq_bench"
PERSISTENT = pika.BasicProperties(delivery_mode=2, content_type="application/json")


def _connect(url: str):
    connection = pika.BlockingConnection(pika.URLParameters(url))
    return connection, connection.channel()


def version(url: str) -> str:
    connection, _ = _connect(url)
    try:
        version = connection._impl.server_properties.get("version", "?")
        return "RabbitMQ " + (version.decode() if isinstance(version, bytes) else version)
    finally:
        connection.close()


def _fresh_queue(url: str) -> None:
    connection, channel = _connect(url)
    channel.queue_delete(QUEUE)
    channel.queue_declare(QUEUE, durable=True)
    connection.close()


def _delete_queue(url: str) -> None:
    connection, channel = _connect(url)
    channel.queue_delete(QUEUE)
    connection.close()


def _producer(spec: dict, channel, report: dict) -> None:
    batch = spec["batch"]
    if batch == 1:
        channel.confirm_delivery()
    else:
        channel.tx_select()
    indices = spec["indices"]
    for start in range(0, len(indices), batch):
        for i in indices[start : start + batch]:
            sent = time.time()
            report["first_send"] = report.get("first_send") or sent
            channel.basic_publish("", QUEUE, make_payload(i, sent).encode(), PERSISTENT)
        if batch > 1:
            channel.tx_commit()


def _consumer(spec: dict, channel, progress, report: dict) -> None:
    batch = spec["batch"]
    channel.basic_qos(prefetch_count=batch)
    pending, last_tag = 0, None

    def ack() -> None:
        nonlocal pending
        channel.basic_ack(last_tag, multiple=True)
        progress.ack(pending)
        report["acked"] += pending
        report["last_ack"] = time.time()
        pending = 0

    for method, _, body in channel.consume(QUEUE, inactivity_timeout=0.05):
        if method is None:  # nothing for a moment: ack what is held, maybe stop
            if pending:
                ack()
            if progress.done(spec["target"]) or progress.stalled(spec["stall"]):
                break
            continue
        index, sent = read_payload(body)
        report["received"].append(index)
        report["latency"].append(time.time() - sent)
        pending, last_tag = pending + 1, method.delivery_tag
        if pending >= batch:
            ack()
        if progress.done(spec["target"]):
            break
    if pending:
        ack()
    channel.cancel()


def _worker(spec: dict, progress, start_at: float) -> dict:
    connection, channel = _connect(spec["url"])
    report = {"acked": 0, "errors": {}, "received": [], "latency": []}
    wait_until(start_at)
    cpu = time.process_time()
    if spec["role"] == "producer":
        _producer(spec, channel, report)
    else:
        _consumer(spec, channel, progress, report)
    report["cpu"] = time.process_time() - cpu
    connection.close()
    return report


def cycle(
    url: str, *, messages: int, producers: int, consumers: int, batch: int, stall: float = 15.0
) -> dict:
    """Move ``messages`` through a fresh durable queue; the queue is deleted afterwards."""
    _fresh_queue(url)
    try:
        shared = {"url": url, "batch": batch, "stall": stall, "target": messages}
        specs = [
            {**shared, "role": "producer", "indices": range(j, messages, producers)}
            for j in range(producers)
        ]
        specs += [{**shared, "role": "consumer"} for _ in range(consumers)]
        reports, start_at = fan_out(_worker, specs, timeout=120 + messages / 100)
        return summarize(reports, start_at, messages)
    finally:
        _delete_queue(url)
