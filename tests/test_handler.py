"""The API's WSGI handler does the request signals' work itself (mq_project.handlers.OnePass);
the served application adds an access line (mq_project.access)."""

import io
import re
import sys

import pytest
from django.core.signals import request_finished, request_started
from django.db import connection

from mq_project import wsgi
from mq_project.wsgi import APIHandler

ACCESS_LINE = r'\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO access: - "GET /nowhere" 404 [\d.]+ ms'


def call(path: str, application=None):
    """One GET through the production API handler (or ``application``), as granian
    calls it; (status, body)."""
    application = application or APIHandler()
    environ = {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.input": io.BytesIO(),
        "wsgi.errors": sys.stderr,
        "wsgi.url_scheme": "http",
    }
    statuses = []
    result = application(environ, lambda status, headers, exc_info=None: statuses.append(status))
    body = b"".join(result)
    if hasattr(result, "close"):
        result.close()
    return statuses[0], body


@pytest.mark.django_db(transaction=True)
def test_other_receivers_of_the_request_signals_are_still_called():
    calls = []

    def receiver(signal, **kwargs):
        calls.append(signal)

    request_started.connect(receiver)
    request_finished.connect(receiver)
    try:
        status, _ = call("/health")
    finally:
        request_started.disconnect(receiver)
        request_finished.disconnect(receiver)
    assert status.startswith("200")
    assert calls == [request_started, request_finished]


@pytest.mark.django_db(transaction=True)
def test_a_connection_past_conn_max_age_is_closed_at_the_end_of_the_request(monkeypatch):
    connection.close()
    monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", 0)
    status, body = call("/health")
    assert status.startswith("200"), body
    assert connection.connection is None


@pytest.mark.django_db(transaction=True)
def test_message_queue_serves_an_access_line_per_request_and_runserver_none(capsys):
    status, _ = call("/nowhere", wsgi.served)
    assert status.startswith("404")
    lines = [line for line in capsys.readouterr().err.splitlines() if " access: " in line]
    assert len(lines) == 1, lines
    assert re.fullmatch(ACCESS_LINE, lines[0]), lines

    status, _ = call("/nowhere", wsgi.application)  # what WSGI_APPLICATION names
    assert status.startswith("404")
    assert "access" not in capsys.readouterr().err
