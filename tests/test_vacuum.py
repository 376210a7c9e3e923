"""PostgreSQL: the server vacuums the message table after ``MQ_VACUUM_EVERY``
deleted messages, so dead rows do not pile up at the head of the queue
(messages_app/store/postgresql.py). The other databases have nothing to vacuum."""

import time

import pytest
import requests
from django.db import connection

from messages_app.models import Message


def vacuums_of_the_message_table() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT vacuum_count FROM pg_stat_user_tables WHERE relname = %s",
            [Message._meta.db_table],
        )
        return cursor.fetchone()[0]


@pytest.mark.django_db(transaction=True)
def test_acks_past_mq_vacuum_every_get_the_message_table_vacuumed(server_factory):
    postgresql = connection.vendor == "postgresql"
    before = vacuums_of_the_message_table() if postgresql else 0
    server = server_factory(MQ_VACUUM_EVERY="25")

    sent = requests.post(server.url + "/messages/new", json={"payloads": list(range(30))})
    assert sent.status_code == 201
    delivered = requests.get(server.url + "/messages/next", params={"count": 30}).json()
    entries = [{"id": m["id"], "lease": m["lease"]} for m in delivered["messages"]]
    # One request: deletes are counted per server process.
    assert requests.post(server.url + "/messages/status/done", json={"messages": entries}).ok

    assert not Message.objects.exists()
    if postgresql:
        deadline = time.monotonic() + 20
        while vacuums_of_the_message_table() == before and time.monotonic() < deadline:
            time.sleep(0.1)
        assert vacuums_of_the_message_table() == before + 1
