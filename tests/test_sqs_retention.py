"""MessageRetentionPeriod is enforced: a message older than it is deleted before
a receive over SQS. In process, with the clock moved (Django's test client on
the real view and database)."""

import json

import pytest

from messages_app.models import Message

pytestmark = pytest.mark.django_db


@pytest.fixture
def call(client):
    def call(action: str, **params) -> dict:
        response = client.post(
            "/sqs",
            json.dumps(params),
            content_type="application/x-amz-json-1.0",
            headers={"X-Amz-Target": f"AmazonSQS.{action}"},
        )
        assert response.status_code == 200, response.content
        return json.loads(response.content)

    return call


def test_a_message_older_than_the_retention_period_is_deleted_not_received(call, clock):
    attributes = {"MessageRetentionPeriod": "60"}
    url = call("CreateQueue", QueueName="kept", Attributes=attributes)["QueueUrl"]
    call("SendMessage", QueueUrl=url, MessageBody="old")
    clock.shift(30)
    call("SendMessage", QueueUrl=url, MessageBody="young")
    clock.shift(31)
    received = call("ReceiveMessage", QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert [m["Body"] for m in received] == ["young"]
    assert list(Message.objects.values_list("payload", flat=True)) == ['"young"']


def test_a_message_within_the_retention_period_is_received(call, clock):
    url = call("CreateQueue", QueueName="kept", Attributes={"MessageRetentionPeriod": "60"})[
        "QueueUrl"
    ]
    call("SendMessage", QueueUrl=url, MessageBody="fresh")
    clock.shift(59)
    assert [m["Body"] for m in call("ReceiveMessage", QueueUrl=url)["Messages"]] == ["fresh"]


def test_a_message_sent_to_an_sqs_queue_is_stored_with_its_attributes(call):
    url = call("CreateQueue", QueueName="stored")["QueueUrl"]
    attributes = {"a": {"DataType": "String", "StringValue": "1"}}
    call("SendMessage", QueueUrl=url, MessageBody="x", MessageAttributes=attributes)
    message = Message.objects.get()
    assert (message.queue_id, message.payload) == ("stored", '"x"')
    assert json.loads(message.attributes) == attributes
