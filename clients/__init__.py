"""Python clients for message-queue: ``Producer``, ``Consumer`` and their errors."""

from .consumer import Consumer
from .errors import (
    BadRequest,
    Conflict,
    Forbidden,
    MethodNotAllowed,
    NotAcceptable,
    NotFound,
    PayloadTooLarge,
    QueueConnectionError,
    QueueError,
    QueueTimeout,
    ServerError,
    TooManyRequests,
    Unauthorized,
    UnsupportedMediaType,
)
from .http import QueueClient
from .messages import BatchResult, Failure, Message
from .producer import Producer

__all__ = [
    "BadRequest",
    "BatchResult",
    "Conflict",
    "Consumer",
    "Failure",
    "Forbidden",
    "Message",
    "MethodNotAllowed",
    "NotAcceptable",
    "NotFound",
    "PayloadTooLarge",
    "Producer",
    "QueueClient",
    "QueueConnectionError",
    "QueueError",
    "QueueTimeout",
    "ServerError",
    "TooManyRequests",
    "Unauthorized",
    "UnsupportedMediaType",
]
