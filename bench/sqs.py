"""Our server's SQS endpoint (``/sqs``) driven the way an SQS user drives it: boto3.

P producer and C consumer processes, each with its own boto3 client (region
us-east-1, any key: the server checks no signature unless
``MQ_SQS_CREDENTIALS`` is set), on a queue created with ``CreateQueue``:

- one at a time: ``SendMessage``; ``ReceiveMessage`` (one message, no wait),
  then ``DeleteMessage`` with its receipt handle;
- batched: ``SendMessageBatch`` of 10; ``ReceiveMessage`` with
  ``MaxNumberOfMessages=10``, then ``DeleteMessageBatch`` of what came.

The body is the bench's 100-byte payload, so duplicates, losses and latency
are counted as for the native cycles. Consumers pause 2 ms after an empty
receive, as the native ones do. botocore's retries are off: a failed call is
counted, not hidden.
"""

import time

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from common import fan_out, make_payload, read_payload, summarize, wait_until

QUEUE = "bench"
BATCH = 10  # SQS's largest batch
POLL_PAUSE = 0.002
CONFIG = Config(
    region_name="us-east-1",
    retries={"total_max_attempts": 1},
    connect_timeout=10,
    read_timeout=30,
)


def client(endpoint: str):
    """A boto3 SQS client of its own (its own session: nothing shared across a fork)."""
    session = boto3.session.Session(aws_access_key_id="bench", aws_secret_access_key="bench")
    return session.client("sqs", endpoint_url=endpoint, config=CONFIG)


def _count(report: dict, error: str, n: int = 1) -> None:
    report["errors"][error] = report["errors"].get(error, 0) + n


def _failure(action: str, error: Exception) -> str:
    if isinstance(error, ClientError):
        return f"{action} {error.response['Error'].get('Code', '?')}"
    return f"{action} {type(error).__name__}"


def _produce(sqs, spec: dict, progress, report: dict) -> None:
    url, batch = spec["url"], spec["batch"]
    for chunk in spec["chunks"]:
        sent = time.time()
        report["first_send"] = report.get("first_send") or sent
        report["requests"] += 1
        try:
            if batch == 1:
                sqs.send_message(QueueUrl=url, MessageBody=make_payload(chunk[0], sent))
                continue
            entries = [{"Id": str(i), "MessageBody": make_payload(i, sent)} for i in chunk]
            failed = sqs.send_message_batch(QueueUrl=url, Entries=entries).get("Failed", [])
        except (ClientError, BotoCoreError) as error:
            _count(report, _failure("send", error))
            progress.refuse(len(chunk))
            continue
        if failed:
            _count(report, "send entry failed", len(failed))
            progress.refuse(len(failed))


def _consume(sqs, spec: dict, progress, report: dict) -> None:
    url, batch = spec["url"], spec["batch"]
    while not progress.done(spec["target"]):
        report["requests"] += 1
        try:
            answer = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=batch)
        except (ClientError, BotoCoreError) as error:
            _count(report, _failure("receive", error))
            answer = {}
        messages = answer.get("Messages", [])
        if not messages:
            report["empty"] += 1
            if progress.stalled(spec["stall"]):
                return
            time.sleep(POLL_PAUSE)
            continue
        now = time.time()
        for message in messages:
            index, sent = read_payload(message["Body"])
            report["received"].append(index)
            report["latency"].append(now - sent)
        report["requests"] += 1
        try:
            done = _delete(sqs, url, messages, batch, report)
        except (ClientError, BotoCoreError) as error:
            _count(report, _failure("delete", error), len(messages))
            done = 0
        if done:
            progress.ack(done)
            report["acked"] += done
            report["last_ack"] = time.time()


def _delete(sqs, url: str, messages: list[dict], batch: int, report: dict) -> int:
    """Delete the deliveries by their receipt handles; return how many were deleted."""
    if batch == 1:
        sqs.delete_message(QueueUrl=url, ReceiptHandle=messages[0]["ReceiptHandle"])
        return 1
    entries = [{"Id": str(k), "ReceiptHandle": m["ReceiptHandle"]} for k, m in enumerate(messages)]
    answer = sqs.delete_message_batch(QueueUrl=url, Entries=entries)
    if answer.get("Failed"):
        _count(report, "delete entry failed", len(answer["Failed"]))
    return len(answer.get("Successful", []))


def _worker(spec: dict, progress, start_at: float) -> dict:
    sqs = client(spec["endpoint"])
    report = {"acked": 0, "requests": 0, "empty": 0, "errors": {}, "received": [], "latency": []}
    wait_until(start_at)
    cpu = time.process_time()
    if spec["role"] == "producer":
        _produce(sqs, spec, progress, report)
    else:
        _consume(sqs, spec, progress, report)
    report["cpu"] = time.process_time() - cpu
    sqs.close()
    return report


def cycle(
    endpoint: str, *, messages: int, producers: int, consumers: int, batch: int,
    stall: float = 15.0,
) -> dict:  # fmt: skip
    """Move ``messages`` through the queue ``bench`` of the SQS endpoint ``endpoint``
    (``http://HOST:PORT/sqs``), ``batch`` (1 or 10) per call."""
    url = client(endpoint).create_queue(QueueName=QUEUE)["QueueUrl"]
    shared = {"endpoint": endpoint, "url": url, "batch": batch, "stall": stall, "target": messages}
    # Producer j sends the chunks j, j+P, ... of ``batch`` consecutive indices.
    chunks = [range(k, min(k + batch, messages)) for k in range(0, messages, batch)]
    specs = [
        {**shared, "role": "producer", "chunks": chunks[j::producers]} for j in range(producers)
    ]
    specs += [{**shared, "role": "consumer"} for _ in range(consumers)]
    # A boto3 client takes a moment to build in each process before the common start.
    reports, start_at = fan_out(_worker, specs, timeout=120 + messages / 100, start_delay=3.0)
    return summarize(reports, start_at, messages)
