"""The query protocol (form ``Action=...``, XML answers) that older SDKs speak,
and the JSON protocol's error shape, with plain HTTP requests."""

import xml.etree.ElementTree as ET

import pytest
import requests
from sqs_support import queue_name

from messages_app.models import Message, Queue

NS = {"sqs": "http://queue.amazonaws.com/doc/2012-11-05/"}


@pytest.fixture
def query(sqs_server, transactional_db):
    def call(url=None, **fields):
        response = requests.post(url or sqs_server.url + "/sqs", data=fields, timeout=30)
        return response, ET.fromstring(response.content)

    return call


def texts(tree, path: str) -> list[str]:
    return [e.text for e in tree.findall(path, NS)]


def test_create_queue_with_attributes(query):
    name = queue_name()
    response, tree = query(
        Action="CreateQueue",
        QueueName=name,
        **{"Attribute.1.Name": "VisibilityTimeout", "Attribute.1.Value": "42"},
    )
    assert response.status_code == 200
    assert texts(tree, "sqs:CreateQueueResult/sqs:QueueUrl")[0].endswith(f"/{name}")
    assert Queue.objects.get(name=name).timeout == 42


def test_send_with_a_message_attribute_and_receive_it(query):
    _, tree = query(Action="CreateQueue", QueueName=queue_name())
    url = texts(tree, "sqs:CreateQueueResult/sqs:QueueUrl")[0]
    response, sent = query(
        url,
        Action="SendMessage",
        MessageBody="hello",
        **{
            "MessageAttribute.1.Name": "kind",
            "MessageAttribute.1.Value.DataType": "String",
            "MessageAttribute.1.Value.StringValue": "order",
        },
    )
    assert response.status_code == 200
    [message_id] = texts(sent, "sqs:SendMessageResult/sqs:MessageId")
    _, received = query(
        url,
        Action="ReceiveMessage",
        **{"AttributeName.1": "ApproximateReceiveCount", "MessageAttributeName.1": "All"},
    )
    message = received.find("sqs:ReceiveMessageResult/sqs:Message", NS)
    assert texts(message, "sqs:MessageId") == [message_id]
    assert texts(message, "sqs:Body") == ["hello"]
    assert texts(message, "sqs:Attribute/sqs:Value") == ["1"]
    assert texts(message, "sqs:MessageAttribute/sqs:Value/sqs:StringValue") == ["order"]
    assert texts(message, "sqs:MD5OfMessageAttributes") == texts(
        sent, "sqs:SendMessageResult/sqs:MD5OfMessageAttributes"
    )


def test_a_batch_send_with_entries(query):
    _, tree = query(Action="CreateQueue", QueueName=queue_name())
    url = texts(tree, "sqs:CreateQueueResult/sqs:QueueUrl")[0]
    fields = {}
    for i in (1, 2):
        fields[f"SendMessageBatchRequestEntry.{i}.Id"] = f"e{i}"
        fields[f"SendMessageBatchRequestEntry.{i}.MessageBody"] = f"body {i}"
    _, result = query(url, Action="SendMessageBatch", **fields)
    entries = "sqs:SendMessageBatchResult/sqs:SendMessageBatchResultEntry/sqs:Id"
    assert texts(result, entries) == ["e1", "e2"]
    assert sorted(Message.objects.values_list("payload", flat=True)) == ['"body 1"', '"body 2"']


def test_an_error_is_xml_with_the_query_code(query, sqs_server):
    response, tree = query(Action="GetQueueUrl", QueueName="nowhere")
    assert response.status_code == 400
    assert texts(tree, "sqs:Error/sqs:Code") == ["AWS.SimpleQueueService.NonExistentQueue"]
    assert texts(tree, "sqs:Error/sqs:Type") == ["Sender"]


def test_an_unknown_action_is_refused(query):
    response, tree = query(Action="AddPermission")
    assert response.status_code == 400
    assert texts(tree, "sqs:Error/sqs:Code") == ["AWS.SimpleQueueService.UnsupportedOperation"]


def test_a_json_error_has_the_type_and_the_query_code_header(sqs_server, transactional_db):
    response = requests.post(
        sqs_server.url + "/sqs",
        data='{"QueueName": "nowhere"}',
        headers={
            "X-Amz-Target": "AmazonSQS.GetQueueUrl",
            "Content-Type": "application/x-amz-json-1.0",
        },
        timeout=10,
    )
    assert response.status_code == 400
    assert response.json()["__type"] == "com.amazonaws.sqs#QueueDoesNotExist"
    assert (
        response.headers["x-amzn-query-error"] == "AWS.SimpleQueueService.NonExistentQueue;Sender"
    )


def test_a_json_body_that_is_not_json_is_refused(sqs_server, transactional_db, stored):
    before = stored()
    response = requests.post(
        sqs_server.url + "/sqs",
        data="{not json",
        headers={"X-Amz-Target": "AmazonSQS.CreateQueue"},
        timeout=10,
    )
    assert response.status_code == 400
    assert response.json()["__type"] == "com.amazonaws.sqs#SerializationException"
    assert stored() == before
