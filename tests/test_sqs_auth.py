"""SigV4 on the SQS endpoint: with MQ_SQS_CREDENTIALS set, only requests signed
with one of its secrets are served; without, signatures are not checked."""

import pytest
import requests
from botocore import UNSIGNED
from botocore.config import Config
from conftest import Server
from sqs_support import REGION, boto3_session, sqs_client

from messages_app.models import Queue


@pytest.fixture(scope="module")
def signed_server(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        server = Server(MQ_WORKERS="1", MQ_SQS_CREDENTIALS="AKID1:secret1,AKID2:secret2").start()
    yield server
    server.stop()


def code_of(call) -> tuple[int, str]:
    with pytest.raises(Exception) as raised:
        call()
    response = raised.value.response
    return response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Code"]


@pytest.mark.parametrize("key, secret", [("AKID1", "secret1"), ("AKID2", "secret2")])
def test_a_request_signed_with_a_configured_secret_is_served(
    signed_server, transactional_db, key, secret
):
    sqs = sqs_client(signed_server, key=key, secret=secret)
    url = sqs.create_queue(QueueName="signed")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="x")
    assert sqs.receive_message(QueueUrl=url)["Messages"][0]["Body"] == "x"


def test_a_wrong_secret_is_refused_and_changes_nothing(signed_server, transactional_db):
    sqs = sqs_client(signed_server, key="AKID1", secret="wrong")
    assert code_of(lambda: sqs.create_queue(QueueName="refused")) == (403, "SignatureDoesNotMatch")
    assert not Queue.objects.exists()


def test_an_unknown_key_id_is_refused(signed_server, transactional_db):
    sqs = sqs_client(signed_server, key="AKIDX", secret="secret1")
    assert code_of(lambda: sqs.list_queues()) == (403, "InvalidClientTokenId")


def test_an_unsigned_request_is_refused(signed_server, transactional_db):
    sqs = boto3_session().client(
        "sqs",
        endpoint_url=signed_server.url + "/sqs",
        config=Config(signature_version=UNSIGNED, retries={"total_max_attempts": 1}),
    )
    assert code_of(lambda: sqs.list_queues()) == (403, "MissingAuthenticationToken")


def test_a_signed_request_whose_body_was_changed_is_refused(signed_server, transactional_db):
    sqs = sqs_client(signed_server, key="AKID1", secret="secret1")
    # Sign one body, send another.
    sqs.meta.events.register_last(
        "before-send.sqs.CreateQueue",
        lambda request, **_: setattr(request, "body", request.body.replace(b"one", b"two")),
    )
    assert code_of(lambda: sqs.create_queue(QueueName="one")) == (403, "SignatureDoesNotMatch")
    assert not Queue.objects.exists()


def test_without_credentials_set_signatures_are_not_checked(sqs_server, transactional_db):
    sqs = sqs_client(sqs_server, key="anything", secret="at all")
    assert sqs.create_queue(QueueName="open")["QueueUrl"].endswith("/open")


def test_the_native_api_tokens_do_not_guard_the_sqs_endpoint(django_db_blocker, transactional_db):
    server = Server(MQ_WORKERS="1", MQ_API_TOKENS="tok").start()
    try:
        sqs = sqs_client(server)
        assert sqs.create_queue(QueueName="open")["QueueUrl"].endswith("/open")
        assert requests.get(server.url + "/queues", timeout=5).status_code == 401
    finally:
        server.stop()


def test_the_region_of_the_signature_is_the_clients(signed_server, transactional_db):
    session = boto3_session(key="AKID1", secret="secret1")
    sqs = session.client("sqs", endpoint_url=signed_server.url + "/sqs", region_name="eu-west-3")
    assert REGION != "eu-west-3"
    assert sqs.list_queues().get("QueueUrls", []) == []
