import hmac

from django.conf import settings
from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.permissions import BasePermission


def bearer_token(request) -> str | None:
    """The request's bearer token, or None when it sends none."""
    scheme, _, token = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    return token if scheme.lower() == "bearer" else None


def is_valid_token(token: str) -> bool:
    return any(hmac.compare_digest(token.encode(), t.encode()) for t in settings.MQ_API_TOKENS)


class BearerToken(BaseAuthentication):
    """``Authorization: Bearer <token>`` against ``MQ_API_TOKENS``."""

    def authenticate(self, request):
        token = bearer_token(request)
        if token is None or not settings.MQ_API_TOKENS:
            return None
        if not is_valid_token(token):
            raise AuthenticationFailed("the bearer token is not one of MQ_API_TOKENS")
        return (None, token)

    def authenticate_header(self, request):
        return 'Bearer realm="message-queue"'


class HasQueueToken(BasePermission):
    """Open when ``MQ_API_TOKENS`` is empty; otherwise a valid bearer token is needed."""

    message = "this queue needs Authorization: Bearer <token>"

    def has_permission(self, request, view):
        return not settings.MQ_API_TOKENS or request.auth is not None
