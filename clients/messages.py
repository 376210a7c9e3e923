"""What the consumer calls return: a delivered ``Message`` and a ``BatchResult``."""

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from .errors import QueueError


@dataclass(frozen=True)
class Message:
    """One delivery of a message: ``lease`` names this delivery and is needed to finish it."""

    id: int
    payload: Any
    lease: str
    lease_expires_at: datetime
    attempts: int
    queue: str = "default"

    @classmethod
    def from_json(cls, data: Any, queue: str) -> "Message":
        try:
            return cls(
                id=int(data["id"]),
                payload=data["payload"],
                lease=str(data["lease"]),
                lease_expires_at=parse_time(data["lease_expires_at"]),
                attempts=int(data["attempts"]),
                queue=queue,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise QueueError(
                f"the server's delivery is not understood: {data!r}", code="unexpected_response"
            ) from exc

    def with_lease(self, data: Any) -> "Message":
        """This message with the lease an extend answered (``{"lease", "lease_expires_at"}``)."""
        try:
            return replace(
                self,
                lease=str(data.get("lease", self.lease)),
                lease_expires_at=parse_time(data["lease_expires_at"]),
            )
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise QueueError(
                f"the server's lease answer is not understood: {data!r}",
                code="unexpected_response",
            ) from exc


@dataclass(frozen=True)
class Failure:
    """A message a batch call could not finish: the server's error code and detail."""

    id: int
    error: str
    detail: str = ""


@dataclass(frozen=True)
class BatchResult:
    """The answer to ``notify_processed_many``: ids finished, and those that were not."""

    processed: tuple[int, ...]
    failed: tuple[Failure, ...]

    @property
    def ok(self) -> bool:
        return not self.failed


def parse_time(text: str) -> datetime:
    """An ISO 8601 time from the server (``...Z`` included) as an aware datetime."""
    return datetime.fromisoformat(text)
