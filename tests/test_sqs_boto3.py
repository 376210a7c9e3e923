"""boto3's SQS client against a real server: every supported action."""

import hashlib
import json
import threading

import pytest
import requests
from botocore.exceptions import ClientError
from sqs_support import queue_name

from messages_app.models import Message, Queue


def create(sqs, **attributes) -> str:
    return sqs.create_queue(QueueName=queue_name(), Attributes=attributes)["QueueUrl"]


def test_create_queue_answers_its_url_and_stores_the_queue(sqs, sqs_server):
    name = queue_name()
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    assert url == f"{sqs_server.url}/sqs/000000000000/{name}"
    queue = Queue.objects.get(name=name)
    assert queue.timeout == 30
    assert queue.sqs_attributes == {"MessageRetentionPeriod": 345600}


def test_create_queue_again_with_the_same_attributes_answers_the_same_url(sqs):
    name = queue_name()
    first = sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "40"})
    again = sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "40"})
    assert first["QueueUrl"] == again["QueueUrl"]


def test_create_queue_again_with_other_attributes_is_refused(sqs):
    name = queue_name()
    sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "40"})
    with pytest.raises(sqs.exceptions.QueueNameExists) as raised:
        sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "41"})
    assert raised.value.response["Error"]["Code"] == "QueueAlreadyExists"
    assert Queue.objects.get(name=name).timeout == 40


def test_a_fifo_queue_is_refused_and_not_created(sqs):
    with pytest.raises(sqs.exceptions.UnsupportedOperation) as raised:
        sqs.create_queue(QueueName="jobs.fifo", Attributes={"FifoQueue": "true"})
    assert "FIFO" in raised.value.response["Error"]["Message"]
    assert not Queue.objects.filter(name="jobs.fifo").exists()


def test_get_queue_url_of_a_queue_never_created_raises_queue_does_not_exist(sqs):
    with pytest.raises(sqs.exceptions.QueueDoesNotExist) as raised:
        sqs.get_queue_url(QueueName="nowhere")
    assert raised.value.response["Error"]["Code"] == "AWS.SimpleQueueService.NonExistentQueue"


def test_get_queue_url(sqs):
    url = create(sqs)
    assert sqs.get_queue_url(QueueName=url.rpartition("/")[2])["QueueUrl"] == url


def test_list_queues_by_prefix_in_pages(sqs):
    urls = sorted(sqs.create_queue(QueueName=f"listed-{i}")["QueueUrl"] for i in range(5))
    sqs.create_queue(QueueName="other")
    first = sqs.list_queues(QueueNamePrefix="listed-", MaxResults=3)
    assert first["QueueUrls"] == urls[:3]
    second = sqs.list_queues(QueueNamePrefix="listed-", MaxResults=3, NextToken=first["NextToken"])
    assert second["QueueUrls"] == urls[3:]
    assert "NextToken" not in second
    pages = sqs.get_paginator("list_queues").paginate(QueueNamePrefix="listed-", MaxResults=2)
    assert [u for page in pages for u in page["QueueUrls"]] == urls


def test_delete_queue_deletes_it_and_its_messages(sqs):
    url = create(sqs)
    sqs.send_message(QueueUrl=url, MessageBody="x")
    sqs.delete_queue(QueueUrl=url)
    assert not Queue.objects.filter(name=url.rpartition("/")[2]).exists()
    assert not Message.objects.exists()
    with pytest.raises(sqs.exceptions.QueueDoesNotExist):
        sqs.send_message(QueueUrl=url, MessageBody="x")


def test_purge_queue_deletes_the_messages_and_keeps_the_queue(sqs):
    url = create(sqs)
    sqs.send_message(QueueUrl=url, MessageBody="x")
    sqs.purge_queue(QueueUrl=url)
    assert Message.objects.count() == 0
    assert Queue.objects.filter(name=url.rpartition("/")[2]).exists()


def test_send_and_receive_a_message_with_attributes(sqs):
    url = create(sqs)
    attributes = {
        "kind": {"DataType": "String", "StringValue": "order"},
        "amount": {"DataType": "Number.int", "StringValue": "12"},
        "raw": {"DataType": "Binary", "BinaryValue": b"\x00\xffdata"},
    }
    sent = sqs.send_message(QueueUrl=url, MessageBody="héllo", MessageAttributes=attributes)
    assert sent["MD5OfMessageBody"] == hashlib.md5("héllo".encode()).hexdigest()
    received = sqs.receive_message(
        QueueUrl=url, MessageAttributeNames=["All"], MessageSystemAttributeNames=["All"]
    )["Messages"]
    [message] = received
    assert message["MessageId"] == sent["MessageId"]
    assert message["Body"] == "héllo"
    assert message["MessageAttributes"] == attributes
    assert message["MD5OfMessageAttributes"] == sent["MD5OfMessageAttributes"]
    assert message["Attributes"]["ApproximateReceiveCount"] == "1"
    sent_at = int(message["Attributes"]["SentTimestamp"])
    assert int(message["Attributes"]["ApproximateFirstReceiveTimestamp"]) >= sent_at


def test_the_md5s_are_those_of_the_aws_documentation(sqs):
    """The examples of the AWS CLI's documentation (awscli/examples/sqs/*.rst), which
    show the first and last 8 hex digits of each digest."""
    url = create(sqs)
    sent = sqs.send_message(
        QueueUrl=url,
        MessageBody="Information about the largest city in Any Region.",
        MessageAttributes={
            "PostalCode": {"DataType": "String", "StringValue": "ABC123"},
            "City": {"DataType": "String", "StringValue": "Any City"},
        },
    )
    body, attributes = sent["MD5OfMessageBody"], sent["MD5OfMessageAttributes"]
    assert (body[:8], body[-8:]) == ("51b0a325", "39163aa0")
    assert (attributes[:8], attributes[-8:]) == ("9424c491", "26bc3ae7")
    [message] = sqs.receive_message(QueueUrl=url, MessageAttributeNames=["PostalCode"])["Messages"]
    only_code = message["MD5OfMessageAttributes"]
    assert (only_code[:8], only_code[-8:]) == ("b8e89563", "e088e74f")


def test_receive_only_the_message_attributes_asked_for(sqs):
    url = create(sqs)
    sqs.send_message(
        QueueUrl=url,
        MessageBody="x",
        MessageAttributes={
            "trace.id": {"DataType": "String", "StringValue": "1"},
            "other": {"DataType": "String", "StringValue": "2"},
        },
    )
    [message] = sqs.receive_message(QueueUrl=url, MessageAttributeNames=["trace.*"])["Messages"]
    assert list(message["MessageAttributes"]) == ["trace.id"]


def test_a_body_with_a_character_sqs_refuses_is_not_stored(sqs):
    url = create(sqs)
    with pytest.raises(sqs.exceptions.InvalidMessageContents):
        sqs.send_message(QueueUrl=url, MessageBody="bad \x00 byte")
    assert not Message.objects.exists()


def test_a_body_over_the_maximum_message_size_is_refused(sqs):
    url = create(sqs, MaximumMessageSize="1024")
    with pytest.raises(ClientError) as raised:
        sqs.send_message(QueueUrl=url, MessageBody="x" * 1025)
    assert raised.value.response["Error"]["Code"] == "InvalidParameterValue"
    assert not Message.objects.exists()


def test_receive_waits_for_a_message_sent_meanwhile(sqs, sqs_server):
    url = create(sqs)

    def send_later():
        sqs_server.wait_for_waiting(1)
        sqs.send_message(QueueUrl=url, MessageBody="late")

    sender = threading.Thread(target=send_later)
    sender.start()
    messages = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=20)["Messages"]
    sender.join()
    assert [m["Body"] for m in messages] == ["late"]


def test_a_long_poll_on_an_empty_queue_answers_no_messages(sqs):
    url = create(sqs)
    assert sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1).get("Messages", []) == []


def test_receive_at_most_max_number_of_messages_oldest_first(sqs):
    url = create(sqs)
    for i in range(12):
        sqs.send_message(QueueUrl=url, MessageBody=str(i))
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert [m["Body"] for m in messages] == [str(i) for i in range(10)]


def test_max_number_of_messages_over_ten_is_refused(sqs):
    url = create(sqs)
    with pytest.raises(ClientError) as raised:
        sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=11)
    assert raised.value.response["Error"]["Code"] == "InvalidParameterValue"


def test_a_received_message_is_hidden_for_its_visibility_timeout(sqs):
    url = create(sqs)
    sqs.send_message(QueueUrl=url, MessageBody="x")
    sqs.receive_message(QueueUrl=url, VisibilityTimeout=600)
    assert not sqs.receive_message(QueueUrl=url).get("Messages")


def test_a_message_received_with_no_visibility_is_received_again(sqs):
    url = create(sqs)
    sqs.send_message(QueueUrl=url, MessageBody="x")
    sqs.receive_message(QueueUrl=url, VisibilityTimeout=0)
    [again] = sqs.receive_message(QueueUrl=url, AttributeNames=["ApproximateReceiveCount"])[
        "Messages"
    ]
    assert again["Attributes"]["ApproximateReceiveCount"] == "2"


def test_delete_message_deletes_it(sqs):
    url = create(sqs)
    sqs.send_message(QueueUrl=url, MessageBody="x")
    [message] = sqs.receive_message(QueueUrl=url)["Messages"]
    sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    assert not Message.objects.exists()


def test_delete_with_the_handle_of_an_earlier_receive_fails_and_keeps_the_message(sqs):
    url = create(sqs)
    sqs.send_message(QueueUrl=url, MessageBody="x")
    [first] = sqs.receive_message(QueueUrl=url, VisibilityTimeout=0)["Messages"]
    sqs.receive_message(QueueUrl=url, VisibilityTimeout=600)
    with pytest.raises(sqs.exceptions.ReceiptHandleIsInvalid):
        sqs.delete_message(QueueUrl=url, ReceiptHandle=first["ReceiptHandle"])
    assert Message.objects.count() == 1


def test_a_receipt_handle_that_is_not_one_is_invalid(sqs):
    url = create(sqs)
    with pytest.raises(sqs.exceptions.ReceiptHandleIsInvalid):
        sqs.delete_message(QueueUrl=url, ReceiptHandle="nonsense")


def test_send_message_batch_with_a_partial_failure(sqs):
    url = create(sqs)
    result = sqs.send_message_batch(
        QueueUrl=url,
        Entries=[
            {"Id": "a", "MessageBody": "one"},
            {"Id": "b", "MessageBody": "bad \x01"},
            {"Id": "c", "MessageBody": "three", "DelaySeconds": 600},
        ],
    )
    assert [e["Id"] for e in result["Successful"]] == ["a", "c"]
    [failed] = result["Failed"]
    assert failed["Id"] == "b" and failed["Code"] == "InvalidMessageContents"
    assert failed["SenderFault"] is True
    assert sorted(Message.objects.values_list("payload", flat=True)) == ['"one"', '"three"']
    [ready] = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert ready["Body"] == "one"  # "three" is delayed


def test_batch_entry_ids_must_be_distinct(sqs):
    url = create(sqs)
    with pytest.raises(sqs.exceptions.BatchEntryIdsNotDistinct):
        sqs.send_message_batch(
            QueueUrl=url,
            Entries=[{"Id": "a", "MessageBody": "1"}, {"Id": "a", "MessageBody": "2"}],
        )
    assert not Message.objects.exists()


def test_a_batch_of_more_than_ten_is_refused(sqs):
    url = create(sqs)
    entries = [{"Id": str(i), "MessageBody": "x"} for i in range(11)]
    with pytest.raises(sqs.exceptions.TooManyEntriesInBatchRequest):
        sqs.send_message_batch(QueueUrl=url, Entries=entries)
    assert not Message.objects.exists()


def test_an_empty_batch_is_refused(sqs):
    url = create(sqs)
    with pytest.raises(sqs.exceptions.EmptyBatchRequest):
        sqs.delete_message_batch(QueueUrl=url, Entries=[])


def test_delete_message_batch_with_a_partial_failure(sqs):
    url = create(sqs)
    sqs.send_message_batch(
        QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": str(i)} for i in range(2)]
    )
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=2)["Messages"]
    result = sqs.delete_message_batch(
        QueueUrl=url,
        Entries=[
            {"Id": "ok", "ReceiptHandle": messages[0]["ReceiptHandle"]},
            {"Id": "bad", "ReceiptHandle": "nonsense"},
        ],
    )
    assert [e["Id"] for e in result["Successful"]] == ["ok"]
    assert [(e["Id"], e["Code"]) for e in result["Failed"]] == [("bad", "ReceiptHandleIsInvalid")]
    assert list(Message.objects.values_list("payload", flat=True)) == ['"1"']


def test_change_message_visibility_extends_the_lease(sqs):
    url = create(sqs)
    sqs.send_message(QueueUrl=url, MessageBody="x")
    [message] = sqs.receive_message(QueueUrl=url, VisibilityTimeout=5)["Messages"]
    sqs.change_message_visibility(
        QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=600
    )
    stored = Message.objects.get()
    assert (stored.visible_at - stored.created_at).total_seconds() > 500


def test_change_message_visibility_to_zero_gives_it_back(sqs):
    url = create(sqs)
    sqs.send_message(QueueUrl=url, MessageBody="x")
    [message] = sqs.receive_message(QueueUrl=url, VisibilityTimeout=600)["Messages"]
    sqs.change_message_visibility(
        QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
    )
    assert [m["Body"] for m in sqs.receive_message(QueueUrl=url)["Messages"]] == ["x"]


def test_change_message_visibility_batch_with_a_partial_failure(sqs):
    url = create(sqs)
    sqs.send_message(QueueUrl=url, MessageBody="x")
    [message] = sqs.receive_message(QueueUrl=url, VisibilityTimeout=600)["Messages"]
    result = sqs.change_message_visibility_batch(
        QueueUrl=url,
        Entries=[
            {"Id": "ok", "ReceiptHandle": message["ReceiptHandle"], "VisibilityTimeout": 0},
            {"Id": "bad", "ReceiptHandle": "1:" + "0" * 32, "VisibilityTimeout": 0},
        ],
    )
    assert [e["Id"] for e in result["Successful"]] == ["ok"]
    assert [e["Id"] for e in result["Failed"]] == ["bad"]
    assert sqs.receive_message(QueueUrl=url)["Messages"][0]["Body"] == "x"


def test_get_queue_attributes(sqs):
    url = create(sqs, VisibilityTimeout="45", DelaySeconds="0")
    sqs.send_message(QueueUrl=url, MessageBody="ready")
    sqs.send_message(QueueUrl=url, MessageBody="delayed", DelaySeconds=600)
    sqs.send_message(QueueUrl=url, MessageBody="leased")
    sqs.receive_message(QueueUrl=url)
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attributes["VisibilityTimeout"] == "45"
    assert attributes["ApproximateNumberOfMessages"] == "1"
    assert attributes["ApproximateNumberOfMessagesNotVisible"] == "1"
    assert attributes["ApproximateNumberOfMessagesDelayed"] == "1"
    assert attributes["MessageRetentionPeriod"] == "345600"
    assert attributes["QueueArn"] == f"arn:aws:sqs:us-east-1:000000000000:{url.rpartition('/')[2]}"
    assert int(attributes["CreatedTimestamp"]) > 1_700_000_000


def test_set_queue_attributes(sqs):
    url = create(sqs)
    sqs.set_queue_attributes(
        QueueUrl=url,
        Attributes={"VisibilityTimeout": "90", "DelaySeconds": "5", "MaximumMessageSize": "2048"},
    )
    queue = Queue.objects.get(name=url.rpartition("/")[2])
    assert queue.timeout == 90
    assert queue.sqs_attributes["DelaySeconds"] == 5
    assert queue.sqs_attributes["MaximumMessageSize"] == 2048


def test_an_unknown_queue_attribute_is_refused_and_changes_nothing(sqs):
    url = create(sqs)
    with pytest.raises(sqs.exceptions.InvalidAttributeName):
        sqs.set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout": "9", "Nope": "1"})
    assert Queue.objects.get(name=url.rpartition("/")[2]).timeout == 30


def test_the_queue_delay_hides_new_messages(sqs):
    url = create(sqs, DelaySeconds="600")
    sqs.send_message(QueueUrl=url, MessageBody="x")
    assert not sqs.receive_message(QueueUrl=url).get("Messages")


def test_tags(sqs):
    url = sqs.create_queue(QueueName=queue_name(), tags={"team": "a"})["QueueUrl"]
    sqs.tag_queue(QueueUrl=url, Tags={"env": "test", "team": "b"})
    assert sqs.list_queue_tags(QueueUrl=url)["Tags"] == {"team": "b", "env": "test"}
    sqs.untag_queue(QueueUrl=url, TagKeys=["team"])
    assert sqs.list_queue_tags(QueueUrl=url)["Tags"] == {"env": "test"}


def test_a_message_sent_over_sqs_is_received_over_the_native_api(sqs, sqs_server):
    url = create(sqs)
    sqs.send_message(QueueUrl=url, MessageBody='{"not": "parsed"}')
    response = requests.get(f"{sqs_server.url}/queues/{url.rpartition('/')[2]}/message/next")
    assert response.json()["payload"] == '{"not": "parsed"}'


def test_a_message_sent_over_the_native_api_is_received_over_sqs(sqs, sqs_server):
    url = create(sqs)
    name = url.rpartition("/")[2]
    requests.post(f"{sqs_server.url}/queues/{name}/message/new", json={"payload": {"a": [1]}})
    requests.post(f"{sqs_server.url}/queues/{name}/message/new", json={"payload": "text"})
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=2)["Messages"]
    assert [json.loads(messages[0]["Body"]), messages[1]["Body"]] == [{"a": [1]}, "text"]


def test_the_receipt_handle_is_the_native_lease(sqs, sqs_server):
    url = create(sqs)
    sqs.send_message(QueueUrl=url, MessageBody="x")
    [message] = sqs.receive_message(QueueUrl=url)["Messages"]
    message_id, _, lease = message["ReceiptHandle"].partition(":")
    name = url.rpartition("/")[2]
    response = requests.post(
        f"{sqs_server.url}/queues/{name}/message/{message_id}/status/done", json={"lease": lease}
    )
    assert response.status_code == 200
    assert not Message.objects.exists()


def test_a_redrive_policy_moves_a_message_that_died_to_the_target_queue(sqs):
    target = create(sqs)
    target_arn = sqs.get_queue_attributes(QueueUrl=target, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    policy = json.dumps({"deadLetterTargetArn": target_arn, "maxReceiveCount": 2})
    url = create(sqs, RedrivePolicy=policy)
    sqs.send_message(QueueUrl=url, MessageBody="poison")
    for _ in range(2):
        [message] = sqs.receive_message(QueueUrl=url)["Messages"]
        sqs.change_message_visibility(
            QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
        )
    assert not sqs.receive_message(QueueUrl=url).get("Messages")
    [moved] = sqs.receive_message(QueueUrl=target, MessageSystemAttributeNames=["All"])["Messages"]
    assert moved["Body"] == "poison"
    assert moved["Attributes"]["ApproximateReceiveCount"] == "1"
    assert moved["Attributes"]["DeadLetterQueueSourceArn"] == target_arn.replace(
        target.rpartition("/")[2], url.rpartition("/")[2]
    )
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["RedrivePolicy"])
    assert json.loads(attributes["Attributes"]["RedrivePolicy"]) == json.loads(policy)


def test_a_redrive_policy_to_a_queue_that_does_not_exist_is_refused(sqs):
    url = create(sqs)
    policy = json.dumps(
        {"deadLetterTargetArn": "arn:aws:sqs:us-east-1:000000000000:nowhere", "maxReceiveCount": 2}
    )
    with pytest.raises(ClientError) as raised:
        sqs.set_queue_attributes(QueueUrl=url, Attributes={"RedrivePolicy": policy})
    assert raised.value.response["Error"]["Code"] == "InvalidParameterValue"
    assert Queue.objects.get(name=url.rpartition("/")[2]).dead_letter_queue_id is None


def test_list_queues_prefix_is_case_sensitive(sqs):
    sqs.create_queue(QueueName="Upper-one")
    lower = sqs.create_queue(QueueName="upper-two")["QueueUrl"]
    assert sqs.list_queues(QueueNamePrefix="upper")["QueueUrls"] == [lower]
