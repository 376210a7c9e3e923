"""The OpenAPI description of the API (drf-spectacular): the shapes of requests
and answers, and one ``extend_schema_view`` per view, applied in ``views``.

The serializers here only describe: the views check their input themselves
(``inputs``) and write their answers by hand.
"""

from drf_spectacular import openapi
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import serializers

from .. import counters, domain
from ..models import MAX_ATTEMPTS, MAX_LEASE_SECONDS
from .inputs import LEASE, MAX_ID, QUEUE_NAME

# Shapes


class Error(serializers.Serializer):
    error = serializers.CharField(help_text="A code for programs, e.g. `invalid_json`.")
    detail = serializers.CharField(help_text="What went wrong, for people.")


def _seconds(low: float, high: float, help_text: str, **kwargs) -> serializers.FloatField:
    return serializers.FloatField(min_value=low, max_value=high, help_text=help_text, **kwargs)


def _lease(**kwargs) -> serializers.RegexField:
    kwargs.setdefault("help_text", "The lease token that came with the message (one delivery).")
    return serializers.RegexField(f"^{LEASE.pattern}$", **kwargs)


_DELAY = "Seconds before the message can be delivered."
_TIMEOUT = "Seconds the lease lasts; default: the queue's `timeout`, else `PENDING_TIMEOUT`."


class SendJSON(serializers.Serializer):
    payload = serializers.JSONField(help_text="Any JSON value; it comes back exactly as sent.")
    delay = _seconds(0, domain.MAX_DELAY_SECONDS, _DELAY, required=False)
    key = serializers.CharField(
        min_length=1,
        max_length=200,
        required=False,
        help_text="Idempotency key: a key used again on this queue within `MQ_DEDUP_WINDOW` "
        "seconds stores nothing and answers the first message's id (no NUL, no unpaired "
        "surrogates).",
    )


class SendForm(serializers.Serializer):
    payload = serializers.CharField(help_text="Stored as a JSON string.")
    delay = _seconds(0, domain.MAX_DELAY_SECONDS, _DELAY, required=False)
    key = serializers.CharField(min_length=1, max_length=200, required=False)


class MessageId(serializers.Serializer):
    id = serializers.IntegerField(min_value=1, max_value=MAX_ID)


class Delivery(serializers.Serializer):
    id = serializers.IntegerField(min_value=1, max_value=MAX_ID)
    payload = serializers.JSONField(help_text="The payload exactly as it was sent.")
    lease = _lease()
    lease_expires_at = serializers.DateTimeField()
    attempts = serializers.IntegerField(min_value=1, help_text="Deliveries so far, this one too.")


class LeaseBody(serializers.Serializer):
    lease = _lease(required=False)


class ExtendBody(serializers.Serializer):
    lease = _lease(required=False)
    timeout = _seconds(0.001, MAX_LEASE_SECONDS, _TIMEOUT, required=False)


class GiveBackBody(serializers.Serializer):
    lease = _lease(required=False)
    delay = _seconds(0, domain.MAX_DELAY_SECONDS, _DELAY, required=False)


class Processed(serializers.Serializer):
    id = serializers.IntegerField(min_value=1, max_value=MAX_ID)
    status = serializers.ChoiceField(["processed"])


class Extended(serializers.Serializer):
    id = serializers.IntegerField(min_value=1, max_value=MAX_ID)
    lease = _lease(allow_null=True, help_text="The lease sent, or null when none was sent.")
    lease_expires_at = serializers.DateTimeField()


class GivenBack(serializers.Serializer):
    id = serializers.IntegerField(min_value=1, max_value=MAX_ID)
    status = serializers.ChoiceField(
        ["ready", "delayed", "dead"],
        help_text="`dead` when that was its last allowed delivery (moved to the queue's "
        "`dead_letter_queue` if it has one).",
    )


class SendBatch(serializers.Serializer):
    payloads = serializers.ListField(
        child=serializers.JSONField(), min_length=1, max_length=domain.MAX_BATCH
    )
    delay = _seconds(0, domain.MAX_DELAY_SECONDS, _DELAY, required=False)


class Ids(serializers.Serializer):
    ids = serializers.ListField(child=serializers.IntegerField(min_value=1, max_value=MAX_ID))


class Deliveries(serializers.Serializer):
    messages = Delivery(many=True, help_text="Oldest first; empty when none is available.")


class AckEntry(serializers.Serializer):
    id = serializers.IntegerField(min_value=1, max_value=MAX_ID)
    lease = _lease(required=False)


class AckBatch(serializers.Serializer):
    messages = serializers.ListField(child=AckEntry(), min_length=1, max_length=domain.MAX_BATCH)


class AckFailure(serializers.Serializer):
    id = serializers.IntegerField(min_value=1, max_value=MAX_ID)
    error = serializers.CharField()
    detail = serializers.CharField()


class AckResult(serializers.Serializer):
    processed = serializers.ListField(child=serializers.IntegerField(min_value=1, max_value=MAX_ID))
    failed = AckFailure(many=True, help_text="Each with the error a single ack would give.")


class QueueInfo(serializers.Serializer):
    name = serializers.RegexField(f"^{QUEUE_NAME.pattern}$")
    timeout = serializers.FloatField(allow_null=True, help_text="Default lease, seconds.")
    max_attempts = serializers.IntegerField(allow_null=True, min_value=1)
    dead_letter_queue = serializers.RegexField(
        f"^{QUEUE_NAME.pattern}$",
        allow_null=True,
        help_text="Where its dead messages go, ready; null: they stay here, dead.",
    )
    ready = serializers.IntegerField(min_value=0)
    delayed = serializers.IntegerField(min_value=0)
    leased = serializers.IntegerField(min_value=0)
    dead = serializers.IntegerField(min_value=0)
    oldest_created_at = serializers.DateTimeField(allow_null=True)


class Queues(serializers.Serializer):
    queues = QueueInfo(many=True)


class QueueSettings(serializers.Serializer):
    timeout = _seconds(
        0.001,
        MAX_LEASE_SECONDS,
        "Default lease; null: PENDING_TIMEOUT.",
        allow_null=True,
        required=False,
    )
    max_attempts = serializers.IntegerField(
        min_value=1,
        max_value=MAX_ATTEMPTS,
        allow_null=True,
        required=False,
        help_text="Deliveries before a message is dead; null: MQ_MAX_ATTEMPTS.",
    )
    dead_letter_queue = serializers.RegexField(
        f"^{QUEUE_NAME.pattern}$",
        allow_null=True,
        required=False,
        help_text="A queue (created if new, not this one) that receives this queue's dead "
        "messages, ready, attempts reset; null: they stay here, dead.",
    )


class Redriven(serializers.Serializer):
    queue = serializers.RegexField(f"^{QUEUE_NAME.pattern}$")
    redriven = serializers.IntegerField(min_value=0)


class QueueDeleted(serializers.Serializer):
    queue = serializers.RegexField(f"^{QUEUE_NAME.pattern}$")
    deleted = serializers.IntegerField(min_value=0, help_text="Its messages, deleted with it.")


def _count(help_text: str) -> serializers.IntegerField:
    return serializers.IntegerField(min_value=0, help_text=help_text)


def _depth(state: str) -> serializers.IntegerField:
    return serializers.IntegerField(
        min_value=0,
        allow_null=True,
        help_text=f"Messages {state}, sampled in the bucket; null: no sample.",
    )


def _seconds_or_null(help_text: str) -> serializers.FloatField:
    return serializers.FloatField(min_value=0, allow_null=True, help_text=help_text)


class StatsBucket(serializers.Serializer):
    time = serializers.DateTimeField(help_text="The start of the minute or hour.")
    sent = _count("Messages sent.")
    delivered = _count("Deliveries (leases handed out).")
    redelivered = _count("Deliveries with attempts > 1.")
    acked = _count("Messages marked done.")
    given_back = _count("Messages given back (nack).")
    expired = _count("Leases seen run out (by a claim or requeue_expired).")
    died = _count("Messages that became dead.")
    redriven = _count("Dead messages made ready again.")
    purged = _count("Messages purged, or deleted with their queue.")
    ready = _depth("ready")
    leased = _depth("leased")
    delayed = _depth("delayed")
    dead = _depth("dead")
    processed = _count("Acks with a processing time (delivery to ack).")
    processing_p50 = _seconds_or_null("Median processing time, seconds; null: no ack.")
    processing_p99 = _seconds_or_null("99th percentile processing time, seconds; null: no ack.")


class QueueHistory(serializers.Serializer):
    queue = serializers.RegexField(f"^{QUEUE_NAME.pattern}$")
    window = serializers.ChoiceField(list(counters.WINDOWS))
    span = serializers.ChoiceField(
        [counters.MINUTE, counters.HOUR], help_text="Seconds per bucket."
    )
    buckets = StatsBucket(
        many=True, help_text="Every bucket of the window, oldest first; the current one last."
    )


class HealthStatus(serializers.Serializer):
    status = serializers.ChoiceField(["ok"])
    database = serializers.ChoiceField(["sqlite", "postgresql", "mysql"])


# Parameters

QUEUE = OpenApiParameter(
    "queue",
    {"type": "string", "pattern": f"^{QUEUE_NAME.pattern}$"},
    OpenApiParameter.PATH,
    description="The queue's name; the routes without `/queues/{queue}` are the queue `default`.",
)
ID = OpenApiParameter(
    "id",
    {"type": "integer", "minimum": 1, "maximum": 10**18 - 1},
    OpenApiParameter.PATH,
    description="The message's id.",
)
TIMEOUT = OpenApiParameter(
    "timeout",
    {"type": "number", "minimum": 0.001, "maximum": MAX_LEASE_SECONDS},
    description=_TIMEOUT,
)
WAIT = OpenApiParameter(
    "wait",
    {"type": "number", "minimum": 0, "maximum": domain.MAX_WAIT_SECONDS},
    description="Long poll: seconds to wait for a message when none is available.",
)
COUNT = OpenApiParameter(
    "count",
    {"type": "integer", "minimum": 1, "maximum": domain.MAX_BATCH},
    description="How many messages at most (default 1).",
)
WINDOW = OpenApiParameter(
    "window",
    {"type": "string", "enum": list(counters.WINDOWS), "default": "1h"},
    description="`1h` and `24h` in one-minute buckets, `30d` in one-hour buckets.",
)
LEASE_PARAMETER = OpenApiParameter(
    "lease",
    {"type": "string", "pattern": f"^{LEASE.pattern}$"},
    description="The lease token, as an alternative to the body's `lease`.",
)


class AutoSchema(openapi.AutoSchema):
    """drf-spectacular's, with the queue's name and the message's id typed on
    every path that has them (Django's routes take any text there, to answer
    a bad one with a 400 of the API's own)."""

    def get_description(self):
        # The views' docstrings are written for this code's readers; the
        # operations' own descriptions are given here, in ``extend_schema``.
        return ""

    def get_override_parameters(self):
        typed = [p for p in (QUEUE, ID) if f"{{{p.name}}}" in self.path]
        return [*typed, *super().get_override_parameters()]


class BearerTokenScheme(OpenApiAuthenticationExtension):
    target_class = "messages_app.api.auth.BearerToken"
    name = "bearerToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "One of `MQ_API_TOKENS`; needed only when that is set.",
        }

    def get_security_requirement(self, auto_schema):
        # Either the token, or nothing at all when MQ_API_TOKENS is unset.
        return [{self.name: []}, {}]


# Answers

_ERRORS = {
    400: "Invalid input; `error` says which (`invalid_json`, `invalid_body`, "
    "`missing_payload`, `invalid_delay`, `invalid_queue_name`, `incomplete_body`, ...).",
    401: "`MQ_API_TOKENS` is set and the request has no valid `Authorization: Bearer <token>`.",
    404: "No message with this id in this queue.",
    409: "The message is not leased, its lease ran out, it is dead, or the lease sent "
    "is not its current one.",
    413: "The payload is over `MQ_MAX_PAYLOAD_BYTES`, or the body over `MQ_MAX_REQUEST_BYTES`.",
    415: "A body that is not JSON, a form or multipart.",
    503: "The database did not answer.",
}


def _answers(success: dict, *errors: int) -> dict:
    """``success`` ({status: shape}), and the errors each route can give: a bad
    or oversized request, a missing token, an unreachable database, plus ``errors``."""
    statuses = sorted({400, 401, 413, 503, *errors})
    return {
        **success,
        **{status: OpenApiResponse(Error, description=_ERRORS[status]) for status in statuses},
    }


_NO_QUEUE = OpenApiResponse(Error, description="No queue of this name (never used, or deleted).")

_SEND = extend_schema(
    summary="Send a message",
    description='A JSON body `{"payload": <any JSON value>}`, or a form field `payload` '
    "(a string payload; a file part is refused).",
    request={
        "application/json": SendJSON,
        "application/x-www-form-urlencoded": SendForm,
        "multipart/form-data": SendForm,
    },
    responses=_answers(
        {
            201: OpenApiResponse(MessageId, description="Stored."),
            200: OpenApiResponse(
                MessageId, description="`key` was already used: the first message's id."
            ),
        },
        415,
    ),
)
send_message = extend_schema_view(post=_SEND)

next_message = extend_schema_view(
    get=extend_schema(
        summary="Lease the next message",
        description="The deliverable message with the smallest id, leased for `timeout` "
        "seconds; a lease that runs out puts it back at the front of the queue.",
        parameters=[TIMEOUT, WAIT],
        responses=_answers(
            {
                200: OpenApiResponse(Delivery, description="The oldest deliverable message."),
                204: OpenApiResponse(description="Nothing available (after `wait`); no body."),
            }
        ),
    )
)


def _on_a_delivery(summary: str, body, answer, **more):
    """A call on one leased message: its lease token in the body or the query string."""
    return extend_schema_view(
        post=extend_schema(
            summary=summary,
            parameters=[LEASE_PARAMETER],
            request=body,
            responses=_answers({200: answer}, 404, 409, 415),
            **more,
        )
    )


message_done = _on_a_delivery(
    "Mark a leased message done (deletes it)",
    LeaseBody,
    Processed,
    description="With the current lease token, also just after the lease ran out if "
    "nobody claimed the message since; without one, only while the lease runs.",
)
extend_lease = _on_a_delivery("Extend a lease (heartbeat)", ExtendBody, Extended)
give_back = _on_a_delivery("Give a leased message back (nack)", GiveBackBody, GivenBack)

send_messages = extend_schema_view(
    post=extend_schema(
        summary="Send a batch of messages",
        request={"application/json": SendBatch},
        responses=_answers({201: OpenApiResponse(Ids, description="Stored, in order.")}, 415),
    )
)

next_messages = extend_schema_view(
    get=extend_schema(
        summary="Lease up to `count` messages",
        parameters=[COUNT, TIMEOUT, WAIT],
        responses=_answers({200: Deliveries}),
    )
)

messages_done = extend_schema_view(
    post=extend_schema(
        summary="Mark a batch of leased messages done",
        request={"application/json": AckBatch},
        responses=_answers({200: AckResult}, 415),
    )
)

queue_list = extend_schema_view(
    get=extend_schema(
        operation_id="queues_list",
        summary="Every queue with its counts",
        responses=_answers({200: Queues}),
    )
)

queue_detail = extend_schema_view(
    get=extend_schema(
        summary="One queue's settings and counts (a queue never used has zeros)",
        responses=_answers({200: QueueInfo}),
    ),
    put=extend_schema(
        summary="Change a queue's `timeout`, `max_attempts` and `dead_letter_queue`",
        request={"application/json": QueueSettings},
        responses=_answers({200: QueueInfo}, 415),
    ),
    delete=extend_schema(
        summary="Delete a queue, its messages, settings and history",
        request=None,
        responses={**_answers({200: QueueDeleted}), 404: _NO_QUEUE},
    ),
)

queue_history = extend_schema_view(
    get=extend_schema(
        summary="A queue's counters, depth and processing time over a window",
        description="The stored counters of every server process, this one's pending counts "
        "included.",
        parameters=[WINDOW],
        responses={**_answers({200: QueueHistory}), 404: _NO_QUEUE},
    )
)

redrive = extend_schema_view(
    post=extend_schema(
        summary="Make the queue's dead messages ready again",
        request=None,
        responses=_answers({200: Redriven}),
    )
)

health = extend_schema_view(
    get=extend_schema(
        summary="The process is up and the database answers",
        responses={
            200: HealthStatus,
            **{s: OpenApiResponse(Error, description=_ERRORS[s]) for s in (400, 413, 503)},
        },
    )
)
