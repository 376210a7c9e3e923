"""The part every client shares: the session, the URLs, and one request path with retries.

Retries are a small loop here rather than urllib3's ``Retry`` on an
``HTTPAdapter``, for two reasons:

* whether a call may be repeated depends on the call, not the HTTP method:
  ``POST /message/new`` is safe to repeat only when it carries an idempotency
  ``key`` (the server then answers the first message's id), and the done /
  give-back calls are safe because repeating them cannot undo anything;
* the session may be passed in (DRF's ``RequestsClient`` in tests, a session
  with the caller's own adapters, proxies or certificates), and the client
  must not remount adapters on a session it does not own.

The policy:

* a connection that was never made (refused, DNS failure, connect timeout)
  is retried for every call, as the server cannot have seen the request;
* a connection that broke after the request went out, a read timeout, or a
  5xx answer is retried only for calls safe to repeat;
* a 4xx answer is never retried: the request is wrong and will stay wrong;
* ``retries`` extra attempts at most (default 3), waiting ``backoff`` seconds
  doubled each time (0.1, 0.2, 0.4 s by default, capped at 5 s, with jitter).
"""

import logging
import random
import time
from typing import Any, Self
from urllib.parse import quote

import requests
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from .errors import QueueConnectionError, QueueError, QueueTimeout, error_for

logger = logging.getLogger(__name__)

DEFAULT_QUEUE = "default"
MAX_BACKOFF = 5.0
# ``configure_queue``'s "leave as it is", as None there means "back to the default".
UNCHANGED: Any = object()
USER_AGENT = "message-queue-client/0.1"


class QueueClient:
    """A connection to one queue on a message-queue server.

    ``session`` defaults to a new ``requests.Session`` (one connection pool,
    closed by ``close()`` or on leaving a ``with`` block); a session passed in
    is used as it is and left open, as its owner closes it. ``timeout`` is the
    HTTP timeout in seconds (connect, and read beyond any long-poll ``wait``).
    """

    def __init__(
        self,
        hostname: str = "localhost",
        port: int = 3000,
        queue: str = DEFAULT_QUEUE,
        token: str | None = None,
        session: requests.Session | None = None,
        timeout: float = 10.0,
        scheme: str = "http",
        *,
        retries: int = 3,
        backoff: float = 0.1,
    ):
        self.base_url = f"{scheme}://{hostname}:{port}"
        self.queue = queue
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self._owns_session = session is None
        self.session = session if session is not None else requests.Session()
        self._headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.base_url!r}, queue={self.queue!r})"

    def close(self) -> None:
        """Close the connection pool, if this client opened it."""
        if self._owns_session:
            self.session.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # Queue-level calls, useful to producers and consumers alike.

    def queues(self) -> list[dict[str, Any]]:
        """Every queue on the server with its counts (``GET /queues``)."""
        return self._json(self._request("GET", "/queues"))["queues"]

    def queue_info(self) -> dict[str, Any]:
        """This queue's settings and counts (``GET /queues/<name>``)."""
        return self._json(self._request("GET", self._queue_url()))

    def configure_queue(
        self, *, timeout: float | None = UNCHANGED, max_attempts: int | None = UNCHANGED
    ) -> dict[str, Any]:
        """Set this queue's lease ``timeout`` (seconds) and/or ``max_attempts``; None
        puts one back to the server's default. Returns ``queue_info()``."""
        body = {"timeout": timeout, "max_attempts": max_attempts}
        body = {k: v for k, v in body.items() if v is not UNCHANGED}
        return self._json(self._request("PUT", self._queue_url(), json=body))

    def redrive(self) -> int:
        """Make this queue's dead messages ready again; return how many.

        Not repeated after a lost answer: a second redrive would report 0.
        """
        response = self._request("POST", self._queue_url("redrive"), repeatable=False)
        return int(self._json(response)["redriven"])

    # Plumbing.

    def _queue_url(self, tail: str = "", queue: str | None = None) -> str:
        url = f"/queues/{quote(queue or self.queue, safe='')}"
        return f"{url}/{tail}" if tail else url

    def _route(self, tail: str, queue: str | None = None) -> str:
        """A message route; the queue ``default`` uses the seed's top-level routes."""
        queue = queue or self.queue
        return f"/{tail}" if queue == DEFAULT_QUEUE else self._queue_url(tail, queue)

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        wait: float | None = None,
        repeatable: bool = True,
        done_if_repeated: int | None = None,
    ) -> requests.Response | None:
        """Send one call, retrying as the module docstring says; raise a ``QueueError``.

        ``done_if_repeated``: a status that, answered to a repeat of a request
        whose first attempt may have reached the server, means that first
        attempt did the work (a done answered 404: the message is already
        gone). Then None is returned instead of raising.
        """
        url = self.base_url + path
        read_timeout = self.timeout + (wait or 0)
        attempt = 0
        maybe_applied = False
        while True:
            try:
                response = self.session.request(
                    method,
                    url,
                    params=_without_none(params or {}),
                    json=json,
                    headers=self._headers,
                    timeout=(self.timeout, read_timeout),
                )
            except requests.RequestException as exc:
                never_sent = _never_sent(exc)
                error_class = QueueTimeout if isinstance(exc, requests.Timeout) else None
                error = (error_class or QueueConnectionError)(
                    f"{method} {url}: {exc}",
                    code="timeout" if error_class else "connection_error",
                )
                error.__cause__ = exc
                retry = never_sent or repeatable
                if not isinstance(exc, requests.ConnectionError | requests.Timeout):
                    retry = False  # an invalid URL and the like: a programming error
                maybe_applied = maybe_applied or not never_sent
            else:
                status = response.status_code
                if done_if_repeated is not None and maybe_applied and status == done_if_repeated:
                    logger.info(
                        "%s %s answered %s on a repeat: the first attempt did it",
                        method,
                        path,
                        status,
                    )
                    return None
                if status < 400:
                    return response
                error = error_for(response)
                if status < 500:
                    raise error
                retry = repeatable
                maybe_applied = True
            if not retry or attempt >= self.retries:
                raise error
            delay = min(MAX_BACKOFF, self.backoff * 2**attempt) * random.uniform(0.5, 1.0)
            attempt += 1
            logger.warning(
                "%s %s failed (%s); retry %d of %d in %.2f s",
                method,
                path,
                error,
                attempt,
                self.retries,
                delay,
            )
            time.sleep(delay)

    @staticmethod
    def _json(response: requests.Response) -> Any:
        try:
            return response.json()
        except ValueError as exc:
            raise QueueError(
                f"expected JSON, got {response.text[:200]!r}",
                code="unexpected_response",
                status=response.status_code,
            ) from exc


def _without_none(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def _never_sent(exc: requests.RequestException) -> bool:
    """True when the connection was never made, so the server cannot have seen the request."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    reason = exc.args[0] if exc.args else None
    reason = getattr(reason, "reason", reason)  # urllib3's MaxRetryError wraps the cause
    return isinstance(reason, NewConnectionError | ConnectTimeoutError)
