"""Two ways into the views: the API without middleware, the pages with all of it.

Only the admin, /info and /metrics (open to a logged-in staff user) use
sessions, logins, messages and CSRF tokens; static files are served by
WhiteNoise's middleware. For the API (bearer tokens, JSON
in and out) Django's middleware stack does nothing but took about a third of
each request's time (seed cycle on SQLite 342 -> 461 msg/s without it). So
``mq_project.wsgi`` runs two Django handlers over one URLconf: paths starting
with ``PAGE_PATHS`` go through ``settings.MIDDLEWARE``, every other path
through no middleware. The test client routes the same way
(tests/conftest.py). The API's production handler also does the request
signals' work itself (``OnePass``); the test client's handler sends the
signals, as Django's test client always does (it keeps them from closing the
test's database connection).
"""

from django.conf import settings
from django.core import signals
from django.core.cache import caches, close_caches
from django.core.handlers.base import reset_urlconf
from django.core.handlers.exception import convert_exception_to_response
from django.core.handlers.wsgi import get_script_name
from django.db import close_old_connections, connections, reset_queries
from django.dispatch.dispatcher import NONE_ID
from django.urls import set_script_prefix, set_urlconf

PAGE_PATHS = ("/admin", "/info", "/metrics", "/static/")


def is_page(path: str) -> bool:
    return path.startswith(PAGE_PATHS)


class WithoutMiddleware:
    """Mixed into a Django handler: requests reach the view through no middleware,
    keeping what the handler does around it (URL resolution, the request
    signals that manage database connections, the JSON error handlers). It
    sets Content-Length, as ``CommonMiddleware`` does for the pages, so
    responses are not sent chunked (but not on a 204, which has no body)."""

    def load_middleware(self, is_async=False):
        self._view_middleware = []
        self._template_response_middleware = []
        self._exception_middleware = []
        self._middleware_chain = convert_exception_to_response(self._get_response)

    def get_response(self, request):
        response = super().get_response(request)
        if response.streaming or response.status_code == 204:
            return response
        if not response.has_header("Content-Length"):
            response.headers["Content-Length"] = str(len(response.content))
        return response


def _receivers(signal) -> frozenset:
    """Who a request signal calls, by the keys ``Signal.connect`` files them under."""
    return frozenset(key for key, *_ in signal.receivers)


# What Django itself connects to the request signals: the database
# connections' upkeep, the caches' closing, the URLconf's reset.
_DJANGO_STARTED = frozenset((id(f), NONE_ID) for f in (reset_queries, close_old_connections))
_DJANGO_FINISHED = frozenset(
    (id(f), NONE_ID) for f in (close_old_connections, close_caches, reset_urlconf)
)
# These backends' close() does nothing.
_NOTHING_TO_CLOSE = {
    "django.core.cache.backends.locmem.LocMemCache",
    "django.core.cache.backends.dummy.DummyCache",
}


class OnePass:
    """Mixed into ``WSGIHandler``: what ``request_started`` and ``request_finished``
    would do, done in place, without dispatching the signals (a tenth of a
    small request's work). While anything other than Django's own receivers is
    connected to them (the development server's autoreloader, a test), the
    request goes through ``WSGIHandler`` unchanged.

    At the start, each open database connection's query log is cleared and the
    connection closed if it is unusable or past ``CONN_MAX_AGE``
    (``close_old_connections``); at the end, the same check again (with the
    psycopg pool, this gives the connection back to it) and the URLconf reset.
    Caches are closed only if one is of a backend whose close() does something.
    A response with its body in memory is closed (``HttpResponse.close()``
    without the signal) and the request ended before the body goes to the
    server, as a list (granian writes a list in one piece); a streaming one is
    returned as Django does, and its ``close()`` sends ``request_finished``
    when the server is done with it.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.close_caches = any(
            cache["BACKEND"] not in _NOTHING_TO_CLOSE for cache in settings.CACHES.values()
        )

    def __call__(self, environ, start_response):
        if (
            _receivers(signals.request_started) != _DJANGO_STARTED
            or _receivers(signals.request_finished) != _DJANGO_FINISHED
        ):
            return super().__call__(environ, start_response)
        set_script_prefix(get_script_name(environ))
        for connection in connections.all(initialized_only=True):
            connection.queries_log.clear()
            connection.close_if_unusable_or_obsolete()
        response = self.get_response(self.request_class(environ))
        start_response(
            f"{response.status_code} {response.reason_phrase}",
            [
                *response.items(),
                *(("Set-Cookie", c.output(header="")) for c in response.cookies.values()),
            ],
        )
        if response.streaming:
            response._handler_class = self.__class__
            if getattr(response, "file_to_stream", None) and environ.get("wsgi.file_wrapper"):
                response.file_to_stream.close = response.close
                return environ["wsgi.file_wrapper"](response.file_to_stream, response.block_size)
            return response
        body = [response.content]
        # HttpResponse.close() but for its signal: the request's uploaded files closed.
        for closer in response._resource_closers:
            try:
                closer()
            except Exception:
                pass
        response._resource_closers.clear()
        response.closed = True
        for connection in connections.all(initialized_only=True):
            connection.close_if_unusable_or_obsolete()
        if self.close_caches:
            caches.close_all()
        set_urlconf(None)
        return body
