"""POST /message/new: a message is stored at the back of the queue, and its payload
comes back exactly as it was sent."""

import json
from dataclasses import dataclass

import pytest

from messages_app.models import Message, Queue

pytestmark = pytest.mark.django_db


@dataclass(frozen=True)
class Number:
    """A JSON number as its text, so ``1.10`` differs from ``1.1`` and ``1e400`` from ``1E+400``."""

    text: str


def exact(text: str | bytes):
    """The JSON value of ``text``, every number kept as written."""
    return json.loads(text, parse_float=Number, parse_int=Number)


# Raw JSON text of payloads, by what makes each one hard to keep exactly.
PAYLOADS = {
    "string": '"yada yada yada"',
    "empty string": '""',
    "integer": "42",
    "negative integer": "-7",
    "zero": "0",
    "minus zero": "-0",
    "trailing zero": "1.10",
    "minus zero point zero": "-0.0",
    "more digits than a double": "12345678901234567890.123456789",
    "integer beyond 64 bits": "123456789012345678901234567890",
    "exponent beyond a double": "1e400",
    "tiny negative exponent": "-1E-400",
    "signed exponent": "2.5E+10",
    "small decimal": "0.0000001",
    "null": "null",
    "true": "true",
    "false": "false",
    "nested object": '{"a":{"b":[1,"two",null,{"c":[3.0,true]}]},"empty":{},"list":[]}',
    "nested array": "[1,[2.50,[3e3]],[]]",
    "unicode": '"héllo wörld 世界 🎉"',
    "escaped unicode": '"\\u00e9\\ud83c\\udf89"',
    "lone surrogate": '"\\ud800"',
    "control characters": '"tab\\tnewline\\nnul\\u0000quote\\"backslash\\\\"',
    "html": '"<script>alert(1)</script>"',
}


def send_raw(api, payload_text: str):
    body = f'{{"payload": {payload_text}}}'
    return api.client.post("/message/new", body, content_type="application/json")


def test_sending_answers_201_with_the_new_message_id(api):
    response = api.post("/message/new", {"payload": "hello"})

    assert response.status_code == 201
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert list(body) == ["id"]
    assert Message.objects.filter(id=body["id"]).exists()


def test_a_sent_message_waits_ready_in_the_default_queue(api):
    message_id = api.send("hello")

    message = Message.objects.get(id=message_id)
    assert message.queue_id == "default"
    assert (message.lease, message.attempts, message.dead) == (None, 0, False)
    assert message.state() == "ready"
    assert Queue.objects.filter(name="default").exists()


def test_ids_increase_in_the_order_messages_are_sent(api):
    ids = [api.send(n) for n in range(5)]

    assert ids == sorted(ids)
    assert len(set(ids)) == 5


@pytest.mark.parametrize("payload", PAYLOADS.values(), ids=PAYLOADS.keys())
def test_a_payload_comes_back_exactly_as_sent(api, payload):
    assert send_raw(api, payload).status_code == 201

    delivered = api.next()

    assert exact(delivered.content)["payload"] == exact(payload)


@pytest.mark.parametrize("payload", PAYLOADS.values(), ids=PAYLOADS.keys())
def test_a_payload_is_stored_as_the_same_json_value(api, payload):
    message_id = send_raw(api, payload).json()["id"]

    assert exact(Message.objects.get(id=message_id).payload) == exact(payload)


def test_a_form_field_payload_is_stored_as_a_json_string(api):
    response = api.client.post(
        "/message/new", "payload=hello+world", content_type="application/x-www-form-urlencoded"
    )

    assert response.status_code == 201
    assert Message.objects.get(id=response.json()["id"]).payload == '"hello world"'
    assert api.next().json()["payload"] == "hello world"


def test_a_multipart_form_field_payload_works_too(api):
    response = api.client.post("/message/new", {"payload": "from a form"})

    assert response.status_code == 201
    assert api.next().json()["payload"] == "from a form"


def test_a_form_payload_that_looks_like_json_stays_a_string(api):
    api.client.post("/message/new", {"payload": '{"a": 1}'})

    assert api.next().json()["payload"] == '{"a": 1}'


def test_a_payload_of_exactly_the_size_limit_is_accepted(api, settings):
    settings.MQ_MAX_PAYLOAD_BYTES = 100

    response = api.post("/message/new", {"payload": "x" * 98})  # "xx...x" is 100 bytes

    assert response.status_code == 201
    assert len(Message.objects.get().payload) == 100


def test_a_charset_in_the_content_type_is_accepted(api):
    response = api.client.post(
        "/message/new", '{"payload": "é"}', content_type="application/json; charset=utf-8"
    )

    assert response.status_code == 201
    assert api.next().json()["payload"] == "é"


def test_the_answer_is_json_whatever_the_accept_header_asks_for(api):
    response = api.post("/message/new", {"payload": 1}, HTTP_ACCEPT="text/html")

    assert response.status_code == 201
    assert response["Content-Type"] == "application/json"
    assert Message.objects.count() == 1
