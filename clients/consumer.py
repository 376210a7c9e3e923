import logging
import random
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from .errors import Conflict, NotFound, QueueConnectionError, QueueError, ServerError
from .http import QueueClient
from .messages import BatchResult, Failure, Message

logger = logging.getLogger(__name__)

# After an empty answer that came back sooner than this, wait out the rest
# before polling again: a server without long polling answers 204 at once, and
# the worker loop must not spin on it.
MIN_POLL_INTERVAL = 1.0
# The longest pause between polls while the server is unreachable or failing.
MAX_RECONNECT_DELAY = 10.0


class Consumer(QueueClient):
    """Leases messages from one queue, and finishes or gives them back.

    >>> with Consumer("localhost", 3000) as consumer:
    ...     message = consumer.get_next_message(wait=20)
    ...     if message:
    ...         handle(message.payload)
    ...         consumer.notify_processed(message)

    Or let ``run`` do the loop, the heartbeat and the error handling.
    """

    def get_next_message(
        self, *, wait: float | None = None, timeout: float | None = None
    ) -> Message | None:
        """Lease the next message, or None when the queue has nothing to deliver.

        ``wait`` (seconds, up to 20) holds the call until a message arrives or
        the wait ends; ``timeout`` asks for a lease of that many seconds instead
        of the queue's default.
        """
        response = self._request(
            "GET", self._route("message/next"), params={"wait": wait, "timeout": timeout}, wait=wait
        )
        if response.status_code == 204:
            return None
        return Message.from_json(self._json(response), self.queue)

    def get_next_messages(
        self, count: int, *, wait: float | None = None, timeout: float | None = None
    ) -> list[Message]:
        """Lease up to ``count`` (at most 1000) messages, oldest first; [] when none."""
        response = self._request(
            "GET",
            self._route("messages/next"),
            params={"count": count, "wait": wait, "timeout": timeout},
            wait=wait,
        )
        if response.status_code == 204:
            return []
        return [Message.from_json(m, self.queue) for m in self._json(response)["messages"]]

    def notify_processed(self, message: Message | int) -> bool:
        """Mark a message done, so it is never delivered again; return True.

        Given a ``Message``, its lease is sent and only that delivery may finish
        it (``Conflict`` if it was re-delivered since). Given an id, any current
        delivery is accepted, as with the seed's clients.
        """
        message_id, lease, queue = _parts(message, self.queue)
        body = {"lease": lease} if lease else None
        self._request(
            "POST",
            self._route(f"message/{message_id}/status/done", queue),
            json=body,
            done_if_repeated=404,
        )
        return True

    def notify_processed_many(self, messages: Iterable[Message | int]) -> BatchResult:
        """Mark several messages done in one call; each succeeds or fails on its own.

        A repeat after a lost answer reports the messages the first attempt
        finished as failed with ``not_found``: they are done all the same.
        """
        items = []
        for message in messages:
            message_id, lease, _ = _parts(message, self.queue)
            items.append({"id": message_id, "lease": lease} if lease else {"id": message_id})
        response = self._request(
            "POST", self._route("messages/status/done"), json={"messages": items}
        )
        body = self._json(response)
        return BatchResult(
            processed=tuple(int(i) for i in body["processed"]),
            failed=tuple(
                Failure(int(f["id"]), str(f["error"]), str(f.get("detail", "")))
                for f in body["failed"]
            ),
        )

    def extend_lease(self, message: Message, timeout: float | None = None) -> Message:
        """Extend the lease to ``timeout`` seconds from now (default: the queue's lease
        length); return the message with its new ``lease_expires_at``.

        ``Conflict`` when the lease has expired and the message went to someone else.
        """
        body: dict[str, Any] = {"lease": message.lease}
        if timeout is not None:
            body["timeout"] = timeout
        response = self._request(
            "POST", self._route(f"message/{message.id}/lease", message.queue), json=body
        )
        return message.with_lease(self._json(response))

    def give_back(self, message: Message, delay: float | None = None) -> str | None:
        """Return a leased message to the queue at once, or after ``delay`` seconds.

        Returns its new status: ``"ready"``, ``"delayed"`` (with ``delay``), or
        ``"dead"`` when that was its last allowed delivery; None when a repeat
        after a lost answer found it already given back.
        """
        body: dict[str, Any] = {"lease": message.lease}
        if delay is not None:
            body["delay"] = delay
        response = self._request(
            "POST",
            self._route(f"message/{message.id}/status/ready", message.queue),
            json=body,
            done_if_repeated=409,
        )
        return None if response is None else self._json(response)["status"]

    def run(
        self,
        handler: Callable[[Message], Any],
        *,
        wait: float = 20,
        timeout: float | None = None,
        max_messages: int | None = None,
        stop_event: threading.Event | None = None,
        retry_delay: float = 1.0,
        max_retry_delay: float = 300.0,
    ) -> int:
        """Handle messages until stopped; return how many were handled.

        Each message is leased (long-polling ``wait`` seconds), passed to
        ``handler``, then marked done if the handler returns, or given back if it
        raises, hidden for ``retry_delay * 2 ** (attempts - 1)`` seconds (at most
        ``max_retry_delay``) so a failing message does not spin. While the
        handler runs a background thread extends the lease every third of its
        length: ``timeout``, or else the queue's own, its length estimated from
        the delivery's expiry and this machine's clock.

        Stops after the current message on SIGINT or SIGTERM (a second one acts
        as usual; handlers are installed only in the main thread), when
        ``stop_event`` is set, or after ``max_messages``. An unreachable or
        failing server is waited for, with growing pauses; a 4xx answer to the
        poll (bad token, bad queue name) is raised.
        """
        stop = stop_event or threading.Event()
        handled = 0
        failures = 0
        logger.info("consuming %s on %s", self.queue, self.base_url)
        with _stop_on_signals(stop):
            while not stop.is_set() and (max_messages is None or handled < max_messages):
                started = time.monotonic()
                try:
                    message = self.get_next_message(wait=wait, timeout=timeout)
                except (QueueConnectionError, ServerError) as exc:
                    pause = min(MAX_RECONNECT_DELAY, self.backoff * 2**failures)
                    pause *= random.uniform(0.5, 1.0)
                    failures += 1
                    logger.warning("polling failed (%s); trying again in %.2f s", exc, pause)
                    stop.wait(pause)
                    continue
                failures = 0
                if message is None:
                    stop.wait(max(0.0, MIN_POLL_INTERVAL - (time.monotonic() - started)))
                    continue
                self._handle(handler, message, timeout, retry_delay, max_retry_delay)
                handled += 1
        logger.info("stopped after %d messages", handled)
        return handled

    def _handle(
        self,
        handler: Callable[[Message], Any],
        message: Message,
        timeout: float | None,
        retry_delay: float,
        max_retry_delay: float,
    ) -> None:
        if timeout is None:
            # The queue's lease, which each heartbeat renews as it is. Its length is
            # how far away the expiry is now (clocks a few seconds apart at most).
            length = (message.lease_expires_at - datetime.now(UTC)).total_seconds()
        else:
            length = timeout
        logger.debug("handling message %s (attempt %d)", message.id, message.attempts)
        with _Heartbeat(self, message, timeout, interval=max(0.1, length / 3)) as heartbeat:
            try:
                handler(message)
            except Exception:
                logger.exception("handler failed on message %s", message.id)
                failed = True
            except BaseException:
                # Interrupted (a second Ctrl-C): hand the message on now, not at lease expiry.
                heartbeat.stop()
                self._give_back_quietly(heartbeat.message, None)
                raise
            else:
                failed = False
        if failed:
            delay = min(max_retry_delay, retry_delay * 2 ** (message.attempts - 1))
            self._give_back_quietly(heartbeat.message, delay or None)
            return
        try:
            self.notify_processed(heartbeat.message)
        except (Conflict, NotFound) as exc:
            logger.warning(
                "message %s was handled but its lease was lost (%s); it may be handled twice",
                message.id,
                exc,
            )
        except QueueError as exc:
            logger.error(
                "could not mark message %s done (%s); it will be delivered again", message.id, exc
            )

    def _give_back_quietly(self, message: Message, delay: float | None) -> None:
        try:
            status = self.give_back(message, delay)
        except QueueError as exc:
            logger.error(
                "could not give back message %s (%s); it returns when its lease expires",
                message.id,
                exc,
            )
        else:
            if status == "dead":
                logger.warning("message %s is dead after %d attempts", message.id, message.attempts)
            else:
                logger.info("gave back message %s, delay %s s", message.id, delay or 0)


class _Heartbeat:
    """Extends a message's lease to ``timeout`` every ``interval`` seconds until stopped."""

    def __init__(
        self, consumer: Consumer, message: Message, timeout: float | None, *, interval: float
    ):
        self.consumer = consumer
        self.message = message
        self.timeout = timeout
        self.interval = interval
        self._stopped = threading.Event()
        self._thread = threading.Thread(
            target=self._beat, name=f"mq-heartbeat-{message.id}", daemon=True
        )

    def __enter__(self) -> "_Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread is not threading.current_thread():
            self._thread.join()

    def _beat(self) -> None:
        while not self._stopped.wait(self.interval):
            try:
                self.message = self.consumer.extend_lease(self.message, self.timeout)
            except (Conflict, NotFound) as exc:
                logger.warning("lost the lease on message %s: %s", self.message.id, exc)
                return
            except QueueError as exc:
                logger.warning(
                    "could not extend the lease on message %s (%s); trying again",
                    self.message.id,
                    exc,
                )
            else:
                logger.debug(
                    "extended message %s to %s", self.message.id, self.message.lease_expires_at
                )


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """Set ``stop`` on the first SIGINT or SIGTERM; the next one acts as it did before."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous: dict[int, Any] = {}

    def handle(signum, frame):
        logger.info(
            "%s: stopping after the current message (send it again to stop at once)",
            signal.Signals(signum).name,
        )
        stop.set()
        signal.signal(signum, previous[signum])

    for signum in (signal.SIGINT, signal.SIGTERM):
        current = signal.getsignal(signum)
        previous[signum] = signal.SIG_DFL if current is None else current
        signal.signal(signum, handle)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _parts(message: Message | int, queue: str) -> tuple[int, str | None, str]:
    if isinstance(message, Message):
        return message.id, message.lease, message.queue
    return int(message), None, queue
