"""Every API error as the contract's JSON: ``{"error": <code>, "detail": <text>}``."""

import logging

import simplejson
from django.core.exceptions import RequestDataTooBig
from django.db import DatabaseError, DataError
from django.http import HttpResponse
from rest_framework import exceptions

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
        code = _API_ERROR_CODES.get(type(exc), "bad_request")
        return error_response(code, str(exc.detail), headers)
    if isinstance(exc, DataError):
        # A value the database refuses to store or compare (PostgreSQL: a NUL
        # character in text): the request's fault, and its statement changed nothing.
        return error_response("invalid_input", f"the database refused a value: {exc}")
    if isinstance(exc, DatabaseError):
        logger.exception("database error")
        return error_response("database_unavailable", f"the database did not answer: {exc}".strip())
    return None


def not_found(request, exception=None):
    return error_response("not_found", f"no route for {request.method} {request.path}")


def bad_request(request, exception=None):
    return error_response("bad_request", "the request could not be understood")


def forbidden(request, exception=None):
    return error_response("forbidden", "this request is not allowed")


def server_error(request):
    return error_response("server_error", "the server failed; the error is in its log")
