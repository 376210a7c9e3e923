"""Every error the service answers: its code, and the code's HTTP status.

``STATUS`` is the one table of codes; the API's exception handler answers
``QueueError`` with it, and the Python clients' exceptions are checked against
it (tests/test_errors.py).
"""

STATUS = {
    # The request: refused before anything is stored.
    "bad_request": 400,
    "invalid_json": 400,
    "incomplete_body": 400,
    "invalid_body": 400,
    "invalid_input": 400,
    "missing_payload": 400,
    "invalid_payload": 400,
    "invalid_payloads": 400,
    "invalid_queue_name": 400,
    "invalid_id": 400,
    "invalid_lease": 400,
    "invalid_timeout": 400,
    "invalid_delay": 400,
    "invalid_wait": 400,
    "invalid_count": 400,
    "invalid_key": 400,
    "invalid_max_attempts": 400,
    "invalid_dead_letter_queue": 400,
    "invalid_messages": 400,
    "invalid_window": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "csrf_failed": 403,
    "not_found": 404,
    "method_not_allowed": 405,
    "not_acceptable": 406,
    # The message is there, but the caller does not hold its current delivery.
    "message_dead": 409,
    "not_leased": 409,
    "lease_expired": 409,
    "stale_lease": 409,
    "too_large": 413,
    "unsupported_media_type": 415,
    "throttled": 429,
    "too_many_logins": 429,
    # The server's side.
    "server_error": 500,
    "database_unavailable": 503,
}


class QueueError(Exception):
    """A request the queue refuses: ``code`` (a key of ``STATUS``) and a human ``detail``."""

    code = "bad_request"

    def __init__(self, detail: str, code: str | None = None):
        super().__init__(detail)
        self.detail = detail
        if code:
            self.code = code

    @property
    def status(self) -> int:
        return STATUS[self.code]


class MessageNotFound(QueueError):
    code = "not_found"


class QueueNotFound(QueueError):
    code = "not_found"


class LeaseConflict(QueueError):
    """The message exists but the caller does not hold its current delivery."""
