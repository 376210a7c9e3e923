"""boto3's resource interface (Queue and Message objects) against a real server."""

import boto3
import pytest
from sqs_support import REGION, queue_name

from messages_app.models import Message


@pytest.fixture
def resource(sqs_server, transactional_db):
    return boto3.resource(
        "sqs",
        endpoint_url=sqs_server.url + "/sqs",
        region_name=REGION,
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )


def test_a_queue_object_sends_receives_and_deletes(resource):
    queue = resource.create_queue(QueueName=queue_name())
    queue.send_message(MessageBody="hello")
    [message] = queue.receive_messages(WaitTimeSeconds=1)
    assert message.body == "hello"
    message.delete()
    assert not Message.objects.exists()


def test_get_queue_by_name_of_a_missing_queue_raises_queue_does_not_exist(resource):
    with pytest.raises(resource.meta.client.exceptions.QueueDoesNotExist):
        resource.get_queue_by_name(QueueName="nowhere")


def test_a_queues_attributes_and_url(resource):
    name = queue_name()
    created = resource.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "12"})
    queue = resource.get_queue_by_name(QueueName=name)
    assert queue.url == created.url
    assert queue.attributes["VisibilityTimeout"] == "12"


def test_a_message_objects_visibility_change(resource):
    queue = resource.create_queue(QueueName=queue_name())
    queue.send_message(MessageBody="x")
    [message] = queue.receive_messages(VisibilityTimeout=600)
    message.change_visibility(VisibilityTimeout=0)
    assert [m.body for m in queue.receive_messages()] == ["x"]


def test_batch_calls_of_a_queue_object(resource):
    queue = resource.create_queue(QueueName=queue_name())
    sent = queue.send_messages(Entries=[{"Id": str(i), "MessageBody": str(i)} for i in range(3)])
    assert len(sent["Successful"]) == 3
    messages = queue.receive_messages(MaxNumberOfMessages=10)
    deleted = queue.delete_messages(
        Entries=[{"Id": str(i), "ReceiptHandle": m.receipt_handle} for i, m in enumerate(messages)]
    )
    assert len(deleted["Successful"]) == 3
    assert not Message.objects.exists()


def test_purge_and_delete_of_a_queue_object(resource):
    queue = resource.create_queue(QueueName=queue_name())
    queue.send_message(MessageBody="x")
    queue.purge()
    assert not Message.objects.exists()
    queue.delete()
    assert [q.url for q in resource.queues.all()] == []
