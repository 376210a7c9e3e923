"""Hostile input on the SQS endpoint: every action, given parameters of the wrong
shape, answers an SQS error (never a 500) and changes nothing stored."""

import json

import pytest

from messages_app.sqs.actions import ACTIONS

pytestmark = pytest.mark.django_db

URL = "http://testserver/sqs/000000000000/target"
BAD = [
    {},
    {"QueueUrl": 5},
    {"QueueUrl": URL, "QueueName": ["x"]},
    {"QueueName": {"a": 1}},
    {"QueueUrl": URL, "Entries": "x"},
    {"QueueUrl": URL, "Entries": [1, 2]},
    {"QueueUrl": URL, "Entries": [{"Id": "a", "MessageBody": 5, "ReceiptHandle": 7}]},
    {"QueueUrl": URL, "Attributes": [1]},
    {"QueueUrl": URL, "Attributes": {"VisibilityTimeout": "x"}},
    {"QueueUrl": URL, "Attributes": {"RedrivePolicy": "{"}},
    {"QueueUrl": URL, "MessageBody": "x", "MessageAttributes": {"a": 5}},
    {"QueueUrl": URL, "MessageBody": "x", "MessageAttributes": {"a": {"DataType": "Binary"}}},
    {"QueueUrl": URL, "MessageBody": "x", "DelaySeconds": 10**30},
    {"QueueUrl": URL, "MaxNumberOfMessages": "ten"},
    {"QueueUrl": URL, "ReceiptHandle": ["x"], "VisibilityTimeout": -1},
    {"QueueUrl": URL, "Tags": "x", "TagKeys": 5},
    {"NextToken": 7, "QueueNamePrefix": []},
    {"NextToken": "%%%"},
]


@pytest.fixture
def call(client):
    def call(action: str, params) -> tuple[int, dict]:
        response = client.post(
            "/sqs",
            json.dumps(params),
            content_type="application/x-amz-json-1.0",
            headers={"X-Amz-Target": f"AmazonSQS.{action}"},
        )
        return response.status_code, json.loads(response.content)

    return call


@pytest.mark.parametrize("action", sorted(ACTIONS))
def test_wrong_shapes_answer_sqs_errors_and_store_nothing(call, stored, action):
    for params in BAD:
        call("CreateQueue", {"QueueName": "target"})
        before = stored()
        status, body = call(action, params)
        if status == 200:
            continue  # parameters it does not read (ListQueues), or a valid call
        assert status == 400, (params, body)
        assert body["__type"].startswith("com.amazonaws.sqs#"), (params, body)
        assert body["message"]
        assert stored() == before


def test_a_body_over_the_request_limit_is_413_and_stores_nothing(call, stored, settings):
    call("CreateQueue", {"QueueName": "target"})
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    before = stored()
    status, body = call("SendMessage", {"QueueUrl": URL, "MessageBody": "x" * 2000})
    assert status == 413
    assert body["__type"] == "com.amazonaws.sqs#RequestEntityTooLarge"
    assert stored() == before
