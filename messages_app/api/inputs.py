"""Request input, checked before anything is stored: each helper returns a clean
value or raises a ``QueueError`` that becomes a 400 (or 413)."""

import math
import re

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile

from .. import domain
from ..errors import QueueError
from ..models import MAX_ATTEMPTS, MAX_LEASE_SECONDS, QUEUE_NAME, QUEUE_NAME_RULE
from .parsers import dump_json

# Wider than the server's own tokens (32 hex digits): a lease is opaque to clients.
LEASE = re.compile(r"[A-Za-z0-9_-]{1,64}")
# The largest id a 64-bit signed id column holds.
MAX_ID = 2**63 - 1


class PayloadTooLarge(QueueError):
    code = "too_large"


def queue_name(name: str) -> str:
    if not QUEUE_NAME.fullmatch(name):
        raise QueueError(QUEUE_NAME_RULE, "invalid_queue_name")
    return name


def after_id(raw: str) -> int:
    """A keyset position (``/info?after=``): 0, the start, unless it is a whole
    number; past every message when larger than any id."""
    if not (raw.isascii() and raw.isdigit()):
        return 0
    return int(raw) if len(raw) <= 18 else MAX_ID


def message_id(raw: str) -> int:
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        raise QueueError(f"a message id is a positive integer, not {raw!r}", "invalid_id")
    return int(raw)


def body(data) -> dict:
    if not hasattr(data, "get"):
        raise QueueError("the body must be a JSON object", "invalid_body")
    return data


def payload(data) -> str:
    """The payload's JSON text, from a JSON body or a form field (a string payload)."""
    fields = body(data)
    if "payload" not in fields:
        raise QueueError(
            'send {"payload": <any JSON value>} with Content-Type: application/json, '
            "or a form field named payload",
            "missing_payload",
        )
    value = fields["payload"]
    if isinstance(value, UploadedFile):
        raise QueueError("payload must be a plain form field, not a file upload", "invalid_payload")
    return payload_text(value)


def payloads(data) -> list[str]:
    values = body(data).get("payloads")
    if not isinstance(values, list) or not 1 <= len(values) <= domain.MAX_BATCH:
        raise QueueError(
            f'send {{"payloads": [...]}} with 1 to {domain.MAX_BATCH} payloads', "invalid_payloads"
        )
    return [payload_text(value) for value in values]


def payload_text(value) -> str:
    text = dump_json(value)
    size = len(text.encode("utf-8"))
    if size > settings.MQ_MAX_PAYLOAD_BYTES:
        raise PayloadTooLarge(
            f"the payload is {size} bytes; MQ_MAX_PAYLOAD_BYTES is {settings.MQ_MAX_PAYLOAD_BYTES}"
        )
    return text


def lease(request) -> str | None:
    """The lease token from the body or the query string; None when not given."""
    value = body(request.data).get("lease", request.query_params.get("lease"))
    if value is None:
        return None
    if not isinstance(value, str) or not LEASE.fullmatch(value):
        raise QueueError("lease must be the token string given with the message", "invalid_lease")
    return value


def seconds(raw, name: str, *, low: float, high: float, default: float | None) -> float | None:
    """A number of seconds in [low, high]; ``default`` when absent (None)."""
    if raw is None:
        return default
    try:
        value = float(raw)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an int beyond 1e308
        value = math.nan
    if isinstance(raw, bool) or not low <= value <= high:
        raise QueueError(
            f"{name} must be a number of seconds from {low:g} to {high:g}, not {raw!r}",
            f"invalid_{name}",
        )
    return value


def lease_timeout(raw) -> float | None:
    return seconds(raw, "timeout", low=0.001, high=MAX_LEASE_SECONDS, default=None)


def delay(raw) -> float:
    return seconds(raw, "delay", low=0, high=domain.MAX_DELAY_SECONDS, default=0)


def wait(raw) -> float:
    return seconds(raw, "wait", low=0, high=domain.MAX_WAIT_SECONDS, default=0)


def count(raw) -> int:
    if raw is None:
        return 1
    if not (isinstance(raw, str) and raw.isascii() and raw.isdigit() and len(raw) <= 18) or not (
        1 <= int(raw) <= domain.MAX_BATCH
    ):
        raise QueueError(
            f"count must be a whole number from 1 to {domain.MAX_BATCH}", "invalid_count"
        )
    return int(raw)


def _storable(text: str) -> bool:
    """Whether every database stores and compares ``text`` as it is: no NUL
    (PostgreSQL refuses it in text) and no lone surrogate (not UTF-8 at all)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in text


def key(raw) -> str | None:
    if raw is None:
        return None
    if not isinstance(raw, str) or not 1 <= len(raw) <= 200 or not _storable(raw):
        raise QueueError(
            "key must be a string of 1 to 200 characters, without NUL or unpaired surrogates",
            "invalid_key",
        )
    return raw


def max_attempts(raw) -> int | None:
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int) or not 1 <= raw <= MAX_ATTEMPTS:
        raise QueueError(
            "max_attempts must be null or a whole number from 1", "invalid_max_attempts"
        )
    return raw


def dead_letter_queue(raw) -> str | None:
    if raw is None:
        return None
    if not isinstance(raw, str) or not QUEUE_NAME.fullmatch(raw):
        raise QueueError(
            f"dead_letter_queue must be null or a queue name: {QUEUE_NAME_RULE}",
            "invalid_dead_letter_queue",
        )
    return raw


def done_entries(data) -> list[tuple[int, str | None]]:
    """``{"messages": [{"id", "lease"}...]}`` as (id, lease) pairs."""
    entries = body(data).get("messages")
    if not isinstance(entries, list) or not 1 <= len(entries) <= domain.MAX_BATCH:
        raise QueueError(
            f'send {{"messages": [{{"id", "lease"}}...]}} with 1 to {domain.MAX_BATCH} entries',
            "invalid_messages",
        )
    pairs = []
    for entry in entries:
        if not isinstance(entry, dict):
            raise QueueError('each entry is {"id": <int>, "lease": "<token>"}', "invalid_messages")
        id_, lease_ = entry.get("id"), entry.get("lease")
        if isinstance(id_, bool) or not isinstance(id_, int) or not 1 <= id_ <= MAX_ID:
            raise QueueError(
                f"each entry needs a message id from 1 to {MAX_ID}, not {str(id_)[:30]}",
                "invalid_id",
            )
        if lease_ is not None and (not isinstance(lease_, str) or not LEASE.fullmatch(lease_)):
            raise QueueError(
                "lease must be the token string given with the message", "invalid_lease"
            )
        pairs.append((id_, lease_))
    if len({id_ for id_, _ in pairs}) < len(pairs):
        # Which of two entries for one message would count is anybody's guess.
        raise QueueError("each message id at most once in a batch", "invalid_messages")
    return pairs
