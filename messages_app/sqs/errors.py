"""SQS's errors: the JSON protocol's ``__type`` and the query protocol's code.

The SDKs pick their exception class from the JSON ``__type`` (or, for the
query protocol, from ``Error.Code``); the query code also travels in the JSON
protocol's ``x-amzn-query-error`` header, which botocore shows as ``Error.Code``.
"""

# The JSON protocol's type, by the query protocol's code.
QUERY_CODES = {
    "QueueDoesNotExist": "AWS.SimpleQueueService.NonExistentQueue",
    "QueueNameExists": "QueueAlreadyExists",
    "BatchEntryIdsNotDistinct": "AWS.SimpleQueueService.BatchEntryIdsNotDistinct",
    "TooManyEntriesInBatchRequest": "AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
    "EmptyBatchRequest": "AWS.SimpleQueueService.EmptyBatchRequest",
    "InvalidBatchEntryId": "AWS.SimpleQueueService.InvalidBatchEntryId",
    "BatchRequestTooLong": "AWS.SimpleQueueService.BatchRequestTooLong",
    "MessageNotInflight": "AWS.SimpleQueueService.MessageNotInflight",
    "UnsupportedOperation": "AWS.SimpleQueueService.UnsupportedOperation",
}


class SQSError(Exception):
    """A request SQS would refuse: ``type`` as the JSON protocol names it."""

    def __init__(self, type_: str, message: str, status: int = 400, sender: bool = True):
        super().__init__(message)
        self.type = type_
        self.message = message
        self.status = status
        self.sender = sender

    @property
    def query_code(self) -> str:
        return QUERY_CODES.get(self.type, self.type)


def invalid(message: str) -> SQSError:
    return SQSError("InvalidParameterValue", message)


def missing(name: str) -> SQSError:
    return SQSError("MissingParameter", f"The request must contain the parameter {name}.")


def no_queue() -> SQSError:
    return SQSError("QueueDoesNotExist", "The specified queue does not exist.")
