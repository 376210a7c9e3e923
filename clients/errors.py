"""One exception hierarchy for every failed queue call.

``QueueError`` is the base: catch it to handle any failure. It carries the
HTTP ``status`` (None when no answer came back), the contract's error
``code`` and the server's human ``detail``.
"""

import requests


class QueueError(Exception):
    """A queue call failed: ``status`` (None without an HTTP answer), ``code``, ``detail``."""

    def __init__(self, detail: str, *, code: str = "error", status: int | None = None):
        super().__init__(detail)
        self.detail = detail
        self.code = code
        self.status = status

    def __str__(self) -> str:
        where = f"HTTP {self.status}" if self.status is not None else "no answer"
        return f"{self.code} ({where}): {self.detail}"


class QueueConnectionError(QueueError):
    """The server could not be reached, or the connection broke before an answer."""


class QueueTimeout(QueueConnectionError):
    """The server did not answer within the client's timeout."""


class BadRequest(QueueError):
    """400: the server refused the request's input; nothing was stored."""


class Unauthorized(QueueError):
    """401: the server needs ``Authorization: Bearer <token>`` (pass ``token=``)."""


class Forbidden(QueueError):
    """403."""


class NotFound(QueueError):
    """404: no such message (never existed, or already done) or no such route."""


class MethodNotAllowed(QueueError):
    """405: the route does not take this method."""


class NotAcceptable(QueueError):
    """406."""


class Conflict(QueueError):
    """409: the message is not leased, or the lease given is not its current one."""


class PayloadTooLarge(QueueError):
    """413: the payload is over the server's ``MQ_MAX_PAYLOAD_BYTES``."""


class UnsupportedMediaType(QueueError):
    """415."""


class TooManyRequests(QueueError):
    """429: slow down; ``Retry-After`` says for how long."""


class ServerError(QueueError):
    """5xx: the server (or its database) failed; retried for calls safe to repeat."""


_BY_STATUS: dict[int, type[QueueError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    405: MethodNotAllowed,
    406: NotAcceptable,
    409: Conflict,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
    429: TooManyRequests,
}


def error_for(response: requests.Response) -> QueueError:
    """The typed exception for an error answer, from its ``{"error", "detail"}`` body."""
    status = response.status_code
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and "error" in body:
        code, detail = str(body["error"]), str(body.get("detail", ""))
    else:
        # Not the server's JSON: a proxy's page, say. Keep the start of it.
        code, detail = f"http_{status}", response.text[:200] or response.reason or ""
    if status >= 500:
        cls = ServerError
    else:
        cls = _BY_STATUS.get(status, QueueError)
    return cls(detail, code=code, status=status)
