"""Request input, checked before anything is stored: each helper returns a clean
value or raises a ``QueueError`` that becomes a 400 (or 413)."""

import math
import re

from django.conf import settings

from ..domain import MAX_LEASE_SECONDS, QueueError
from .parsers import dump_json

QUEUE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,80}")


class PayloadTooLarge(QueueError):
    code = "too_large"
    status = 413


def queue_name(name: str) -> str:
    if not QUEUE_NAME.fullmatch(name):
        raise QueueError(
            "a queue name is 1-80 letters, digits, '-', '_' or '.'", "invalid_queue_name"
        )
    return name


def message_id(raw: str) -> int:
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        raise QueueError(f"a message id is a positive integer, not {raw!r}", "invalid_id")
    return int(raw)


def _body(data) -> dict:
    if not hasattr(data, "get"):
        raise QueueError("the body must be a JSON object", "invalid_body")
    return data


def payload(data) -> str:
    """The payload's JSON text, from a JSON body or a form field (a string payload)."""
    body = _body(data)
    if "payload" not in body:
        raise QueueError(
            'send {"payload": <any JSON value>} with Content-Type: application/json, '
            "or a form field named payload",
            "missing_payload",
        )
    text = dump_json(body["payload"])
    size = len(text.encode("utf-8"))
    if size > settings.MQ_MAX_PAYLOAD_BYTES:
        raise PayloadTooLarge(
            f"the payload is {size} bytes; MQ_MAX_PAYLOAD_BYTES is {settings.MQ_MAX_PAYLOAD_BYTES}"
        )
    return text


def lease(request) -> str | None:
    """The lease token from the body or the query string; None when not given."""
    value = _body(request.data).get("lease", request.query_params.get("lease"))
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise QueueError("lease must be the token string given with the message", "invalid_lease")
    return value


def seconds(raw, name: str, *, low: float, high: float, default: float | None) -> float | None:
    """A number of seconds in [low, high]; ``default`` when absent."""
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except (TypeError, ValueError):
        value = math.nan
    if isinstance(raw, bool) or not low <= value <= high:
        raise QueueError(
            f"{name} must be a number of seconds from {low:g} to {high:g}, not {raw!r}",
            f"invalid_{name}",
        )
    return value


def lease_timeout(query_params) -> float | None:
    return seconds(
        query_params.get("timeout"), "timeout", low=0.001, high=MAX_LEASE_SECONDS, default=None
    )
