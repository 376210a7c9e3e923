"""Every API error as the contract's JSON: ``{"error": <code>, "detail": <text>}``."""

import logging

import simplejson
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import DatabaseError, DataError
from django.http import HttpResponse, HttpResponseNotAllowed
from rest_framework import exceptions

from .. import runtime
from ..errors import STATUS, QueueError

logger = logging.getLogger(__name__)

# DRF's exceptions, by the codes of ``errors.STATUS``.
_API_ERROR_CODES = {
    exceptions.ParseError: "invalid_json",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.NotAuthenticated: "unauthorized",
    exceptions.AuthenticationFailed: "unauthorized",
    exceptions.PermissionDenied: "forbidden",
    exceptions.NotFound: "not_found",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.Throttled: "throttled",
}


def error_response(code: str, detail: str, headers=None) -> HttpResponse:
    """The answer for error ``code`` (a key of ``errors.STATUS``, which gives its status)."""
    body = simplejson.dumps({"error": code, "detail": detail})
    return HttpResponse(body, status=STATUS[code], content_type="application/json", headers=headers)


def exception_handler(exc, context):
    """DRF's hook: domain errors, DRF's own, oversized bodies and database outages."""
    if isinstance(exc, QueueError):
        return error_response(exc.code, exc.detail)
    if isinstance(exc, RequestDataTooBig):
        return error_response("too_large", "the request body is too large")
    if isinstance(exc, exceptions.APIException):
        headers = {}
        if getattr(exc, "auth_header", None):
            headers["WWW-Authenticate"] = exc.auth_header
        if getattr(exc, "wait", None):
            headers["Retry-After"] = str(int(exc.wait))
        # Subclasses of DRF's exceptions (parsers.IncompleteBody) keep their own code.
        code = _API_ERROR_CODES.get(type(exc), exc.default_code)
        return error_response(code, str(exc.detail), headers)
    # The driver's text (addresses, table names, what it choked on) goes to the
    # log, not to the client.
    if isinstance(exc, DataError):
        # A value the database refuses to store or compare that the input checks
        # let through: the request's fault, and its statement changed nothing.
        logger.warning("the database refused a value", exc_info=exc)
        return error_response("invalid_input", "the database refused a value of this request")
    if isinstance(exc, DatabaseError):
        logger.exception("database error")
        runtime.current().store.unavailable()
        return error_response(
            "database_unavailable", "the database did not answer; the server's log says why"
        )
    return None


def not_found(request, exception=None):
    return error_response("not_found", f"no route for {request.method} {request.path}")


def bad_request(request, exception=None):
    return error_response("bad_request", "the request could not be understood")


def forbidden(request, exception=None):
    return error_response("forbidden", "this request is not allowed")


def server_error(request):
    return error_response("server_error", "the server failed; the error is in its log")


def csrf_failure(request, reason=""):
    """``CSRF_FAILURE_VIEW``: a page's form posted without its CSRF token."""
    return error_response("csrf_failed", f"CSRF verification failed: {reason}")


def json_method_not_allowed(get_response):
    """The pages' middleware: Django's bare 405 (``require_safe``, the admin's
    logout) as the contract's JSON error."""

    def middleware(request):
        response = get_response(request)
        if isinstance(response, HttpResponseNotAllowed):
            detail = f"{request.method} is not allowed here; allowed: {response['Allow']}"
            return error_response("method_not_allowed", detail, {"Allow": response["Allow"]})
        return response

    return middleware


def login_locked_out(request, original_response=None, credentials=None):
    """django-axes' answer to a login from a locked-out username and address."""
    seconds = int(settings.AXES_COOLOFF_TIME.total_seconds())
    return error_response(
        "too_many_logins",
        f"too many failed logins for this username from this address; "
        f"try again after {seconds} seconds without another attempt",
        {"Retry-After": str(seconds)},
    )
