"""The HTTP API: each view checks its input, makes one domain call and answers.

Deliveries are written out by hand so the stored payload text is spliced into
the response as it is, never decoded and encoded again.
"""

import dataclasses
import functools

import simplejson
from django.db import connection
from django.http import HttpResponse
from rest_framework import views

from .. import counters, domain
from . import inputs, parsers, schema

DEFAULT_QUEUE = "default"


def json_text_response(text: str, status: int = 200) -> HttpResponse:
    """JSON text as the response's bytes, its Content-Length set here (the handler
    would otherwise measure the body again)."""
    body = text.encode()
    response = HttpResponse(body, status=status, content_type="application/json")
    response.headers["Content-Length"] = str(len(body))
    return response


def json_response(data, status: int = 200) -> HttpResponse:
    return json_text_response(simplejson.dumps(data), status)


def no_content() -> HttpResponse:
    response = HttpResponse(status=204)
    del response["Content-Type"]
    return response


def iso(moment) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def delivery_json(delivery: domain.Delivery) -> str:
    return (
        f'{{"id":{delivery.id},"payload":{delivery.payload},"lease":"{delivery.lease}",'
        f'"lease_expires_at":"{iso(delivery.lease_expires_at)}","attempts":{delivery.attempts}}}'
    )


@functools.cache
def instances(classes: tuple) -> list:
    """One instance of each class, made once: DRF's parsers, renderers,
    authenticators and permissions keep no state between requests."""
    return [cls() for cls in classes]


class APIView(views.APIView):
    """Every API view: once the caller is let in, its body is read whole and checked
    (``parsers.read_body``), whether or not the handler reads it.

    The request is ``parsers.Request``; the policy objects are made once per
    set of classes, not per request, and the default headers once per class."""

    def initialize_request(self, request, *args, **kwargs):
        return parsers.Request(
            request,
            parsers=self.get_parsers(),
            authenticators=self.get_authenticators(),
            negotiator=self.get_content_negotiator(),
            parser_context=self.get_parser_context(request),
        )

    def get_parsers(self):
        return instances(tuple(self.parser_classes))

    def get_renderers(self):
        return instances(tuple(self.renderer_classes))

    def get_authenticators(self):
        return instances(tuple(self.authentication_classes))

    def get_permissions(self):
        return instances(tuple(self.permission_classes))

    @property
    def default_response_headers(self):
        # DRF's (the Allow list of the view's methods), worked out once per view
        # class; a copy, as DRF pops Vary from it.
        view_class = type(self)
        if "_default_response_headers" not in view_class.__dict__:
            view_class._default_response_headers = super().default_response_headers
        return dict(view_class._default_response_headers)

    def get_content_negotiator(self):
        return instances((self.content_negotiation_class,))[0]

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        parsers.read_body(request)


class QueueView(APIView):
    """A route on one queue: ``queue`` comes from ``/queues/<name>/...`` or is ``default``."""

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        self.queue = inputs.queue_name(kwargs.get("queue", DEFAULT_QUEUE))


@schema.send_message
class SendMessage(QueueView):
    def post(self, request, **kwargs):
        fields = inputs.body(request.data)
        message_id, created = domain.send(
            self.queue,
            inputs.payload(fields),
            delay=inputs.delay(fields.get("delay")),
            key=inputs.key(fields.get("key")),
        )
        return json_response({"id": message_id}, status=201 if created else 200)


@schema.next_message
class NextMessage(QueueView):
    # Not HEAD: Django would answer it with ``get``, which leases a message.
    http_method_names = ["get", "options"]

    def get(self, request, **kwargs):
        params = request.query_params
        deliveries = domain.next_messages(
            self.queue,
            timeout=inputs.lease_timeout(params.get("timeout")),
            wait=inputs.wait(params.get("wait")),
        )
        if not deliveries:
            return no_content()
        return json_text_response(delivery_json(deliveries[0]))


@schema.message_done
class MessageDone(QueueView):
    def post(self, request, id, **kwargs):
        message_id = inputs.message_id(id)
        domain.done(self.queue, message_id, inputs.lease(request))
        return json_response({"id": message_id, "status": "processed"})


@schema.extend_lease
class ExtendLease(QueueView):
    def post(self, request, id, **kwargs):
        message_id = inputs.message_id(id)
        timeout = inputs.lease_timeout(inputs.body(request.data).get("timeout"))
        if timeout is None:
            timeout = domain.queue_settings(self.queue).lease_seconds
        lease = inputs.lease(request)
        expires = domain.extend_lease(self.queue, message_id, lease, timeout)
        return json_response({"id": message_id, "lease": lease, "lease_expires_at": iso(expires)})


@schema.give_back
class GiveBack(QueueView):
    def post(self, request, id, **kwargs):
        message_id = inputs.message_id(id)
        delay = inputs.delay(inputs.body(request.data).get("delay"))
        state = domain.give_back(self.queue, message_id, inputs.lease(request), delay)
        return json_response({"id": message_id, "status": state})


@schema.send_messages
class SendMessages(QueueView):
    def post(self, request, **kwargs):
        payloads = inputs.payloads(request.data)
        delay = inputs.delay(inputs.body(request.data).get("delay"))
        return json_response({"ids": domain.send_many(self.queue, payloads, delay)}, status=201)


@schema.next_messages
class NextMessages(QueueView):
    http_method_names = ["get", "options"]

    def get(self, request, **kwargs):
        params = request.query_params
        deliveries = domain.next_messages(
            self.queue,
            count=inputs.count(params.get("count")),
            timeout=inputs.lease_timeout(params.get("timeout")),
            wait=inputs.wait(params.get("wait")),
        )
        body = '{"messages":[' + ",".join(delivery_json(d) for d in deliveries) + "]}"
        return json_text_response(body)


@schema.messages_done
class MessagesDone(QueueView):
    def post(self, request, **kwargs):
        result = domain.done_many(self.queue, inputs.done_entries(request.data))
        failed = [
            {"id": message_id, "error": error.code, "detail": error.detail}
            for message_id, error in result.failed
        ]
        return json_response({"processed": result.processed, "failed": failed})


def stats_json(stats: domain.QueueStats) -> dict:
    oldest = stats.oldest_created_at
    return {
        "name": stats.name,
        "timeout": stats.timeout,
        "max_attempts": stats.max_attempts,
        "dead_letter_queue": stats.dead_letter_queue,
        "ready": stats.ready,
        "delayed": stats.delayed,
        "leased": stats.leased,
        "dead": stats.dead,
        "oldest_created_at": iso(oldest) if oldest else None,
    }


@schema.queue_list
class QueueList(APIView):
    def get(self, request):
        return json_response({"queues": [stats_json(s) for s in domain.queue_stats()]})


@schema.queue_detail
class QueueDetail(QueueView):
    """A queue's settings and counts; PUT changes ``timeout``, ``max_attempts`` and
    ``dead_letter_queue``."""

    def get(self, request, **kwargs):
        stats = domain.queue_stats(queues=[self.queue])
        if not stats:
            return json_response(stats_json(domain.QueueStats(self.queue)))
        return json_response(stats_json(stats[0]))

    def put(self, request, **kwargs):
        fields = inputs.body(request.data)
        changes = {}
        if "timeout" in fields:
            changes["timeout"] = inputs.lease_timeout(fields["timeout"])
        if "max_attempts" in fields:
            changes["max_attempts"] = inputs.max_attempts(fields["max_attempts"])
        if "dead_letter_queue" in fields:
            changes["dead_letter_queue"] = inputs.dead_letter_queue(fields["dead_letter_queue"])
        domain.configure(self.queue, **changes)
        return self.get(request, **kwargs)

    def delete(self, request, **kwargs):
        deleted = domain.delete_queue(self.queue)
        return json_response({"queue": self.queue, "deleted": deleted})


def bucket_json(bucket: counters.Bucket) -> dict:
    return {**dataclasses.asdict(bucket), "time": iso(bucket.time)}


@schema.queue_history
class QueueHistory(QueueView):
    """A queue's counters and depth over a window, bucket by bucket (for charts)."""

    def get(self, request, **kwargs):
        window = request.query_params.get("window", "1h")
        history = domain.queue_history(self.queue, window)
        return json_response(
            {
                "queue": history.queue,
                "window": history.window,
                "span": history.span,
                "buckets": [bucket_json(bucket) for bucket in history.buckets],
            }
        )


@schema.redrive
class Redrive(QueueView):
    def post(self, request, **kwargs):
        count = domain.redrive_queue(self.queue)
        return json_response({"queue": self.queue, "redriven": count})


@schema.health
class Health(APIView):
    """Up, and the database answers; a database error becomes a 503 in ``errors``."""

    authentication_classes = []
    permission_classes = []

    def get(self, request):
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return json_response({"status": "ok", "database": connection.vendor})
