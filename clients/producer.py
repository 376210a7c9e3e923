from collections.abc import Iterable
from typing import Any

from .http import QueueClient


class Producer(QueueClient):
    """Adds messages to one queue.

    >>> with Producer("localhost", 3000) as producer:
    ...     message_id = producer.add_new_message({"to": "ada@example.com"})
    """

    def add_new_message(
        self, payload: Any, *, delay: float | None = None, key: str | None = None
    ) -> int:
        """Add ``payload`` (any JSON value) at the back of the queue; return its id.

        ``delay`` hides it for that many seconds. ``key`` makes the call
        idempotent: a key already used on this queue returns the first
        message's id and adds nothing. Only a call with a key is retried after
        a failure that may have reached the server; without one, a retry could
        add the message twice.
        """
        body = {"payload": payload}
        if delay is not None:
            body["delay"] = delay
        if key is not None:
            body["key"] = key
        response = self._request(
            "POST", self._route("message/new"), json=body, repeatable=key is not None
        )
        return int(self._json(response)["id"])

    def add_new_messages(self, payloads: Iterable[Any], *, delay: float | None = None) -> list[int]:
        """Add several messages in one call, in order; return their ids in the same order.

        Not retried after a failure that may have reached the server (no key).
        """
        body: dict[str, Any] = {"payloads": list(payloads)}
        if delay is not None:
            body["delay"] = delay
        response = self._request("POST", self._route("messages/new"), json=body, repeatable=False)
        return [int(i) for i in self._json(response)["ids"]]
