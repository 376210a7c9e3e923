"""Celery with its SQS transport (kombu) against a real server: a few hundred
tasks, each run once, none lost."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import wait_until

from messages_app.models import Message

TASKS = 300
TESTS = Path(__file__).resolve().parent


@pytest.fixture
def celery_env(sqs_server, transactional_db, tmp_path):
    return {
        **os.environ,
        "MQ_TEST_SQS_URL": f"sqs://test:test@127.0.0.1:{sqs_server.port}",
        "MQ_TEST_CELERY_RECORD": str(tmp_path / "runs"),
        "MQ_TEST_CELERY_QUEUE": "celery-tasks",
        "PYTHONPATH": str(TESTS),
    }


def test_every_task_runs_exactly_once(celery_env, tmp_path):
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "celery_sqs_app", "worker"]
        + ["--pool", "threads", "--concurrency", "8", "--loglevel", "WARNING"]
        + ["--without-heartbeat", "--without-gossip", "--without-mingle"],
        env=celery_env,
        cwd=tmp_path,
        start_new_session=True,
    )
    try:
        send = f"import celery_sqs_app\nfor n in range({TASKS}): celery_sqs_app.record.delay(n)\n"
        subprocess.run([sys.executable, "-c", send], env=celery_env, check=True, timeout=120)
        runs = Path(celery_env["MQ_TEST_CELERY_RECORD"])

        def lines() -> list[int]:
            return [int(n) for n in runs.read_text().split()] if runs.exists() else []

        wait_until(lambda: len(lines()) >= TASKS, 90, f"{TASKS} task runs")
        # Every task acked: nothing left in the queue.
        wait_until(lambda: not Message.objects.exists(), 30, "an empty queue")
        assert sorted(lines()) == list(range(TASKS))
    finally:
        worker.terminate()
        worker.wait(timeout=30)
