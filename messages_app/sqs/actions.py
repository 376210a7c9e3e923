"""The SQS actions: each takes the JSON protocol's parameters and returns its
result, checking its input and calling ``messages_app.domain``.

How SQS concepts map onto the queue (also in the README, "Using it as SQS"):

- A message's Body is the native payload as a JSON string: sent over SQS,
  the native API receives ``"<body>"``; a native payload that is not a JSON
  string is received over SQS as its JSON text.
- MessageId is the native message id; ReceiptHandle is ``<id>:<lease>``, the
  delivery's lease.
- VisibilityTimeout is the queue's ``timeout``; RedrivePolicy is its
  ``max_attempts`` and ``dead_letter_queue``.
"""

import base64
import re
from dataclasses import dataclass

import simplejson
from django.conf import settings
from django.db import IntegrityError

from .. import counters, domain
from ..errors import MessageNotFound, QueueError
from ..models import QUEUE_NAME
from . import digests
from .errors import SQSError, invalid, missing, no_queue

MAX_BATCH = 10
MAX_VISIBILITY = 12 * 60 * 60
MAX_DELAY = 15 * 60
MAX_WAIT = 20
MAX_MESSAGE_ATTRIBUTES = 10
MAX_TAGS = 50
# What SQS gives a queue created without these attributes.
DEFAULT_VISIBILITY = 30
DEFAULT_RETENTION = 4 * 24 * 60 * 60

BATCH_ID = re.compile(r"[A-Za-z0-9_-]{1,80}")
ATTRIBUTE_NAME = re.compile(r"(?!(?i:aws\.|amazon\.))(?!\.)(?!.*\.\.)[A-Za-z0-9_.-]{1,256}(?<!\.)")
# What SQS accepts in a body: #x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD |
# #x10000 to #x10FFFF.
INVALID_BODY_CHARACTER = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

# Queue attributes: those kept in ``Queue.sqs_attributes`` with their bounds.
STORED_ATTRIBUTES = {
    "DelaySeconds": (0, MAX_DELAY),
    "ReceiveMessageWaitTimeSeconds": (0, MAX_WAIT),
    "MaximumMessageSize": (1024, None),  # up to MQ_MAX_PAYLOAD_BYTES
    "MessageRetentionPeriod": (60, 14 * 24 * 60 * 60),
}
READ_ONLY_ATTRIBUTES = {
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
    "CreatedTimestamp",
    "QueueArn",
}
# Settable SQS attributes this server refuses rather than pretending to honour.
REFUSED_ATTRIBUTES = {
    "Policy",
    "FifoQueue",
    "ContentBasedDeduplication",
    "DeduplicationScope",
    "FifoThroughputLimit",
    "KmsMasterKeyId",
    "KmsDataKeyReusePeriodSeconds",
    "SqsManagedSseEnabled",
    "RedriveAllowPolicy",
}
QUEUE_ATTRIBUTES = {"VisibilityTimeout", "RedrivePolicy", *STORED_ATTRIBUTES, *READ_ONLY_ATTRIBUTES}
MESSAGE_SYSTEM_ATTRIBUTES = {
    "SenderId",
    "SentTimestamp",
    "ApproximateReceiveCount",
    "ApproximateFirstReceiveTimestamp",
    "DeadLetterQueueSourceArn",
}


@dataclass(frozen=True)
class Context:
    """Where the request came: the base of queue URLs (``http://host:port/sqs``),
    and the queue named by the URL it was posted to (query protocol), if any."""

    base_url: str
    path_queue: str | None = None

    def queue_url(self, name: str) -> str:
        return f"{self.base_url}/{settings.MQ_SQS_ACCOUNT}/{name}"


def arn(name: str) -> str:
    return f"arn:aws:sqs:{settings.MQ_SQS_REGION}:{settings.MQ_SQS_ACCOUNT}:{name}"


# Reading parameters.


def integer(params: dict, name: str, low: int, high: int | None, default=None) -> int | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise invalid(
            f"Value {raw} for parameter {name} is invalid. Reason: not an integer."
        ) from None
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise invalid(f"Value {raw} for parameter {name} is invalid. Reason: must be {bound}.")
    return value


def text(params: dict, name: str) -> str:
    value = params.get(name)
    if value is None or value == "":
        raise missing(name)
    if not isinstance(value, str):
        raise invalid(f"Value for parameter {name} is invalid. Reason: not a string.")
    return value


def queue_name_of_url(params: dict, context: Context) -> str:
    url = params.get("QueueUrl") or ""
    if not isinstance(url, str):
        raise invalid("Value for parameter QueueUrl is invalid. Reason: not a string.")
    name = url.rstrip("/").rpartition("/")[2] if url else context.path_queue
    if not name:
        raise missing("QueueUrl")
    return name


def existing_queue(params: dict, context: Context):
    """The stored queue the request's QueueUrl names; QueueDoesNotExist otherwise."""
    name = queue_name_of_url(params, context)
    row = domain.queue_row(name) if QUEUE_NAME.fullmatch(name) else None
    if row is None:
        raise no_queue()
    return row


def valid_queue_name(name: str) -> str:
    if name.endswith(".fifo"):
        raise SQSError(
            "UnsupportedOperation",
            "FIFO queues (names ending in .fifo) are not supported by this server.",
        )
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,80}", name):
        raise invalid(
            "Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in length"
        )
    return name


# Queue attributes.


def queue_changes(attributes: dict) -> dict:
    """``domain.configure``'s changes for SQS queue ``attributes`` (strings)."""
    if not isinstance(attributes, dict):
        raise invalid("Attributes must be a map of attribute names to values.")
    changes: dict = {}
    stored = {}
    for name, value in attributes.items():
        if name in REFUSED_ATTRIBUTES:
            if name == "FifoQueue":
                raise SQSError(
                    "UnsupportedOperation", "FIFO queues are not supported by this server."
                )
            raise SQSError("InvalidAttributeName", f"Attribute {name} is not supported here.")
        if name == "VisibilityTimeout":
            changes["timeout"] = integer(attributes, name, 0, MAX_VISIBILITY)
        elif name == "RedrivePolicy":
            changes.update(redrive_policy(value))
        elif name in STORED_ATTRIBUTES:
            low, high = STORED_ATTRIBUTES[name]
            stored[name] = integer(attributes, name, low, high or settings.MQ_MAX_PAYLOAD_BYTES)
        else:
            raise SQSError("InvalidAttributeName", f"Unknown Attribute {name}.")
    if stored:
        changes["sqs_attributes"] = stored
    return changes


def redrive_policy(value) -> dict:
    if value in ("", None):
        return {"dead_letter_queue": None, "max_attempts": None}
    try:
        policy = simplejson.loads(value) if isinstance(value, str) else None
    except simplejson.JSONDecodeError:
        policy = None
    if not isinstance(policy, dict) or "deadLetterTargetArn" not in policy:
        raise invalid(
            "Value for parameter RedrivePolicy is invalid. Reason: Redrive policy is not a "
            "valid JSON map with deadLetterTargetArn and maxReceiveCount."
        )
    count = integer(policy, "maxReceiveCount", 1, 1000)
    if count is None:
        raise invalid("Value for parameter RedrivePolicy is invalid. Reason: no maxReceiveCount.")
    target = str(policy["deadLetterTargetArn"]).rpartition(":")[2]
    if not target or domain.queue_row(target) is None:
        raise invalid(
            "Value for parameter RedrivePolicy is invalid. Reason: Dead letter target does not "
            "exist."
        )
    return {"dead_letter_queue": target, "max_attempts": count}


def configure(name: str, changes: dict, queue=None) -> None:
    if "sqs_attributes" in changes and queue is not None:
        changes["sqs_attributes"] = {**queue.sqs_attributes, **changes["sqs_attributes"]}
    try:
        domain.configure(name, **changes)
    except QueueError as exc:
        raise invalid(exc.detail) from None


def queue_attributes(queue, names: list[str]) -> dict:
    wanted = set(QUEUE_ATTRIBUTES) if "All" in names else set(names)
    unknown = wanted - QUEUE_ATTRIBUTES - REFUSED_ATTRIBUTES
    if unknown:
        raise SQSError("InvalidAttributeName", f"Unknown Attribute {sorted(unknown)[0]}.")
    stats = domain.queue_stats(queues=[queue.name])[0]
    stored = queue.sqs_attributes
    values = {
        "VisibilityTimeout": stats.effective_timeout,
        "DelaySeconds": stored.get("DelaySeconds", 0),
        "ReceiveMessageWaitTimeSeconds": stored.get("ReceiveMessageWaitTimeSeconds", 0),
        "MaximumMessageSize": max_message_size(queue),
        "MessageRetentionPeriod": stored.get("MessageRetentionPeriod"),
        "ApproximateNumberOfMessages": stats.ready,
        "ApproximateNumberOfMessagesNotVisible": stats.leased,
        "ApproximateNumberOfMessagesDelayed": stats.delayed,
        "CreatedTimestamp": int(queue.created_at.timestamp()),
        "QueueArn": arn(queue.name),
    }
    if queue.dead_letter_queue_id is not None:
        values["RedrivePolicy"] = simplejson.dumps(
            {
                "deadLetterTargetArn": arn(queue.dead_letter_queue_id),
                "maxReceiveCount": stats.effective_max_attempts,
            }
        )
    return {
        name: str(int(value) if isinstance(value, float) and value.is_integer() else value)
        for name, value in values.items()
        if name in wanted and value is not None
    }


def max_message_size(queue) -> int:
    return queue.sqs_attributes.get("MaximumMessageSize", settings.MQ_MAX_PAYLOAD_BYTES)


# Queues.


def create_queue(params: dict, context: Context) -> dict:
    name = valid_queue_name(text(params, "QueueName"))
    attributes = params.get("Attributes") or {}
    changes = queue_changes(attributes)
    tags = valid_tags(params.get("tags") or params.get("Tags") or {})
    queue = domain.queue_row(name)
    if queue is not None:
        current = queue_attributes(queue, list(attributes))
        if any(current.get(k) != str(v) for k, v in attributes.items()):
            raise SQSError(
                "QueueNameExists",
                f"A queue already exists with the same name and a different value for "
                f"attribute(s) {', '.join(sorted(attributes))}",
            )
        return {"QueueUrl": context.queue_url(name)}
    changes.setdefault("timeout", DEFAULT_VISIBILITY)
    changes.setdefault("sqs_attributes", {})
    changes["sqs_attributes"].setdefault("MessageRetentionPeriod", DEFAULT_RETENTION)
    if tags:
        changes["tags"] = tags
    configure(name, changes)
    return {"QueueUrl": context.queue_url(name)}


def get_queue_url(params: dict, context: Context) -> dict:
    name = text(params, "QueueName")
    if not QUEUE_NAME.fullmatch(name) or domain.queue_row(name) is None:
        raise no_queue()
    return {"QueueUrl": context.queue_url(name)}


def list_queues(params: dict, context: Context) -> dict:
    prefix = params.get("QueueNamePrefix") or ""
    limit = integer(params, "MaxResults", 1, 1000)
    token = params.get("NextToken") or ""
    if not isinstance(prefix, str) or not isinstance(token, str):
        raise invalid("QueueNamePrefix and NextToken must be strings.")
    try:
        after = base64.urlsafe_b64decode(token.encode()).decode() if token else ""
    except (ValueError, UnicodeError):
        raise invalid("Invalid NextToken value.") from None
    names = domain.queue_names(prefix, after, (limit or 1000) + 1)
    result: dict = {"QueueUrls": [context.queue_url(n) for n in names[: limit or 1000]]}
    if limit is not None and len(names) > limit:
        result["NextToken"] = base64.urlsafe_b64encode(names[limit - 1].encode()).decode()
    return result


def delete_queue(params: dict, context: Context) -> dict:
    queue = existing_queue(params, context)
    domain.delete_queue(queue.name)
    return {}


def purge_queue(params: dict, context: Context) -> dict:
    queue = existing_queue(params, context)
    domain.purge_queue(queue.name)
    return {}


def get_queue_attributes(params: dict, context: Context) -> dict:
    queue = existing_queue(params, context)
    names = params.get("AttributeNames") or []
    return {"Attributes": queue_attributes(queue, names)} if names else {}


def set_queue_attributes(params: dict, context: Context) -> dict:
    queue = existing_queue(params, context)
    attributes = params.get("Attributes")
    if not attributes:
        raise missing("Attributes")
    configure(queue.name, queue_changes(attributes), queue)
    return {}


def valid_tags(tags) -> dict:
    if not isinstance(tags, dict) or len(tags) > MAX_TAGS:
        raise invalid(f"Tags must be a map of at most {MAX_TAGS} keys to values.")
    for key, value in tags.items():
        if not (isinstance(key, str) and 1 <= len(key) <= 128 and isinstance(value, str)):
            raise invalid(f"Tag key {key!r} or its value is invalid.")
    return tags


def tag_queue(params: dict, context: Context) -> dict:
    queue = existing_queue(params, context)
    tags = valid_tags(params.get("Tags") or {})
    if not tags:
        raise missing("Tags")
    merged = {**queue.tags, **tags}
    if len(merged) > MAX_TAGS:
        raise invalid(f"A queue has at most {MAX_TAGS} tags.")
    configure(queue.name, {"tags": merged})
    return {}


def untag_queue(params: dict, context: Context) -> dict:
    queue = existing_queue(params, context)
    keys = params.get("TagKeys") or []
    if not keys:
        raise missing("TagKeys")
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise invalid("TagKeys must be a list of tag keys.")
    configure(queue.name, {"tags": {k: v for k, v in queue.tags.items() if k not in keys}})
    return {}


def list_queue_tags(params: dict, context: Context) -> dict:
    queue = existing_queue(params, context)
    return {"Tags": queue.tags} if queue.tags else {}


# Sending.


def message_attributes(raw) -> dict:
    """Checked message attributes in the JSON protocol's shape."""
    if not raw:
        return {}
    if not isinstance(raw, dict) or len(raw) > MAX_MESSAGE_ATTRIBUTES:
        raise invalid(
            f"Number of message attributes [{len(raw) if isinstance(raw, dict) else '?'}] "
            f"exceeds the allowed maximum [{MAX_MESSAGE_ATTRIBUTES}]."
        )
    checked = {}
    for name, value in raw.items():
        if not isinstance(name, str) or not ATTRIBUTE_NAME.fullmatch(name):
            raise invalid(f"Message attribute name '{name}' is invalid.")
        if not isinstance(value, dict):
            raise invalid(f"The message attribute '{name}' must contain a value.")
        data_type = value.get("DataType")
        if not isinstance(data_type, str) or not data_type:
            raise invalid(f"The message attribute '{name}' must contain a non-empty data type.")
        kind = data_type.partition(".")[0]
        if kind in ("String", "Number"):
            string = value.get("StringValue")
            if not isinstance(string, str) or not string:
                raise invalid(
                    f"The message attribute '{name}' with type '{kind}' must use field 'String'."
                )
            if INVALID_BODY_CHARACTER.search(string):
                raise invalid(f"The message attribute '{name}' contains invalid characters.")
            if kind == "Number" and not _is_number(string):
                raise invalid(f"Can't cast the value of message attribute '{name}' to a number.")
            checked[name] = {"DataType": data_type, "StringValue": string}
        elif kind == "Binary":
            binary = value.get("BinaryValue")
            try:
                decoded = base64.b64decode(binary, validate=True) if binary else b""
            except (TypeError, ValueError):
                decoded = b""
            if not decoded:
                raise invalid(
                    f"The message attribute '{name}' with type 'Binary' must use field 'Binary'."
                )
            checked[name] = {"DataType": data_type, "BinaryValue": binary}
        else:
            raise invalid(
                f"The type of message (user) attribute '{name}' is invalid. You must use only "
                "the following supported type prefixes: Binary, Number, String."
            )
    return checked


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def attributes_size(attributes: dict) -> int:
    size = 0
    for name, value in attributes.items():
        size += len(name.encode()) + len(value["DataType"].encode())
        if "StringValue" in value:
            size += len(value["StringValue"].encode())
        else:
            size += len(base64.b64decode(value["BinaryValue"]))
    return size


@dataclass(frozen=True)
class Prepared:
    outgoing: domain.Outgoing
    result: dict  # the MD5s, for the response


def prepare(entry: dict, queue) -> Prepared:
    """A message to send, checked: its body, attributes and delay."""
    if entry.get("MessageGroupId") or entry.get("MessageDeduplicationId"):
        raise SQSError(
            "UnsupportedOperation",
            "MessageGroupId and MessageDeduplicationId are for FIFO queues, which this server "
            "does not support.",
        )
    body = text(entry, "MessageBody")
    if INVALID_BODY_CHARACTER.search(body):
        raise SQSError(
            "InvalidMessageContents",
            "Invalid characters found. Valid unicode characters are #x9 | #xA | #xD | #x20 to "
            "#xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF",
        )
    attributes = message_attributes(entry.get("MessageAttributes"))
    limit = max_message_size(queue)
    if len(body.encode()) + attributes_size(attributes) > limit:
        raise invalid(
            f"One or more parameters are invalid. Reason: Message must be shorter than "
            f"{limit} bytes."
        )
    default_delay = queue.sqs_attributes.get("DelaySeconds", 0)
    delay = integer(entry, "DelaySeconds", 0, MAX_DELAY, default_delay)
    result = {"MD5OfMessageBody": digests.md5_of_body(body)}
    if attributes:
        result["MD5OfMessageAttributes"] = digests.md5_of_attributes(attributes)
    stored_attributes = simplejson.dumps(attributes) if attributes else None
    return Prepared(domain.Outgoing(simplejson.dumps(body), delay, stored_attributes), result)


def _send(queue, prepared: list[Prepared]) -> list[int]:
    try:
        return domain.send_each(queue.name, [p.outgoing for p in prepared])
    except IntegrityError:
        raise no_queue() from None  # deleted meanwhile


def send_message(params: dict, context: Context) -> dict:
    queue = existing_queue(params, context)
    prepared = prepare(params, queue)
    [message_id] = _send(queue, [prepared])
    return {**prepared.result, "MessageId": str(message_id)}


def batch_entries(params: dict) -> list[dict]:
    entries = params.get("Entries")
    if not entries:
        raise SQSError("EmptyBatchRequest", "There should be at least one entry in the request.")
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise invalid("Entries must be a list of entries.")
    if len(entries) > MAX_BATCH:
        raise SQSError(
            "TooManyEntriesInBatchRequest",
            f"Maximum number of entries per request are {MAX_BATCH}. You have sent {len(entries)}.",
        )
    ids = [e.get("Id") for e in entries]
    for entry_id in ids:
        if not isinstance(entry_id, str) or not BATCH_ID.fullmatch(entry_id):
            raise SQSError(
                "InvalidBatchEntryId",
                "A batch entry id can only contain alphanumeric characters, hyphens and "
                "underscores. It can be at most 80 letters long.",
            )
    if len(set(ids)) != len(ids):
        raise SQSError("BatchEntryIdsNotDistinct", "Two or more batch entries have the same Id.")
    return entries


def failure(entry_id: str, error: SQSError) -> dict:
    return {
        "Id": entry_id,
        "SenderFault": error.sender,
        "Code": error.query_code,
        "Message": error.message,
    }


def send_message_batch(params: dict, context: Context) -> dict:
    queue = existing_queue(params, context)
    entries = batch_entries(params)
    accepted: list[tuple[str, Prepared]] = []
    failed = []
    for entry in entries:
        try:
            accepted.append((entry["Id"], prepare(entry, queue)))
        except SQSError as error:
            failed.append(failure(entry["Id"], error))
    total = sum(len(str(e.get("MessageBody") or "").encode()) for e in entries)
    if total > max_message_size(queue):
        raise SQSError(
            "BatchRequestTooLong",
            f"Batch requests cannot be longer than {max_message_size(queue)} bytes.",
        )
    ids = _send(queue, [p for _, p in accepted]) if accepted else []
    successful = [
        {"Id": entry_id, "MessageId": str(message_id), **prepared.result}
        for (entry_id, prepared), message_id in zip(accepted, ids, strict=True)
    ]
    return {"Successful": successful, "Failed": failed}


# Receiving.


def receive_message(params: dict, context: Context) -> dict:
    queue = existing_queue(params, context)
    count = integer(params, "MaxNumberOfMessages", 1, MAX_BATCH, 1)
    timeout = integer(params, "VisibilityTimeout", 0, MAX_VISIBILITY)
    wait = integer(
        params,
        "WaitTimeSeconds",
        0,
        MAX_WAIT,
        queue.sqs_attributes.get("ReceiveMessageWaitTimeSeconds", 0),
    )
    system_names = set(params.get("AttributeNames") or []) | set(
        params.get("MessageSystemAttributeNames") or []
    )
    attribute_names = params.get("MessageAttributeNames") or []
    retention = queue.sqs_attributes.get("MessageRetentionPeriod")
    if retention:
        domain.drop_expired(queue.name, retention)
    received = domain.receive(queue.name, count, timeout, wait)
    return {"Messages": [message_json(r, system_names, attribute_names) for r in received]}


def body_of(payload: str) -> str:
    """The SQS body of a stored payload: a JSON string's text, else the JSON itself."""
    value = simplejson.loads(payload)
    return value if isinstance(value, str) else payload


def message_json(received: domain.Received, system_names: set, attribute_names: list) -> dict:
    delivery = received.delivery
    body = body_of(delivery.payload)
    message = {
        "MessageId": str(delivery.id),
        "ReceiptHandle": f"{delivery.id}:{delivery.lease}",
        "MD5OfBody": digests.md5_of_body(body),
        "Body": body,
    }
    wanted = MESSAGE_SYSTEM_ATTRIBUTES if "All" in system_names else system_names
    system = {
        "SenderId": settings.MQ_SQS_ACCOUNT,
        "SentTimestamp": str(int(received.created_at.timestamp() * 1000)),
        "ApproximateReceiveCount": str(delivery.attempts),
        "ApproximateFirstReceiveTimestamp": str(int(received.first_received_at.timestamp() * 1000)),
    }
    if received.dead_letter_source is not None:
        system["DeadLetterQueueSourceArn"] = arn(received.dead_letter_source)
    system = {k: v for k, v in system.items() if k in wanted}
    if system:
        message["Attributes"] = system
    attributes = simplejson.loads(received.attributes) if received.attributes else {}
    selected = {k: v for k, v in attributes.items() if _selected(k, attribute_names)}
    if selected:
        message["MessageAttributes"] = selected
        message["MD5OfMessageAttributes"] = digests.md5_of_attributes(selected)
    return message


def _selected(name: str, patterns: list[str]) -> bool:
    return any(
        p in ("All", ".*") or p == name or (p.endswith(".*") and name.startswith(p[:-1]))
        for p in patterns
    )


# Deleting and changing visibility.


def receipt(handle) -> tuple[int, str]:
    """The message id and lease of a receipt handle."""
    message_id, _, lease = str(handle or "").partition(":")
    if not (message_id.isdigit() and counters.LEASE_TOKEN.fullmatch(lease)):
        raise SQSError(
            "ReceiptHandleIsInvalid", f'The input receipt handle "{handle}" is not valid.'
        )
    return int(message_id), lease


def stale(handle: str) -> SQSError:
    return SQSError(
        "ReceiptHandleIsInvalid",
        f'The receipt handle "{handle}" has expired: the message was received again, is '
        "dead or was deleted.",
    )


def delete_message(params: dict, context: Context) -> dict:
    queue = existing_queue(params, context)
    handle = text(params, "ReceiptHandle")
    message_id, lease = receipt(handle)
    try:
        domain.done(queue.name, message_id, lease)
    except MessageNotFound:
        pass  # deleted already: deleting again succeeds, as on SQS
    except QueueError:
        raise stale(handle) from None
    return {}


def delete_message_batch(params: dict, context: Context) -> dict:
    queue = existing_queue(params, context)
    entries = batch_entries(params)
    failed, wanted = [], {}
    for entry in entries:
        try:
            wanted[entry["Id"]] = receipt(entry.get("ReceiptHandle"))
        except SQSError as error:
            failed.append(failure(entry["Id"], error))
    result = domain.done_many(queue.name, list(set(wanted.values())))
    refused = {
        message_id for message_id, error in result.failed if not isinstance(error, MessageNotFound)
    }
    successful = []
    for entry_id, (message_id, _) in wanted.items():
        if message_id in refused:
            handle = next(e["ReceiptHandle"] for e in entries if e["Id"] == entry_id)
            failed.append(failure(entry_id, stale(handle)))
        else:
            successful.append({"Id": entry_id})
    return {"Successful": successful, "Failed": failed}


def change_visibility(queue: str, handle, timeout_raw) -> None:
    message_id, lease = receipt(handle)
    timeout = integer({"VisibilityTimeout": timeout_raw}, "VisibilityTimeout", 0, MAX_VISIBILITY)
    if timeout is None:
        raise missing("VisibilityTimeout")
    try:
        if timeout == 0:
            domain.give_back(queue, message_id, lease)
        else:
            domain.extend_lease(queue, message_id, lease, timeout)
    except QueueError:
        raise stale(handle) from None


def change_message_visibility(params: dict, context: Context) -> dict:
    queue = existing_queue(params, context)
    change_visibility(queue.name, text(params, "ReceiptHandle"), params.get("VisibilityTimeout"))
    return {}


def change_message_visibility_batch(params: dict, context: Context) -> dict:
    queue = existing_queue(params, context)
    successful, failed = [], []
    for entry in batch_entries(params):
        try:
            handle, timeout = entry.get("ReceiptHandle"), entry.get("VisibilityTimeout")
            change_visibility(queue.name, handle, timeout)
        except SQSError as error:
            failed.append(failure(entry["Id"], error))
        else:
            successful.append({"Id": entry["Id"]})
    return {"Successful": successful, "Failed": failed}


ACTIONS = {
    "CreateQueue": create_queue,
    "GetQueueUrl": get_queue_url,
    "ListQueues": list_queues,
    "DeleteQueue": delete_queue,
    "PurgeQueue": purge_queue,
    "GetQueueAttributes": get_queue_attributes,
    "SetQueueAttributes": set_queue_attributes,
    "SendMessage": send_message,
    "SendMessageBatch": send_message_batch,
    "ReceiveMessage": receive_message,
    "DeleteMessage": delete_message,
    "DeleteMessageBatch": delete_message_batch,
    "ChangeMessageVisibility": change_message_visibility,
    "ChangeMessageVisibilityBatch": change_message_visibility_batch,
    "TagQueue": tag_queue,
    "UntagQueue": untag_queue,
    "ListQueueTags": list_queue_tags,
}


def run(action: str, params: dict, context: Context) -> dict:
    handler = ACTIONS.get(action)
    if handler is None:
        raise SQSError(
            "UnsupportedOperation" if action else "MissingAction",
            f"The action {action} is not supported by this server."
            if action
            else "The request must contain the parameter Action.",
        )
    return handler(params, context)
