"""Every error is JSON ``{"error": <code>, "detail": <text>}`` with the right status,
and a refused request changes nothing that is stored."""

import json
from urllib.parse import quote

import pytest
import requests
from contract import assert_error

import clients.errors
from messages_app.errors import STATUS

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def some_messages(api):
    """A leased and a ready message, so "nothing changed" has something to check."""
    api.send("leased")
    api.next()
    api.send("ready")


def post_raw(api, url: str, body: str | bytes, content_type: str = "application/json"):
    return api.client.post(url, body, content_type=content_type)


@pytest.mark.parametrize("body", ["{}", '{"payloads": [1]}', '{"Payload": 1}', ""])
def test_a_json_body_without_payload_is_400(api, stored, body):
    before = stored()

    response = post_raw(api, "/message/new", body)

    assert_error(response, 400, "missing_payload")
    assert stored() == before


def test_a_form_without_a_payload_field_is_400(api, stored):
    before = stored()

    response = api.client.post("/message/new", {"other": "x"})

    assert_error(response, 400, "missing_payload")
    assert stored() == before


@pytest.mark.parametrize(
    "body",
    ['{"payload": 1', "{payload: 1}", "{'payload': 1}", '{"payload": 1} 2', '{"payload": 01}'],
)
def test_a_body_that_is_not_json_is_400(api, stored, body):
    before = stored()

    response = post_raw(api, "/message/new", body)

    assert_error(response, 400, "invalid_json")
    assert stored() == before


def test_a_body_that_is_not_utf8_is_400(api, stored):
    before = stored()

    response = post_raw(api, "/message/new", b'{"payload": "\xff\xfe"}')

    assert_error(response, 400, "invalid_json")
    assert stored() == before


@pytest.mark.parametrize("body", ["[1]", '[{"payload": 1}]', '"payload"', "1", "null", "true"])
def test_a_json_body_that_is_not_an_object_is_400(api, stored, body):
    before = stored()

    response = post_raw(api, "/message/new", body)

    assert_error(response, 400, "invalid_body")
    assert stored() == before


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_not_json_so_400(api, stored, number):
    before = stored()

    response = post_raw(api, "/message/new", f'{{"payload": {number}}}')

    assert_error(response, 400, "invalid_json")
    assert stored() == before


@pytest.mark.parametrize("content_type", ["text/plain", "application/xml", "application/x-ndjson"])
def test_a_body_of_another_media_type_is_415(api, stored, content_type):
    before = stored()

    response = post_raw(api, "/message/new", '{"payload": 1}', content_type)

    assert_error(response, 415, "unsupported_media_type")
    assert stored() == before


@pytest.mark.parametrize("payload", ["x" * 99, "é" * 50], ids=["ascii", "two-byte characters"])
def test_a_payload_over_MQ_MAX_PAYLOAD_BYTES_is_413(api, stored, settings, payload):
    settings.MQ_MAX_PAYLOAD_BYTES = 100
    before = stored()

    response = api.post("/message/new", {"payload": payload})

    assert_error(response, 413, "too_large")
    assert stored() == before


def test_a_form_payload_over_MQ_MAX_PAYLOAD_BYTES_is_413(api, stored, settings):
    settings.MQ_MAX_PAYLOAD_BYTES = 100
    before = stored()

    response = api.client.post("/message/new", {"payload": "x" * 99})

    assert_error(response, 413, "too_large")
    assert stored() == before


def test_a_json_body_over_DATA_UPLOAD_MAX_MEMORY_SIZE_is_413(api, stored, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    before = stored()

    response = api.post("/message/new", {"payload": 1, "padding": "x" * 1000})

    assert_error(response, 413, "too_large")
    assert stored() == before


def test_a_form_body_over_DATA_UPLOAD_MAX_MEMORY_SIZE_is_413(api, stored, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    before = stored()

    response = post_raw(
        api, "/message/new", "payload=1&padding=" + "x" * 1000, "application/x-www-form-urlencoded"
    )

    assert_error(response, 413, "too_large")
    assert stored() == before


BAD_QUEUE_NAMES = {
    "81 characters": "q" * 81,
    "a space": "has space",
    "unicode": "naïve",
    "a plus": "a+b",
    "a colon": "a:b",
    "a nul": "a\x00b",
}
QUEUE_ROUTES = [("post", "message/new"), ("get", "message/next"), ("post", "message/1/status/done")]


@pytest.mark.parametrize("method, route", QUEUE_ROUTES)
@pytest.mark.parametrize("name", BAD_QUEUE_NAMES.values(), ids=BAD_QUEUE_NAMES.keys())
def test_a_bad_queue_name_is_400_on_every_route(api, stored, name, method, route):
    before = stored()
    url = f"/queues/{quote(name)}/{route}"

    if method == "get":
        response = api.client.get(url)
    else:
        response = api.post(url, {"payload": 1})

    assert_error(response, 400, "invalid_queue_name")
    assert stored() == before


@pytest.mark.parametrize("timeout", ["0", "-1", "abc", "43201", "1e400", "nan", "inf", "0.0001"])
def test_a_bad_timeout_is_400_and_leases_nothing(api, stored, timeout):
    before = stored()

    response = api.next(timeout=timeout)

    assert_error(response, 400, "invalid_timeout")
    assert stored() == before


@pytest.mark.parametrize(
    "url",
    [
        "/nope",
        "/message/new/",
        "/message",
        "/message/1/status/failed",
        "/message/1/status/done/",
        "/queues/jobs/",
        "/queues/jobs/nope",
        "/queues/jobs/message/next/",
    ],
)
def test_an_unknown_route_is_404_json(api, stored, url):
    before = stored()

    response = api.client.post(url, '{"payload": 1}', content_type="application/json")

    assert_error(response, 404, "not_found")
    assert stored() == before


@pytest.mark.parametrize(
    "method, url",
    [
        ("get", "/message/new"),
        ("put", "/message/new"),
        ("post", "/message/next"),
        ("delete", "/message/next"),
        ("get", "/message/1/status/done"),
        ("delete", "/message/1/status/done"),
        ("get", "/queues/jobs/message/new"),
        ("post", "/queues"),
        ("post", "/health"),
    ],
)
def test_a_wrong_method_is_405_json(api, stored, method, url):
    before = stored()

    response = getattr(api.client, method)(url)

    assert_error(response, 405, "method_not_allowed")
    assert "Allow" in response
    assert stored() == before


# Odd requests of every kind: none may crash the server or answer with an HTML page.
ODD_REQUESTS = {
    "binary body": ("POST", "/message/new", b"\x00\x01\x02", "application/json"),
    "surrogate pair halves": (
        "POST",
        "/message/new",
        b'{"payload": "\\ud800\\udc00\\udfff"}',
        "application/json",
    ),
    "nested too deep": (
        "POST",
        "/message/new",
        b'{"payload": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        "application/json",
    ),
    "empty multipart": ("POST", "/message/new", b"--b--", "multipart/form-data; boundary=b"),
    "multipart without boundary": ("POST", "/message/new", b"payload=1", "multipart/form-data"),
    "form not utf-8": (
        "POST",
        "/message/new",
        b"payload=%ff%fe",
        "application/x-www-form-urlencoded",
    ),
    "latin-1 charset": (
        "POST",
        "/message/new",
        '{"payload": "é"}'.encode("latin-1"),
        "application/json; charset=latin-1",
    ),
    "unknown charset": (
        "POST",
        "/message/new",
        b'{"payload": 1}',
        "application/json; charset=nonsense",
    ),
    "no content type": ("POST", "/message/new", b'{"payload": 1}', ""),
    "payload in the query string": ("POST", "/message/new?payload=1", b"", "application/json"),
    "empty timeout": ("GET", "/message/next?timeout=", b"", None),
    "two timeouts": ("GET", "/message/next?timeout=1&timeout=abc", b"", None),
    "nul timeout": ("GET", "/message/next?timeout=%00", b"", None),
    "body on next": ("GET", "/message/next", b"[", "application/json"),
    "largest id": (
        "POST",
        "/message/999999999999999999/status/done",
        b'{"lease": "x"}',
        "application/json",
    ),
    "long lease": (
        "POST",
        "/message/1/status/done",
        b'{"lease": "' + b"x" * 10_000 + b'"}',
        "application/json",
    ),
    "done body an array": ("POST", "/message/1/status/done", b"[]", "application/json"),
    "done body not json": ("POST", "/message/1/status/done", b"{", "application/json"),
    "empty form lease": (
        "POST",
        "/message/1/status/done",
        b"lease=",
        "application/x-www-form-urlencoded",
    ),
    "nul id": ("POST", "/message/%00/status/done", b"", "application/json"),
    "nul queue": ("GET", "/queues/%00/message/next", b"", None),
    "dot-dot queue": ("GET", "/queues/..%2F/message/next", b"", None),
    "options": ("OPTIONS", "/message/new", b"", None),
    "queues with a nul parameter": ("GET", "/queues?x=%00", b"", None),
    "accept html": ("GET", "/message/nope", b"", None),
    "nul key": ("POST", "/message/new", b'{"payload": 1, "key": "\\u0000"}', "application/json"),
    "delay not a number": (
        "POST",
        "/message/new",
        b'{"payload": 1, "delay": "soon"}',
        "application/json",
    ),
    "huge delay": ("POST", "/message/new", b'{"payload": 1, "delay": 1e400}', "application/json"),
    "queue settings not an object": ("PUT", "/queues/jobs", b"[]", "application/json"),
    "queue timeout text": ("PUT", "/queues/jobs", b'{"timeout": "abc"}', "application/json"),
    "queue max_attempts negative": (
        "PUT",
        "/queues/jobs",
        b'{"max_attempts": -1}',
        "application/json",
    ),
    "queue max_attempts huge": (
        "PUT",
        "/queues/jobs",
        b'{"max_attempts": 1e400}',
        "application/json",
    ),
    "redrive with a body": ("POST", "/queues/jobs/redrive", b"{", "application/json"),
    "extend with junk": (
        "POST",
        "/message/1/lease",
        b'{"lease": 1, "timeout": []}',
        "application/json",
    ),
    "give back with nan delay": (
        "POST",
        "/message/1/status/ready",
        b'{"delay": NaN}',
        "application/json",
    ),
    "batch of junk": ("POST", "/messages/new", b'{"payloads": {"a": 1}}', "application/json"),
    "batch count text": ("GET", "/messages/next?count=lots", b"", None),
    "batch done junk": (
        "POST",
        "/messages/status/done",
        b'{"messages": [1, null, {}]}',
        "application/json",
    ),
    "wait text": ("GET", "/message/next?wait=forever", b"", None),
}


@pytest.mark.parametrize(
    "method, url, body, content_type", ODD_REQUESTS.values(), ids=ODD_REQUESTS.keys()
)
def test_no_odd_request_gets_a_500_or_an_html_page(api, method, url, body, content_type):
    extra = {} if content_type is None else {"content_type": content_type}

    response = api.client.generic(method, url, body, HTTP_ACCEPT="text/html", **extra)

    assert response.status_code < 500
    if response.status_code != 204:
        assert response["Content-Type"] == "application/json"


# The Python clients' mirror of the table


@pytest.mark.parametrize("code, status", sorted(STATUS.items()))
def test_the_clients_raise_a_typed_exception_for_every_error_code(code, status):
    answer = requests.Response()
    answer.status_code = status
    answer._content = json.dumps({"error": code, "detail": "why"}).encode()

    error = clients.errors.error_for(answer)

    assert (error.code, error.status, error.detail) == (code, status, "why")
    if status >= 500:
        assert type(error) is clients.ServerError
    else:
        assert type(error) is not clients.QueueError, f"no exception class for {status}"
