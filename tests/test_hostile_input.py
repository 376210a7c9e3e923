"""Input an attacker (or a broken client) sends: each gets a clear 4xx JSON error or
is kept exactly, never a 500, and a refused request stores nothing."""

import json
import socket
import time

import pytest
import requests
from contract import assert_error
from django.core.files.uploadedfile import SimpleUploadedFile

from messages_app.models import IdempotencyKey, Message

pytestmark = pytest.mark.django_db

# More digits than Python turns into an int from text (sys.get_int_max_str_digits()).
HUGE_INTEGER = "9" * 5000
# An integer too large for a float: float() of it raises OverflowError.
BEYOND_FLOAT = "1" + "0" * 309
# The first id beyond every database's 64-bit signed id column.
BEYOND_BIGINT = 2**63


def post_raw(api, url: str, body: str):
    return api.client.post(url, body, content_type="application/json")


@pytest.fixture
def leased(api) -> dict:
    api.send("held")
    return api.next().json()


# Integers longer than Python's int-string limit


def test_a_payload_integer_of_5000_digits_comes_back_exactly(api):
    response = post_raw(api, "/message/new", f'{{"payload": {HUGE_INTEGER}}}')

    assert response.status_code == 201, response.content
    assert Message.objects.get().payload == HUGE_INTEGER
    assert f'"payload":{HUGE_INTEGER},' in api.next().content.decode()


def test_a_negative_5000_digit_integer_in_a_batch_is_kept_too(api):
    response = post_raw(api, "/messages/new", f'{{"payloads": [1, -{HUGE_INTEGER}, {{"n": 2}}]}}')

    assert response.status_code == 201, response.content
    assert list(Message.objects.values_list("payload", flat=True)) == [
        "1",
        f"-{HUGE_INTEGER}",
        '{"n":2}',
    ]


def test_a_huge_integer_in_a_field_nobody_reads_is_ignored(api):
    response = post_raw(api, "/message/new", f'{{"payload": "a", "extra": {HUGE_INTEGER}}}')

    assert response.status_code == 201, response.content


@pytest.mark.parametrize(
    "url, body, code",
    [
        ("/message/new", f'{{"payload": 1, "delay": {HUGE_INTEGER}}}', "invalid_delay"),
        ("/message/new", f'{{"payload": 1, "key": {HUGE_INTEGER}}}', "invalid_key"),
        ("/messages/new", f'{{"payloads": [1], "delay": {HUGE_INTEGER}}}', "invalid_delay"),
        ("/messages/status/done", f'{{"messages": [{{"id": {HUGE_INTEGER}}}]}}', "invalid_id"),
        ("/message/1/lease", f'{{"lease": "x", "timeout": {HUGE_INTEGER}}}', "invalid_timeout"),
        ("/message/1/status/ready", f'{{"lease": "x", "delay": {HUGE_INTEGER}}}', "invalid_delay"),
    ],
)
def test_a_huge_integer_where_a_number_is_read_is_400(api, stored, url, body, code):
    before = stored()

    response = post_raw(api, url, body)

    assert_error(response, 400, code)
    assert stored() == before


def test_a_count_of_5000_digits_is_400(api, stored):
    api.send("a")
    before = stored()

    response = api.get("/messages/next", data={"count": HUGE_INTEGER})

    assert_error(response, 400, "invalid_count")
    assert stored() == before


def test_a_queue_pages_after_of_5000_digits_is_past_every_message(api):
    api.send("a")

    response = api.get("/info/default", data={"after": HUGE_INTEGER})

    assert response.status_code == 200
    assert response.context["browse"] == []


# Integers too large for a float as seconds


@pytest.mark.parametrize(
    "url, field",
    [
        ("/message/new", "delay"),
        ("/messages/new", "delay"),
        ("/message/{id}/lease", "timeout"),
        ("/message/{id}/status/ready", "delay"),
    ],
)
def test_seconds_beyond_a_float_are_400(api, stored, leased, url, field):
    before = stored()
    # Each route reads the fields it needs and ignores the others.
    lease = leased["lease"]
    body = f'{{"payload": 1, "payloads": [1], "lease": "{lease}", "{field}": {BEYOND_FLOAT}}}'

    response = post_raw(api, url.format(id=leased["id"]), body)

    assert_error(response, 400, f"invalid_{field}")
    assert stored() == before


@pytest.mark.parametrize(
    "field, number",
    [("timeout", BEYOND_FLOAT), ("timeout", HUGE_INTEGER), ("max_attempts", HUGE_INTEGER)],
    ids=["timeout beyond a float", "timeout of 5000 digits", "max_attempts of 5000 digits"],
)
def test_queue_settings_beyond_any_number_read_are_400(api, stored, field, number):
    before = stored()

    response = api.client.put(
        "/queues/jobs", f'{{"{field}": {number}}}', content_type="application/json"
    )

    assert_error(response, 400, f"invalid_{field}")
    assert stored() == before


# Files and strings the database cannot hold


def test_a_file_named_payload_is_400(api, stored):
    before = stored()

    response = api.client.post("/message/new", {"payload": SimpleUploadedFile("f.txt", b"hi")})

    assert_error(response, 400, "invalid_payload")
    assert stored() == before


@pytest.mark.parametrize(
    "key",
    ["\\ud800", "a\\udc00b", "a\\u0000b", "\\u0000"],
    ids=["lone high", "lone low", "nul", "only nul"],
)
def test_a_key_with_a_nul_or_a_lone_surrogate_is_400_on_every_database(api, stored, key):
    before = stored()

    response = post_raw(api, "/message/new", f'{{"payload": 1, "key": "{key}"}}')

    assert_error(response, 400, "invalid_key")
    assert stored() == before


def test_a_key_with_a_surrogate_pair_is_one_character_and_accepted(api):
    response = post_raw(api, "/message/new", '{"payload": 1, "key": "\\ud83c\\udf89"}')

    assert response.status_code == 201, response.content
    assert IdempotencyKey.objects.get().key == "🎉"


@pytest.mark.parametrize("lease", ["\\ud800", "a\\u0000b"], ids=["lone surrogate", "nul"])
def test_a_lease_with_a_nul_or_a_lone_surrogate_is_400(api, stored, leased, lease):
    before = stored()

    response = post_raw(api, f"/message/{leased['id']}/status/done", f'{{"lease": "{lease}"}}')

    assert_error(response, 400, "invalid_lease")
    assert stored() == before


# Batch acks naming ids no database can hold


@pytest.mark.parametrize("message_id", [BEYOND_BIGINT, 10**30], ids=["2**63", "10**30"])
def test_a_batch_ack_of_an_id_beyond_64_bits_is_400(api, stored, leased, message_id):
    before = stored()

    response = api.post(
        "/messages/status/done",
        {"messages": [{"id": leased["id"], "lease": leased["lease"]}, {"id": message_id}]},
    )

    assert_error(response, 400, "invalid_id")
    assert stored() == before


def test_a_batch_ack_of_the_largest_64_bit_id_fails_alone_as_not_found(api, leased):
    response = api.post(
        "/messages/status/done",
        {"messages": [{"id": leased["id"], "lease": leased["lease"]}, {"id": BEYOND_BIGINT - 1}]},
    )

    assert response.status_code == 200, response.content
    assert response.json()["processed"] == [leased["id"]]
    assert [f["error"] for f in response.json()["failed"]] == ["not_found"]


# Bodies over MQ_MAX_REQUEST_BYTES, whatever their media type


def test_a_multipart_body_with_a_large_file_is_413(api, stored, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    before = stored()

    response = api.client.post(
        "/message/new",
        {"payload": "hello", "attachment": SimpleUploadedFile("big.bin", b"x" * 20_000)},
    )

    assert_error(response, 413, "too_large")
    assert stored() == before


@pytest.mark.parametrize(
    "method, url",
    [
        ("post", "/queues/jobs/redrive"),
        ("get", "/message/next"),
        ("post", "/message/{id}/status/done"),
    ],
)
def test_a_body_over_the_limit_is_413_where_the_body_is_not_even_read(
    api, stored, settings, leased, method, url
):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    api.send("ready")
    before = stored()

    response = api.client.generic(
        method.upper(), url.format(id=leased["id"]), b"x" * 20_000, content_type="text/plain"
    )

    assert_error(response, 413, "too_large")
    assert stored() == before


# Bodies cut short: the client died, or half-closed, mid-upload


def send_cut_short(server, *, half_close: bool) -> bytes:
    """POST ``payload=hello`` to a real server with a Content-Length of 13 but only
    11 bytes of body (a valid form on its own: ``payload=hel``), then close the
    connection, or half-close it and read the answer."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    with sock:
        sock.sendall(
            b"POST /message/new HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 13\r\n\r\n"
            b"payload=hel"
        )
        if not half_close:
            return b""
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
        return answer


@pytest.mark.django_db(transaction=True)
def test_a_body_cut_short_by_a_half_close_is_400_and_stores_nothing(server_factory):
    server = server_factory()

    answer = send_cut_short(server, half_close=True)

    status, _, rest = answer.partition(b"\r\n")
    assert status == b"HTTP/1.1 400 Bad Request", answer
    assert json.loads(rest.partition(b"\r\n\r\n")[2])["error"] == "incomplete_body"
    assert not Message.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_body_cut_short_by_a_closed_connection_stores_nothing(server_factory):
    server = server_factory()

    send_cut_short(server, half_close=False)

    # Nothing to wait for but the absence of a message: watch for one a while
    # (a cut-off body used to be stored within milliseconds).
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        assert not Message.objects.exists()
        time.sleep(0.05)
    assert requests.post(server.url + "/message/new", data={"payload": "whole"}).status_code == 201
    assert list(Message.objects.values_list("payload", flat=True)) == ['"whole"']
