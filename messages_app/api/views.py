"""The HTTP API: each view checks its input, makes one domain call and answers.

Deliveries are written out by hand so the stored payload text is spliced into
the response as it is, never decoded and encoded again.
"""

import simplejson
from django.db import connection
from django.http import HttpResponse
from rest_framework.views import APIView

from .. import domain
from . import inputs

DEFAULT_QUEUE = "default"


def json_response(data, status: int = 200) -> HttpResponse:
    return HttpResponse(simplejson.dumps(data), status=status, content_type="application/json")


def no_content() -> HttpResponse:
    response = HttpResponse(status=204)
    del response["Content-Type"]
    return response


def delivery_json(delivery: domain.Delivery) -> str:
    expires = delivery.lease_expires_at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return (
        f'{{"id":{delivery.id},"payload":{delivery.payload},"lease":"{delivery.lease}",'
        f'"lease_expires_at":"{expires}","attempts":{delivery.attempts}}}'
    )


class QueueView(APIView):
    """A route on one queue: ``queue`` comes from ``/queues/<name>/...`` or is ``default``."""

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        self.queue = inputs.queue_name(kwargs.get("queue", DEFAULT_QUEUE))


class SendMessage(QueueView):
    def post(self, request, **kwargs):
        message_id = domain.enqueue(self.queue, inputs.payload(request.data))
        return json_response({"id": message_id}, status=201)


class NextMessage(QueueView):
    def get(self, request, **kwargs):
        deliveries = domain.claim(self.queue, 1, inputs.lease_timeout(request.query_params))
        if not deliveries:
            return no_content()
        return HttpResponse(delivery_json(deliveries[0]), content_type="application/json")


class MessageDone(QueueView):
    def post(self, request, id, **kwargs):
        message_id = inputs.message_id(id)
        domain.ack(self.queue, message_id, inputs.lease(request))
        return json_response({"id": message_id, "status": "processed"})


def stats_json(stats: domain.QueueStats) -> dict:
    return {
        "name": stats.name,
        "ready": stats.ready,
        "delayed": stats.delayed,
        "leased": stats.leased,
        "dead": stats.dead,
        "oldest_created_at": stats.oldest_created_at.isoformat()
        if stats.oldest_created_at
        else None,
    }


class QueueList(APIView):
    def get(self, request):
        return json_response({"queues": [stats_json(s) for s in domain.queue_stats()]})


class Health(APIView):
    """Up, and the database answers; a database error becomes a 503 in ``errors``."""

    permission_classes = []

    def get(self, request):
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return json_response({"status": "ok", "database": connection.vendor})
