"""Every API error as the contract's JSON: ``{"error": <code>, "detail": <text>}``."""

import logging

import simplejson
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import DatabaseError, DataError
from django.http import HttpResponse, HttpResponseNotAllowed
from rest_framework import exceptions

from ..domain import LeaseConflict, MessageNotFound, QueueError

logger = logging.getLogger(__name__)

_QUEUE_ERROR_STATUS = {MessageNotFound: 404, LeaseConflict: 409}

_API_ERROR_CODES = {
    exceptions.ParseError: "invalid_json",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.NotAuthenticated: "unauthorized",
    exceptions.AuthenticationFailed: "unauthorized",
    exceptions.PermissionDenied: "forbidden",
    exceptions.NotFound: "not_found",
}


def error_response(status: int, code: str, detail: str, headers=None) -> HttpResponse:
    body = simplejson.dumps({"error": code, "detail": detail})
    return HttpResponse(body, status=status, content_type="application/json", headers=headers)


def exception_handler(exc, context):
    """DRF's hook: domain errors, DRF's own, oversized bodies and database outages."""
    if isinstance(exc, QueueError):
        status = getattr(exc, "status", None) or _QUEUE_ERROR_STATUS.get(type(exc), 400)
        return error_response(status, exc.code, exc.detail)
    if isinstance(exc, RequestDataTooBig):
        return error_response(413, "too_large", "the request body is too large")
    if isinstance(exc, exceptions.APIException):
        headers = {}
        if getattr(exc, "auth_header", None):
            headers["WWW-Authenticate"] = exc.auth_header
        if getattr(exc, "wait", None):
            headers["Retry-After"] = str(int(exc.wait))
        code = _API_ERROR_CODES.get(type(exc), exc.default_code)
        return error_response(exc.status_code, code, str(exc.detail), headers)
    # The driver's text (addresses, table names, what it choked on) goes to the
    # log, not to the client.
    if isinstance(exc, DataError):
        # A value the database refuses to store or compare that the input checks
        # let through: the request's fault, and its statement changed nothing.
        logger.warning("the database refused a value", exc_info=exc)
        return error_response(400, "invalid_input", "the database refused a value of this request")
    if isinstance(exc, DatabaseError):
        logger.exception("database error")
        return error_response(
            503, "database_unavailable", "the database did not answer; the server's log says why"
        )
    return None


def not_found(request, exception=None):
    return error_response(404, "not_found", f"no route for {request.method} {request.path}")


def bad_request(request, exception=None):
    return error_response(400, "bad_request", "the request could not be understood")


def forbidden(request, exception=None):
    return error_response(403, "forbidden", "this request is not allowed")


def server_error(request):
    return error_response(500, "server_error", "the server failed; the error is in its log")


def csrf_failure(request, reason=""):
    """``CSRF_FAILURE_VIEW``: a page's form posted without its CSRF token."""
    return error_response(403, "csrf_failed", f"CSRF verification failed: {reason}")


def json_method_not_allowed(get_response):
    """The pages' middleware: Django's bare 405 (``require_safe``, the admin's
    logout) as the contract's JSON error."""

    def middleware(request):
        response = get_response(request)
        if isinstance(response, HttpResponseNotAllowed):
            detail = f"{request.method} is not allowed here; allowed: {response['Allow']}"
            return error_response(405, "method_not_allowed", detail, {"Allow": response["Allow"]})
        return response

    return middleware


def login_locked_out(request, original_response=None, credentials=None):
    """django-axes' answer to a login from a locked-out username and address."""
    seconds = int(settings.AXES_COOLOFF_TIME.total_seconds())
    return error_response(
        429,
        "too_many_logins",
        f"too many failed logins for this username from this address; "
        f"try again after {seconds} seconds without another attempt",
        {"Retry-After": str(seconds)},
    )
