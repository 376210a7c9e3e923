"""The endpoint: ``/sqs`` and every queue URL ``/sqs/<account>/<queue>``.

A plain Django view: outside the native API's token auth (it checks SigV4
itself, ``auth``) and, as every API path, outside the middleware (no CSRF).
"""

import logging

from django.core.exceptions import RequestDataTooBig
from django.db import DatabaseError
from django.views.decorators.csrf import csrf_exempt

from ..api.errors import not_found
from . import actions, auth, protocol
from .errors import SQSError

logger = logging.getLogger(__name__)


@csrf_exempt
def endpoint(request, account: str | None = None, queue: str | None = None):
    read = None
    try:
        if request.method != "POST" and not request.GET:
            raise SQSError("InvalidAction", "Send SQS actions with POST.", status=405)
        auth.verify(request)
        read = protocol.read(request)
        base_url = request.build_absolute_uri("/sqs")
        context = actions.Context(base_url, path_queue=queue)
        result = actions.run(read.action, read.params, context)
        return protocol.respond(read, read.action, result)
    except SQSError as exc:
        return protocol.error(read, exc)
    except RequestDataTooBig:
        return protocol.error(read, SQSError("RequestEntityTooLarge", "Request too large.", 413))
    except DatabaseError:
        logger.exception("database error")
        return protocol.error(
            read,
            SQSError("ServiceUnavailable", "The database did not answer.", 503, sender=False),
        )


@csrf_exempt
def root(request):
    """``/``: SQS requests too, for clients whose endpoint cannot have a path (kombu's
    SQS transport, so Celery's, builds ``http://host:port`` itself); anything else
    is the native 404."""
    if "X-Amz-Target" in request.headers or "Action" in request.GET or "Action" in request.POST:
        return endpoint(request)
    return not_found(request)
