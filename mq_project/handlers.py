"""Two ways into the views: the API without middleware, the pages with all of it.

Only the admin, /info and /metrics (open to a logged-in staff user) use
sessions, logins, messages and CSRF tokens; static files are served by
WhiteNoise's middleware. For the API (bearer tokens, JSON
in and out) Django's middleware stack does nothing but took about a third of
each request's time (seed cycle on SQLite 342 -> 461 msg/s without it). So
``mq_project.wsgi`` runs two Django handlers over one URLconf: paths starting
with ``PAGE_PATHS`` go through ``settings.MIDDLEWARE``, every other path
through no middleware. The test client routes the same way
(tests/conftest.py).
"""

from django.core.handlers.exception import convert_exception_to_response

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
