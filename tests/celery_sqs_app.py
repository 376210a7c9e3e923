"""A Celery app on the SQS endpoint, for tests/test_sqs_celery.py: the broker is
``MQ_TEST_SQS_URL`` (``sqs://key:secret@host:port``); each run of ``record``
appends its number to the file ``MQ_TEST_CELERY_RECORD``."""

import os

from celery import Celery

app = Celery("celery_sqs_app", broker=os.environ["MQ_TEST_SQS_URL"])
app.conf.update(
    broker_transport_options={
        "is_secure": False,
        "region": "us-east-1",
        "wait_time_seconds": 1,
        "polling_interval": 0.1,
        "visibility_timeout": 300,
    },
    task_default_queue=os.environ.get("MQ_TEST_CELERY_QUEUE", "celery"),
    task_acks_late=True,
    worker_prefetch_multiplier=4,
    broker_connection_retry_on_startup=True,
)


@app.task
def record(number: int) -> None:
    # One short append per run: lines of concurrent runs never interleave.
    with open(os.environ["MQ_TEST_CELERY_RECORD"], "a") as record_file:
        record_file.write(f"{number}\n")
