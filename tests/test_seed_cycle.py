"""The seed's send, next, done cycle, in-process and through a real server."""

import pytest
import requests

from messages_app.models import Message

pytestmark = pytest.mark.django_db


def test_a_sent_message_is_delivered_then_gone_once_done(api):
    message_id = api.send("yada yada yada")

    delivered = api.next()
    assert delivered.status_code == 200
    body = delivered.json()
    assert body["id"] == message_id
    assert body["payload"] == "yada yada yada"
    assert body["attempts"] == 1

    done = api.done(message_id)
    assert done.status_code == 200
    assert done.json() == {"id": message_id, "status": "processed"}
    assert not Message.objects.filter(id=message_id).exists()


def test_next_on_an_empty_queue_is_204_with_no_body(api):
    response = api.next()
    assert response.status_code == 204
    assert response.content == b""


def test_the_cycle_works_through_a_real_server(server_factory):
    server = server_factory()
    sent = requests.post(server.url + "/message/new", json={"payload": {"n": 1}})
    assert sent.status_code == 201
    assert sent.headers["Content-Length"] == str(len(sent.content))
    delivered = requests.get(server.url + "/message/next").json()
    assert delivered["payload"] == {"n": 1}
    done = requests.post(server.url + f"/message/{delivered['id']}/status/done")
    assert done.status_code == 200
    empty = requests.get(server.url + "/message/next")
    assert empty.status_code == 204
    assert "Content-Length" not in empty.headers
