"""The API's WSGI handler does the request signals' work itself (mq_project.handlers.OnePass)."""

import io
import sys

import pytest
from django.core.signals import request_finished, request_started
from django.db import connection

from mq_project.wsgi import APIHandler


def call(path: str):
    """One GET through the production API handler, as granian calls it; (status, body)."""
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
    result = APIHandler()(environ, lambda status, headers, exc_info=None: statuses.append(status))
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
