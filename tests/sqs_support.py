"""What the SQS tests share: one real server per test module, and boto3 on it."""

import uuid

import boto3
import pytest
from botocore.config import Config
from conftest import Server

REGION = "us-east-1"


@pytest.fixture(scope="module")
def sqs_server(django_db_setup, django_db_blocker):
    """A real ``message-queue`` for the whole module (each test cleans the database,
    ``transactional_db``, and names its own queues)."""
    with django_db_blocker.unblock():
        server = Server(MQ_WORKERS="1").start()
    yield server
    server.stop()


def boto3_session(key: str = "test", secret: str = "test") -> boto3.Session:
    return boto3.Session(aws_access_key_id=key, aws_secret_access_key=secret, region_name=REGION)


def sqs_client(server: Server, **session):
    # No retries: a refused request must show as the error, not be sent again.
    config = Config(retries={"total_max_attempts": 1}, read_timeout=30)
    return boto3_session(**session).client("sqs", endpoint_url=server.url + "/sqs", config=config)


@pytest.fixture
def sqs(sqs_server, transactional_db):
    return sqs_client(sqs_server)


def queue_name(prefix: str = "q") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"
