"""The server's access lines: one per request, written around the WSGI application
(``mq_project.wsgi.served``, what the ``message-queue`` command serves).

``2026-12-04 22:35:26,185 INFO access: 127.0.0.1 "GET /message/next" 204 1.3 ms``:
the time, as every other line of the log has it (``cli.LOG_FORMAT``), then the
client's address, the method, the path, the status and the time the app took
to answer. granian can write such lines itself (its ``log_access``), through
Python's logging with a dictionary of ten fields built per request: ~34 µs of
Python per line here, against ~5 µs for this one ``write`` of a formatted
line. In the running server the difference was larger: with granian's lines,
1,000 idle long-polls (``wait=20``) cost 1.0 to 2.1 points more of a core than
without any (README, Many waiters).
"""

import logging
import sys
import time

from .cli import LOG_FORMAT

# The time as logging.Formatter writes %(asctime)s by default, and the rest of
# the log's format filled in once: "%s INFO access: %s".
TIME_FORMAT = logging.Formatter.default_time_format
MSEC_FORMAT = logging.Formatter.default_msec_format
TEMPLATE = LOG_FORMAT % {"asctime": "%s", "levelname": "INFO", "name": "access", "message": "%s"}


def line(environ: dict, status: str, started: float) -> str:
    """The access line of a request answered with ``status`` (``"204 No Content"``),
    in the log's format."""
    now = time.time()
    asctime = MSEC_FORMAT % (time.strftime(TIME_FORMAT, time.localtime(now)), now % 1 * 1000)
    took = (time.perf_counter() - started) * 1000
    method, path = environ.get("REQUEST_METHOD", "-"), environ.get("PATH_INFO", "-")
    if not path.isprintable():  # "%0A" in a URL must not start a line of its own
        path = repr(path)[1:-1]
    message = f'{environ.get("REMOTE_ADDR", "-")} "{method} {path}" {status[:3]} {took:.1f} ms'
    return TEMPLATE % (asctime, message) + "\n"


def logged(application):
    """``application`` writing an access line to standard error for each request."""

    def with_access_line(environ, start_response):
        started = time.perf_counter()
        answered = ["500"]  # if the application raises

        def start(status, headers, exc_info=None):
            answered[0] = status
            return start_response(status, headers, exc_info)

        try:
            return application(environ, start)
        finally:
            try:
                sys.stderr.write(line(environ, answered[0], started))
            except (OSError, ValueError):
                pass  # a closed or broken log must not turn an answer into an error

    return with_access_line
