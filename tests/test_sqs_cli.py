"""The AWS CLI (``aws sqs ... --endpoint-url``) against a real server."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from messages_app.models import Message

AWS = str(Path(sys.executable).parent / "aws")


@pytest.fixture
def aws(sqs_server, transactional_db, tmp_path):
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
    }

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        command = [AWS, "sqs", *args, "--endpoint-url", sqs_server.url + "/sqs", "--output", "json"]
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
        if check:
            assert result.returncode == 0, result.stderr
        return result

    return run


def test_create_send_receive_delete(aws):
    url = json.loads(aws("create-queue", "--queue-name", "cli").stdout)["QueueUrl"]
    sent = json.loads(
        aws(
            "send-message",
            "--queue-url",
            url,
            "--message-body",
            "from the cli",
            "--message-attributes",
            '{"kind": {"DataType": "String", "StringValue": "x"}}',
        ).stdout
    )
    received = json.loads(
        aws(
            "receive-message",
            "--queue-url",
            url,
            "--attribute-names",
            "All",
            "--message-attribute-names",
            "All",
            "--wait-time-seconds",
            "1",
        ).stdout
    )
    [message] = received["Messages"]
    assert message["Body"] == "from the cli"
    assert message["MD5OfMessageAttributes"] == sent["MD5OfMessageAttributes"]
    aws("delete-message", "--queue-url", url, "--receipt-handle", message["ReceiptHandle"])
    assert not Message.objects.exists()


def test_get_queue_attributes(aws):
    url = json.loads(
        aws("create-queue", "--queue-name", "cli", "--attributes", "VisibilityTimeout=17").stdout
    )["QueueUrl"]
    attributes = json.loads(
        aws("get-queue-attributes", "--queue-url", url, "--attribute-names", "All").stdout
    )["Attributes"]
    assert attributes["VisibilityTimeout"] == "17"


def test_a_missing_queue_is_the_cli_s_usual_error(aws):
    result = aws("get-queue-url", "--queue-name", "nowhere", check=False)
    assert result.returncode != 0
    assert "AWS.SimpleQueueService.NonExistentQueue" in result.stderr
